"""Control maps, and what a diffusion pass needs to be steered by them.

A job's controls (`spec.controls`) become `ControlInputs` once per job (`prepare`): each map is
made from its picture at the job's size (A1111's "Crop and Resize": the picture is scaled to
cover the size and centre-cropped), by its preprocessor, and every pass of the job takes the
part of the maps it draws (`pass_arguments`), so an inpaint crop or an upscale tile is steered by
the same part of the map as the picture it repaints. The maps are also the job's result beside
its pictures: people see what the preprocessor found.

Preprocessors: canny (OpenCV, A1111's thresholds), scribble_xdog (A1111's difference of
Gaussians), tile_resample and none (the picture itself), qr (segno), depth (transformers'
depth-estimation pipeline), and controlnet-aux's openpose, lineart and softedge networks from
the annotator files in `SDBOT_ANNOTATORS` (`generation.control.annotators`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageOps

from generation.control.catalog import CANNY_DEFAULTS
from generation.control.inputs import ControlInputs
from generation.control.qr import qr_map
from generation.errors import EngineUserError
from generation.spec import ControlRef, GenerationSpec

XDOG_THRESHOLD = 32  # A1111's scribble_xdog default


class Engine(Protocol):
    """What map making needs of the engine (generation.engine.Engine): no import of it, so the
    engine may import this package."""

    controlnets: Any
    models: Any
    tools: Any

    def blob_image(self, key: str, mode: str) -> Image.Image: ...


def prepare(engine: Engine, spec: GenerationSpec) -> ControlInputs:
    """Load the job's ControlNets and make its maps at the job's size (`spec.placement`: the
    picture's part of an outpaint canvas, the new area black)."""
    size = (spec.width, spec.height)
    maps = []
    for ref in spec.controls:
        if spec.placement is not None:
            x, y, w, h = spec.placement
            canvas = Image.new("RGB", size, (0, 0, 0))
            canvas.paste(make_map(engine, ref, (w, h)), (x, y))
            maps.append(canvas)
        else:
            maps.append(make_map(engine, ref, size))
    # Loaded as the model's family's ControlNets (the files say which family a model is).
    family = engine.models.get(spec.model).family.id if engine.models.registry.get(spec.model) is not None else "sd1"
    nets = tuple(engine.controlnets.get(ref.model, family) for ref in spec.controls)
    return ControlInputs(spec.controls, nets, maps, spec.control_mode)


def make_map(engine: Engine, ref: ControlRef, size: tuple[int, int]) -> Image.Image:
    """The control map of `ref` at `size`, RGB."""
    if ref.text is not None:  # qr
        return qr_map(ref.text, *size)
    assert ref.image is not None
    picture = ImageOps.fit(engine.blob_image(ref.image, "RGB"), size, Image.Resampling.LANCZOS)
    pre = ref.preprocessor
    if pre in ("none", "tile_resample"):
        return picture
    if pre == "canny":
        import cv2

        low, high = ref.low if ref.low is not None else CANNY_DEFAULTS[0], ref.high if ref.high is not None else CANNY_DEFAULTS[1]
        return _rgb(cv2.Canny(np.asarray(picture), low, high))
    if pre == "scribble_xdog":
        return _rgb(xdog(np.asarray(picture)))
    if pre == "depth":
        return _rgb(engine.tools.depth_estimator().estimate(picture))
    return engine.tools.annotator(pre).detect(picture, size)


def xdog(image: np.ndarray, threshold: int = XDOG_THRESHOLD) -> np.ndarray:
    """A1111's scribble_xdog: white strokes where the difference of two Gaussians is strong."""
    import cv2

    g1 = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.5)
    g2 = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
    result = np.zeros(image.shape[:2], dtype=np.uint8)
    result[2 * (255 - dog.astype(np.int32)) > threshold] = 255
    return result


def _rgb(gray: np.ndarray) -> Image.Image:
    """A one-channel map as the three-channel image ControlNets take (controlnet-aux's HWC3)."""
    if gray.dtype != np.uint8:
        raise EngineUserError("a preprocessor gave a map sdbot can't use; tell an admin (see the log).")
    return Image.fromarray(gray).convert("RGB")
