"""Face restoration: find faces, restore each with a face model, paste it back with soft edges.

Detection (`FaceDetector`) uses OpenCV: by default the Haar cascade that ships inside the
opencv wheel (no download, but it misses turned, small or stylised faces), or YuNet
(`cv2.FaceDetectorYN`) when given its ONNX file, which is far more accurate.

Restoration models (GFPGAN v1.x, RestoreFormer; CodeFormer where the operator installed
spandrel_extra_arches) load through spandrel's architecture detection, from `.safetensors` only.
They take a 512x512 face and return one; how they must be fed differs: spandrel 0.4.2 feeds
GFPGAN its [0, 1] input unchanged and clamps the output to [0, 1], but GFPGAN (like CodeFormer)
was trained on [-1, 1] images (its own inference normalises with mean and std 0.5), so through
spandrel's call a real GFPGAN gets the wrong range and loses the dark half of its output. We call GFPGAN's module directly in [-1, 1]; RestoreFormer's spandrel wrapper does
the [-1, 1] round trip itself and is used as is.

CodeFormer's code and weights are under the S-Lab License 1.0 (non-commercial use only), so sdbot
does not install spandrel_extra_arches, which carries it; without it a CodeFormer file is refused
with what to install and why it is not included. With it, only its CodeFormer architecture is used
(from a registry of its own: the global spandrel registry, and so what upscaler files are
recognised as, stays as it was). Its spandrel wrapper feeds [0, 1] and always passes fidelity 0.5;
CodeFormer's own inference feeds [-1, 1] (mean and std 0.5) and passes `w`, so we call the module
directly, as for GFPGAN, with the job's fidelity (`forward(x, weight=w)` in spandrel_extra_arches
0.2; w = 0 skips the encoder features' fusion altogether, as in CodeFormer's code).

`restore_faces` crops a padded square around each box (reflected where it leaves the image),
restores it at the model's size, and blends it back through a mask that fades to zero at the
square's edge: every pixel outside all padded squares stays bit-identical.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from generation.errors import PICKLE_SUFFIXES, JobCancelled, ModelLoadError
from generation.spec import CODEFORMER_FIDELITY

log = logging.getLogger(__name__)

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
# Keys spandrel_extra_arches uses to recognise CodeFormer (with quantize.embedding.weight and
# encoder.blocks.0.weight, which other VQ models share); its package is the operator's to install.
CODEFORMER_KEYS = {"position_emb", "idx_pred_layer.1.weight", "ft_layers.0.self_attn.in_proj_weight"}
CODEFORMER_PACKAGE = "spandrel_extra_arches"
# One key each that spandrel's GFPGAN and RestoreFormer detection require.
FACE_MARKER_KEYS = {"stylegan_decoder.style_mlp.1.weight", "quantize.embedding.weight"}


@dataclass(frozen=True)
class FaceBox:
    x: int
    y: int
    width: int
    height: int


class FaceDetector:
    """Finds faces. Build once and reuse: loading the cascade or network costs more than a detection."""

    def __init__(self, model_file: str | Path | None = None):
        import cv2

        # YuNet keeps its input size as state, so detections are serialised per detector.
        self._lock = threading.Lock()
        if model_file is None:
            self._yunet = None
            self._cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / HAAR_CASCADE))
            if self._cascade.empty():
                raise ModelLoadError(f"OpenCV's {HAAR_CASCADE} is missing from this opencv install; reinstall opencv-python-headless.")
            return
        path = Path(model_file).expanduser()
        if path.suffix.lower() != ".onnx":
            raise ModelLoadError(
                f"`{path}` is not a YuNet face detector: give the ONNX file (face_detection_yunet_*.onnx from the "
                "OpenCV model zoo), or no file to use OpenCV's built-in Haar cascade."
            )
        if not path.is_file():
            raise ModelLoadError(f"the face detector `{path}` does not exist.")
        try:
            # The input size is set per image in detect(); 0.9 is the model zoo's score threshold.
            self._yunet = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.9, 0.3, 5000)
        except cv2.error as error:
            raise ModelLoadError(f"`{path}` could not be loaded as a YuNet face detector ({str(error).strip()}).") from error
        self._cascade = None

    def detect(self, image: Image.Image, *, min_size: int = 32) -> list[FaceBox]:
        """Faces at least `min_size` pixels wide and high, biggest first."""
        import cv2

        rgb = np.asarray(image.convert("RGB"))
        height, width = rgb.shape[:2]
        with self._lock:
            if self._yunet is not None:
                self._yunet.setInputSize((width, height))
                _, found = self._yunet.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                raw = [] if found is None else [row[:4] for row in found]
            else:
                # Equalising evens out the soft lighting of generated images, which the cascade
                # (trained on photos) otherwise often misses.
                gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
                raw = list(self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size)))
        boxes = []
        for x, y, w, h in raw:
            # YuNet boxes are floats and may reach past the image; clamp them into it.
            left, top = max(0, int(round(x))), max(0, int(round(y)))
            right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
            if right - left >= min_size and bottom - top >= min_size:
                boxes.append(FaceBox(left, top, right - left, bottom - top))
        return sorted(boxes, key=lambda box: box.width * box.height, reverse=True)


def _call_gfpgan(descriptor: Any, x: torch.Tensor, fidelity: float) -> torch.Tensor:
    # [-1, 1] in and out (see the module docstring). return_rgb=False skips intermediate images
    # nobody reads; the stored noise buffers (instead of fresh noise) make a restore repeatable.
    out = descriptor.model(x * 2 - 1, return_rgb=False, randomize_noise=False)[0]
    return ((out + 1) / 2).clamp_(0, 1)


def _call_spandrel(descriptor: Any, x: torch.Tensor, fidelity: float) -> torch.Tensor:
    return descriptor(x)  # [0, 1] in and out; the wrapper normalises for the model


def _call_codeformer(descriptor: Any, x: torch.Tensor, fidelity: float) -> torch.Tensor:
    # [-1, 1] in and out, and the fidelity weight w (see the module docstring).
    out = descriptor.model(x * 2 - 1, weight=fidelity)[0]
    return ((out + 1) / 2).clamp_(0, 1)


# Architecture id -> (input side, how to call it with a fidelity weight, which only CodeFormer
# reads). Only architectures whose calling convention was checked against their source are accepted.
_FACE_MODELS: dict[str, tuple[int, Callable[[Any, torch.Tensor, float], torch.Tensor]]] = {
    "GFPGAN": (512, _call_gfpgan),
    "RestoreFormer": (512, _call_spandrel),
    "CodeFormer": (512, _call_codeformer),
}
FIDELITY_MODELS = frozenset({"CodeFormer"})  # the architectures `--fidelity` applies to


@dataclass
class FaceRestorer:
    name: str
    architecture: str
    size: int  # the square side the model expects
    descriptor: Any  # spandrel's ImageModelDescriptor

    @property
    def takes_fidelity(self) -> bool:
        return self.architecture in FIDELITY_MODELS

    @torch.inference_mode()
    def restore(self, face: Image.Image, *, fidelity: float | None = None) -> Image.Image:
        """A square face crop in, the restored crop (same size) out. `fidelity` is CodeFormer's w
        (None: its default, CODEFORMER_FIDELITY); other models take none."""
        if fidelity is not None and not self.takes_fidelity:
            raise ValueError(f"{self.architecture} takes no fidelity weight")
        original_size = face.size
        face = face.convert("RGB")
        if face.size != (self.size, self.size):
            face = face.resize((self.size, self.size), Image.Resampling.LANCZOS)
        x = torch.from_numpy(np.array(face)).permute(2, 0, 1)[None]
        x = x.to(self.descriptor.device, self.descriptor.dtype) / 255.0
        out = _FACE_MODELS[self.architecture][1](self.descriptor, x, CODEFORMER_FIDELITY if fidelity is None else fidelity)
        pixels = (out[0].permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
        restored = Image.fromarray(pixels)
        if restored.size != original_size:
            restored = restored.resize(original_size, Image.Resampling.LANCZOS)
        return restored


def load_face_restorer(path: str | Path, device: torch.device, dtype: torch.dtype, name: str | None = None) -> FaceRestorer:
    import spandrel
    from safetensors import SafetensorError, safe_open

    path = Path(path).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelLoadError(
            f"`{path.name}` is a pickle ({path.suffix}); loading one can run code hidden in it, so sdbot only loads "
            "face models as .safetensors. Convert it once on a trusted machine with spandrel (which also unwraps "
            "'params_ema' and friends): `python -c \"import spandrel, safetensors.torch as st; "
            "m = spandrel.ModelLoader().load_from_file('GFPGANv1.4.pth'); "
            "st.save_file(m.model.state_dict(), 'GFPGANv1.4.safetensors')\"`."
        )
    if path.suffix.lower() != ".safetensors":
        raise ModelLoadError(f"`{path}` is not a .safetensors file; face models must be .safetensors.")
    if not path.is_file():
        raise ModelLoadError(f"the face model `{path}` does not exist. Check the face model's path in the settings.")
    try:  # the header alone tells a face model from anything else, without reading the weights
        with safe_open(str(path), framework="pt") as handle:
            keys = {key.removeprefix("module.").removeprefix("netG.") for key in handle.keys()}  # noqa: SIM118 - safe_open is not iterable
    except (SafetensorError, OSError) as error:
        raise ModelLoadError(f"`{path}` is not a readable .safetensors file ({error}).") from error
    registry = _codeformer_registry(path.name) if keys >= CODEFORMER_KEYS else spandrel.MAIN_REGISTRY
    not_face = ModelLoadError(f"`{path.name}` is not a face restoration model spandrel recognises (GFPGAN v1.x or RestoreFormer).")
    if not keys & FACE_MARKER_KEYS:
        raise not_face  # e.g. an SD checkpoint: refuse before reading gigabytes
    try:
        # Read onto the CPU and move once: spandrel builds the module on the CPU anyway, so reading
        # straight onto a GPU would only copy the weights there and back.
        descriptor = spandrel.ModelLoader(device="cpu", registry=registry).load_from_file(path)
    except spandrel.UnsupportedModelError:
        raise not_face from None
    except Exception as error:  # e.g. GFPGAN keys with other shapes (an older, incompatible variant)
        raise ModelLoadError(f"`{path.name}` could not be loaded as a face model: {type(error).__name__}: {error}") from error
    architecture = descriptor.architecture.id
    if descriptor.purpose != "FaceSR" or architecture not in _FACE_MODELS:
        raise ModelLoadError(
            f"`{path.name}` is a {architecture} model ({descriptor.purpose}), not a face restoration model. "
            f"Face models: {', '.join(_FACE_MODELS)}."
        )
    # None of them runs in float16 (spandrel marks them so); they are small, so use float32 then.
    # CodeFormer is marked as running in bfloat16 but does not: spandrel_extra_arches 0.2 multiplies
    # float32 one-hot codes by the bfloat16 codebook (get_codebook_feat), which raises.
    if (
        (dtype == torch.float16 and not descriptor.supports_half)
        or (dtype == torch.bfloat16 and not descriptor.supports_bfloat16)
        or (dtype != torch.float32 and architecture == "CodeFormer")
    ):
        log.info("%s does not run in %s; using float32", architecture, dtype)
        dtype = torch.float32
    descriptor.to(device=device, dtype=dtype).eval()
    return FaceRestorer(name or path.stem, architecture, _FACE_MODELS[architecture][0], descriptor)


def _codeformer_registry(file_name: str) -> Any:
    """A spandrel registry holding spandrel_extra_arches' CodeFormer alone; a ModelLoadError that
    says what to install, and why sdbot does not, when the package is missing."""
    import spandrel

    try:
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        raise ModelLoadError(
            f"`{file_name}` is a CodeFormer model, which needs the Python package {CODEFORMER_PACKAGE}. sdbot does not "
            "install it: it carries CodeFormer, whose licence (S-Lab License 1.0, for the code and the weights) allows "
            f"non-commercial use only. An admin whose use is non-commercial can `pip install {CODEFORMER_PACKAGE}` into "
            "the bot's environment and restart the worker; otherwise use GFPGAN v1.4 or RestoreFormer."
        ) from None
    support = EXTRA_REGISTRY.get("CodeFormer")
    if support is None:  # a future version that moved or renamed it
        raise ModelLoadError(f"`{file_name}` is a CodeFormer model, and this {CODEFORMER_PACKAGE} has no CodeFormer architecture.")
    registry = spandrel.ArchRegistry()
    registry.add(support)
    return registry


def expand_box(box: FaceBox, padding: float) -> FaceBox:
    """The square crop around `box`: its longer side plus `padding` of it on each side, same centre.
    It may reach past the image; `restore_faces` reflects the image there and pastes only inside."""
    side = max(1, round(max(box.width, box.height) * (1 + 2 * padding)))
    left = round(box.x + box.width / 2 - side / 2)
    top = round(box.y + box.height / 2 - side / 2)
    return FaceBox(left, top, side, side)


def feather_mask(side: int) -> np.ndarray:
    """A rounded square that is 1 inside and ramps smoothly to 0 at the crop's edge (float32)."""
    ramp = max(2.0, side * 0.12)
    radius = min(2 * ramp, side / 2)
    centre = np.arange(side, dtype=np.float32) + 0.5 - side / 2
    qx = np.abs(centre)[None, :] - (side / 2 - radius)
    qy = np.abs(centre)[:, None] - (side / 2 - radius)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - radius
    t = np.clip(-outside / ramp, 0.0, 1.0)  # distance inside the edge, in ramp widths
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no visible seam at either end


def restore_faces(
    image: Image.Image,
    boxes: list[FaceBox],
    restorer: FaceRestorer,
    *,
    strength: float = 1.0,
    padding: float = 0.3,
    fidelity: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Image.Image:
    """Restore each face in `boxes` (in order; later ones blend over earlier ones where they overlap).
    strength 1 pastes the restored face, 0 keeps the original; an RGBA image keeps its alpha.
    `fidelity` is CodeFormer's weight (`FaceRestorer.restore`), passed on only when given."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, not {strength}")
    if padding < 0:
        raise ValueError(f"padding must not be negative, not {padding}")
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    pixels = np.array(image.convert("RGB"))
    height, width = pixels.shape[:2]
    for box in boxes:
        if should_stop():
            raise JobCancelled()
        if strength == 0 or box.width <= 0 or box.height <= 0:
            continue
        square = expand_box(box, padding)
        left, top, side = square.x, square.y, square.width
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + side, width), min(top + side, height)
        if x0 >= x1 or y0 >= y1:
            continue  # the box lies wholly outside the image
        # Reflect the image where the square leaves it, so the face stays centred in the crop as
        # the models expect (they were trained on centred faces), instead of shifting the square.
        crop = np.pad(
            pixels[y0:y1, x0:x1],
            ((y0 - top, top + side - y1), (x0 - left, left + side - x1), (0, 0)),
            mode="reflect",
        )
        face = Image.fromarray(crop).resize((restorer.size,) * 2, Image.Resampling.LANCZOS)
        restored = restorer.restore(face) if fidelity is None else restorer.restore(face, fidelity=fidelity)
        restored_crop = np.asarray(restored.resize((side, side), Image.Resampling.LANCZOS), dtype=np.float32)
        weight = (feather_mask(side) * strength)[..., None]
        inside = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        original = pixels[y0:y1, x0:x1].astype(np.float32)
        # Where the weight is 0 this is exactly the original (x + 0 * d == x), edge pixels included.
        blended = original + weight[inside] * (restored_crop[inside] - original)
        pixels[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    result = Image.fromarray(pixels)
    if alpha is not None:
        result.putalpha(alpha)
    return result
