"""The preprocessors that are networks: depth (transformers' depth-estimation pipeline: DPT,
Depth Anything), and controlnet-aux's openpose (body, hands, face), lineart (realistic, coarse,
anime), softedge (HED, PiDiNet) and scribble_hed, from the annotator files in `SDBOT_ANNOTATORS`.

The annotator files are the PyTorch `.pth` files lllyasviel/Annotators publishes (no safetensors
versions exist). controlnet-aux reads them with `torch.load`; sdbot calls it with
`weights_only=True`, torch's restricted unpickler, which builds tensors and plain containers and
refuses anything else, so a file can't run code. They are the admin's files, never uploads.
Loaded on first use and kept (`generation.tools`); engine thread only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from generation.errors import EngineUserError, ModelLoadError
from generation.models.hf_source import Source, explain, resolve

log = logging.getLogger(__name__)

DEPTH = Source("SDBOT_DEPTH_MODEL", "depth model", "Intel/dpt-hybrid-midas", "AutoModelForDepthEstimation")
BODY, HAND, FACE = "body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"
# preprocessor -> the annotator files it reads from SDBOT_ANNOTATORS
FILES = {
    "openpose": (BODY,),
    "openpose_hand": (BODY, HAND),
    "openpose_face": (BODY, FACE),
    "openpose_full": (BODY, HAND, FACE),
    "lineart_realistic": ("sk_model.pth", "sk_model2.pth"),
    "lineart_coarse": ("sk_model.pth", "sk_model2.pth"),
    "lineart_anime": ("netG.pth",),
    "softedge_hed": ("ControlNetHED.pth",),
    "scribble_hed": ("ControlNetHED.pth",),
    "softedge_pidinet": ("table5_pidinet.pth",),
}


class DepthEstimator:
    def __init__(self, pipeline: Any, source: str):
        self.pipeline = pipeline
        self.source = source

    def estimate(self, picture: Image.Image) -> np.ndarray:
        """Relative depth of `picture`, near bright, 0-255 uint8 at its size (as ControlNet depth takes it)."""
        with torch.inference_mode():
            depth = self.pipeline(picture)["depth"]
        if depth.size != picture.size:
            depth = depth.resize(picture.size, Image.Resampling.BILINEAR)
        return np.asarray(depth.convert("L"))


def load_depth_estimator(source: str, device: torch.device) -> DepthEstimator:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

    name = resolve(source, DEPTH)
    log.info("loading depth model %s (%s)", name, device)
    try:  # loaded here, local files and safetensors only; the pipeline only runs them
        model = AutoModelForDepthEstimation.from_pretrained(name, use_safetensors=True, local_files_only=True, dtype=torch.float32)
        processor = AutoImageProcessor.from_pretrained(name, local_files_only=True)
        estimator = pipeline("depth-estimation", model=model.eval(), image_processor=processor, device=device)
    except Exception as error:  # turn library errors into advice
        raise ModelLoadError(explain(name, error, DEPTH)) from error
    return DepthEstimator(estimator, name)


class Annotator:
    """A controlnet-aux detector and how to call it for one preprocessor."""

    def __init__(self, detector: Any, call: dict[str, Any]):
        self.detector = detector
        self.call = call

    def detect(self, picture: Image.Image, size: tuple[int, int]) -> Image.Image:
        resolution = min(picture.size)
        with torch.inference_mode():
            found = self.detector(picture, detect_resolution=resolution, image_resolution=resolution, output_type="pil", **self.call)
        return found.convert("RGB").resize(size, Image.Resampling.BILINEAR)


@contextlib.contextmanager
def _weights_only() -> Iterator[None]:
    """controlnet-aux calls `torch.load(path)`: for the duration, that is the restricted unpickler."""
    original = torch.load
    torch.load = functools.partial(original, weights_only=True, map_location="cpu")  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load = original  # type: ignore[assignment]


def load_annotator(name: str, folder: Path | None, device: torch.device) -> Annotator:
    if folder is None:
        raise EngineUserError(f"the {name} preprocessor needs SDBOT_ANNOTATORS, and it is not set any more.")
    missing = [file for file in FILES[name] if not (Path(folder) / file).is_file()]
    if missing:
        raise ModelLoadError(
            f"the {name} preprocessor needs {', '.join(missing)} in SDBOT_ANNOTATORS ({folder}); download them once "
            "from lllyasviel/Annotators into that folder."
        )
    paths = {file: str(Path(folder) / file) for file in FILES[name]}
    log.info("loading the %s annotator from %s", name, folder)
    with warnings.catch_warnings():  # controlnet-aux's package import warns about optional extras (mediapipe, timm)
        warnings.simplefilter("ignore")
        try:
            with _weights_only():
                annotator = _build(name, paths)
        except (EngineUserError, ModelLoadError):
            raise
        except Exception as error:
            raise ModelLoadError(
                f"I could not load the {name} annotator from {folder} ({type(error).__name__}: {error}); the files must "
                "be lllyasviel/Annotators' own."
            ) from error
    estimations = [getattr(annotator.detector, f"{part}_estimation", None) for part in ("body", "hand", "face")]
    if any(estimations):  # openpose: its `to` assumes hands and face are loaded, even for the body alone
        for estimation in filter(None, estimations):
            estimation.model.to(device)
    else:
        annotator.detector.to(device)
    return annotator


def _build(name: str, paths: dict[str, str]) -> Annotator:
    if name.startswith("openpose"):
        from controlnet_aux.open_pose import OpenposeDetector
        from controlnet_aux.open_pose.body import Body
        from controlnet_aux.open_pose.face import Face
        from controlnet_aux.open_pose.hand import Hand

        hand = Hand(paths[HAND]) if HAND in paths else None
        face = Face(paths[FACE]) if FACE in paths else None
        return Annotator(
            OpenposeDetector(Body(paths[BODY]), hand, face), {"include_hand": hand is not None, "include_face": face is not None}
        )
    if name.startswith("lineart_") and name != "lineart_anime":
        from controlnet_aux.lineart import LineartDetector

        folder = str(Path(paths["sk_model.pth"]).parent)
        return Annotator(LineartDetector.from_pretrained(folder), {"coarse": name == "lineart_coarse"})
    if name == "lineart_anime":
        from controlnet_aux.lineart_anime import LineartAnimeDetector

        return Annotator(LineartAnimeDetector.from_pretrained(str(Path(paths["netG.pth"]).parent)), {})
    if name in ("softedge_hed", "scribble_hed"):
        from controlnet_aux.hed import HEDdetector

        return Annotator(HEDdetector.from_pretrained(str(Path(paths["ControlNetHED.pth"]).parent)), {"scribble": name == "scribble_hed"})
    if name == "softedge_pidinet":
        from controlnet_aux.pidi import PidiNetDetector

        return Annotator(PidiNetDetector.from_pretrained(str(Path(paths["table5_pidinet.pth"]).parent)), {})
    raise AssertionError(f"no annotator {name!r}")
