"""The post-processing models a job may need besides its diffusion model: upscalers (spandrel),
face restorers (spandrel) and the face detector (OpenCV), the text-prompted segmenter (CLIPSeg), the safety classifier,
ControlNet's preprocessors that are networks (depth, controlnet-aux's annotators), and VAE
overrides. Each is named in the config, loaded on first use and kept; nothing is ever
downloaded at run time. Used from the engine thread only.

A name the config does not have is the user's (or admin's) problem to fix, so it raises an
EngineUserError that names the config key (the command layer checks the same config first, so
this is for a config changed while a job waited).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from generation.errors import EngineUserError

if TYPE_CHECKING:
    from config import Settings


@dataclass
class Tools:
    device: torch.device
    dtype: torch.dtype
    upscalers: dict[str, str] = field(default_factory=dict)
    face_restorers: dict[str, str] = field(default_factory=dict)
    face_detector: str | None = None
    hand_detector: str | None = None  # --detail hand (generation.imaging.detect)
    person_detector: str | None = None  # --detail person; None: OpenCV's HOG people detector
    segmenter: str | None = None
    enhancer_source: str | None = None
    captioner: str | None = None
    describe_clip: str | None = None
    describe_terms_dir: Path | None = None
    enhance_max_new_tokens: int = 75
    vaes: dict[str, str] = field(default_factory=dict)
    depth_model: str | None = None  # /control depth
    annotators: Path | None = None  # controlnet-aux's annotator files (openpose, lineart, softedge)
    safety_classifier: str | None = None  # SDBOT_SAFETY_CLASSIFIER: scores every output
    safety_labels: tuple[str, ...] = ()
    models_dir: Path | None = None  # where the tiny safety checker is built
    upscale_tile: int = 512
    _loaded: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, device: torch.device, dtype: torch.dtype) -> Tools:
        return cls(
            device=device,
            dtype=dtype,
            upscalers=dict(settings.upscalers),
            face_restorers=dict(settings.face_restorers),
            face_detector=settings.face_detector,
            hand_detector=settings.hand_detector,
            person_detector=settings.person_detector,
            segmenter=settings.segmenter,
            vaes=dict(settings.vaes),
            upscale_tile=settings.upscale_tile,
            enhancer_source=settings.enhancer,
            captioner=settings.captioner,
            describe_clip=settings.describe_clip,
            describe_terms_dir=settings.describe_terms_dir,
            enhance_max_new_tokens=settings.enhance_max_new_tokens,
            depth_model=settings.depth_model,
            annotators=settings.annotators,
            safety_classifier=settings.safety_classifier,
            safety_labels=tuple(settings.safety_labels),
            models_dir=settings.resolved_models_dir,
        )

    def upscaler(self, name: str | None) -> Any:
        from generation.imaging.upscalers import load_upscaler

        name, path = _pick(self.upscalers, name, "upscaler", "SDBOT_UPSCALERS", "/upscale --method esrgan")
        return self._once("upscaler", path, lambda: load_upscaler(path, self.device, self.dtype, name=name))

    def enlarge(self, name: str | None, image: Any, factor: float, should_stop: Any) -> Any:
        """`image` enlarged by the named super-resolution model, in tiles of `upscale_tile`."""
        tile = self.upscale_tile
        return self.upscaler(name).upscale(image, factor, tile=tile, overlap=min(32, tile // 4), should_stop=should_stop)

    def face_restorer(self, name: str | None) -> Any:
        from generation.imaging.faces import load_face_restorer

        name, path = _pick(self.face_restorers, name, "face model", "SDBOT_FACE_RESTORERS", "/facefix")
        return self._once("face", path, lambda: load_face_restorer(path, self.device, self.dtype, name=name))

    def detector(self) -> Any:
        from generation.imaging.faces import FaceDetector

        return self._once("detector", self.face_detector or "", lambda: FaceDetector(self.face_detector))

    def region_detector(self, target: str) -> Any:
        """The detector of `--detail TARGET` (generation.imaging.detect), loaded once: faces by the
        face detector above, hands and people by their ONNX files (people by OpenCV's HOG without one)."""
        from generation.imaging.detect import load_region_detector

        if target == "face":
            return self.detector()
        source = self.hand_detector if target == "hand" else self.person_detector
        return self._once(f"detect-{target}", source or "", lambda: load_region_detector(target, source))

    def segment(self) -> Any:
        from generation.imaging.segment import load_segmenter

        if not self.segmenter:
            raise EngineUserError(
                "`--select` needs a segmentation model, and none is configured: set SDBOT_SEGMENTER to a CLIPSeg "
                "folder (e.g. CIDAS/clipseg-rd64-refined, downloaded once). Use `--box x,y,w,h` meanwhile."
            )
        source = self.segmenter
        return self._once("segmenter", source, lambda: load_segmenter(source, self.device))

    def enhancer(self) -> Any:
        """The /enhance text model (generation.text_models.enhance.PromptEnhancer), loaded once."""
        from generation.text_models.enhance import load_enhancer

        if not self.enhancer_source:
            raise EngineUserError(
                "/enhance needs a text model, and none is configured: set SDBOT_ENHANCER to a causal LM folder or "
                "Hub id (e.g. Gustavosta/MagicPrompt-Stable-Diffusion, downloaded once)."
            )
        source = self.enhancer_source
        return self._once("enhancer", source, lambda: load_enhancer(source, self.device, self.dtype))

    def interrogator(self) -> Any:
        """The /describe captioner + CLIP ranker (generation.text_models.interrogate.Interrogator), loaded once."""
        from generation.text_models.interrogate import load_interrogator

        if not self.captioner:
            raise EngineUserError(
                "/describe needs a captioning model, and none is configured: set SDBOT_CAPTIONER to a BLIP folder "
                "or Hub id (e.g. Salesforce/blip-image-captioning-large, downloaded once), and optionally "
                "SDBOT_DESCRIBE_CLIP (e.g. openai/clip-vit-large-patch14) for style terms."
            )
        captioner, clip, terms = self.captioner, self.describe_clip, self.describe_terms_dir
        key = f"{captioner}|{clip}|{terms}"
        return self._once("interrogator", key, lambda: load_interrogator(captioner, clip, terms, self.device, self.dtype))

    def depth_estimator(self) -> Any:
        """The depth model of `/control depth` (generation.control.annotators.DepthEstimator), loaded once."""
        from generation.control.annotators import load_depth_estimator

        if not self.depth_model:
            raise EngineUserError(
                "`/control depth` needs SDBOT_DEPTH_MODEL, and it is not set any more; use `--pre none` with a depth map."
            )
        source = self.depth_model
        return self._once("depth", source, lambda: load_depth_estimator(source, self.device))

    def annotator(self, name: str) -> Any:
        """A controlnet-aux preprocessor (openpose, lineart, softedge, scribble_hed), loaded once."""
        from generation.control.annotators import load_annotator

        folder = self.annotators
        return self._once("annotator", f"{name}|{folder}", lambda: load_annotator(name, folder, self.device))

    def safety_scores(self, images: list[Any]) -> list[float] | None:
        """The safety classifier's score of each picture, or None where none is configured."""
        from generation.imaging.safety import load_safety_classifier

        if not self.safety_classifier or not images:
            return None
        source, labels, folder = self.safety_classifier, self.safety_labels, self.models_dir or Path("models")
        classifier = self._once("safety", source, lambda: load_safety_classifier(source, labels, folder, self.device))
        return classifier.score(images)

    def vae_source(self, name: str) -> str:
        """A `vaes` name, or (from a model entry) a path or Hub id as it is."""
        for key, source in self.vaes.items():
            if key.lower() == name.lower():
                return source
        return name

    def _once(self, kind: str, key: str, load: Any) -> Any:
        if (kind, key) not in self._loaded:
            self._loaded[(kind, key)] = load()
        return self._loaded[(kind, key)]


def _pick(configured: dict[str, str], name: str | None, what: str, key: str, use: str) -> tuple[str, str]:
    if not configured:
        raise EngineUserError(
            f"no {what} is configured on this bot, so {use} can't run. An admin can set {key} "
            f"(name=/path/to/model.safetensors) to a model file downloaded once."
        )
    if name is None:
        return next(iter(configured.items()))
    for key_name, path in configured.items():
        if key_name.lower() == name.lower():
            return key_name, path
    raise EngineUserError(f"there is no {what} named `{name}` any more. Configured: {', '.join(configured)}.")
