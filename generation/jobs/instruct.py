"""`/edit <instruction>` and its Edit again button: Instruct Pix2Pix on the configured instruct model
(`SDBOT_INSTRUCT_MODEL`; on the tiny model, the built-in tiny one). The picture steers through the
image guidance scale (`--image-cfg`, diffusers' `image_guidance_scale`) beside the prompt's CFG."""

from __future__ import annotations

from PIL import Image

from generation.engine import Engine, Tracker
from generation.spec import GenerationSpec


def edit(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    image = engine.init_image(spec)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.LANCZOS)
    return engine.diffuse(spec, "instruct", tracker, image=image, image_guidance_scale=spec.image_cfg)
