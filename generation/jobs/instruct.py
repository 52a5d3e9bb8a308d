"""`/edit <instruction>` and its Edit again button, on one of two kinds of model:

- an edit model of the registry, whose family edits by instruction (`Family.edit`: FLUX.1 Kontext,
  FLUX.2 Klein): its edit pipeline, made of the loaded weights, gets the instruction as its prompt
  and the pictures (the one to edit, then the references: "picture 2", ...), each scaled to the
  edit's pixel count (aspect kept, sides in the family's multiple), so a reference costs what the
  picture costs and the model sees the pictures at the scale it draws;
- else Instruct Pix2Pix on the configured instruct model (`SDBOT_INSTRUCT_MODEL`; on the tiny
  model, the built-in tiny one): the picture steers through the image guidance scale
  (`--image-cfg`, diffusers' `image_guidance_scale`) beside the prompt's CFG."""

from __future__ import annotations

import math

from PIL import Image

from generation.engine import Engine, Tracker
from generation.errors import EngineUserError
from generation.models import families
from generation.spec import GenerationSpec


def edit(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    entry = engine.models.registry.get(spec.model)
    if entry is not None:
        return _edit_with_family(engine, spec, tracker, families.family(entry.family), entry.guessed_variant)
    if spec.image_cfg is None:
        raise EngineUserError("this /edit job has no image CFG, which Instruct Pix2Pix needs; send the /edit again.")
    image = engine.init_image(spec)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.LANCZOS)
    return engine.diffuse(spec, "instruct", tracker, image=image, image_guidance_scale=spec.image_cfg)


def _edit_with_family(
    engine: Engine, spec: GenerationSpec, tracker: Tracker, family: families.Family, variant: str | None
) -> list[Image.Image]:
    support = family.edit
    if support is None or support.pipeline(variant) is None:
        raise EngineUserError(f"the model `{spec.model}` ({family.label}) doesn't edit pictures by instruction.")
    limit = support.limit(variant)
    pictures = [engine.init_image(spec), *(engine.blob_image(key, "RGB") for key in spec.edit_images)]
    if len(pictures) > limit:
        raise EngineUserError(f"`{spec.model}` edits with at most {limit} picture(s); this job has {len(pictures)}.")
    area = spec.width * spec.height
    pictures = [at_area(picture, area, family.size_multiple, min_side=support.min_side) for picture in pictures]
    arguments: dict[str, object] = {
        "image": pictures if limit > 1 else pictures[0],
        "width": spec.width,
        "height": spec.height,
        **support.fixed_arguments,
    }
    if support.area_argument:
        arguments[support.area_argument] = area
    return engine.diffuse(spec, "edit", tracker, **arguments)


def at_area(picture: Image.Image, area: int, multiple: int, *, min_side: int = 0) -> Image.Image:
    """`picture` scaled (up or down) to about `area` pixels, its aspect kept, each side a multiple
    of `multiple`; a side that would be under one multiple is one, and the other keeps the area.
    Then, where its shorter side is under `min_side`, scaled up until it is not (the area grows)."""
    scale = math.sqrt(area / (picture.width * picture.height))
    width, height = (max(1, round(side * scale / multiple)) * multiple for side in picture.size)
    if picture.width * scale < multiple:
        height = max(1, round(area / width / multiple)) * multiple
    elif picture.height * scale < multiple:
        width = max(1, round(area / height / multiple)) * multiple
    if min(width, height) < min_side:
        grow = min_side / min(width, height)
        width, height = (math.ceil(side * grow / multiple) * multiple for side in (width, height))
    if (width, height) == picture.size:
        return picture
    return picture.resize((width, height), Image.Resampling.LANCZOS)
