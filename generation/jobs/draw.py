"""txt2img and img2img: `/imagine`, rerolls, remixes and Vary, drawn by the engine's diffusion step."""

from __future__ import annotations

from PIL import Image

from generation.engine import Engine, Tracker
from generation.spec import GenerationSpec


def generate(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    if spec.kind == "txt2img":
        return engine.diffuse(spec, "txt2img", tracker, width=spec.width, height=spec.height)
    image = engine.init_image(spec)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.LANCZOS)
    return engine.diffuse(spec, "img2img", tracker, image=image, strength=spec.strength)
