"""`/edit <instruction>` and its Edit again button, on one of two kinds of model:

- an edit model of the registry, whose family edits by instruction (`Family.edit`: FLUX.1 Kontext,
  FLUX.2 Klein): its edit pipeline, made of the loaded weights, gets the instruction as its prompt
  and the pictures (the one to edit, then the references: "picture 2", ...), each scaled to the
  edit's pixel count (aspect kept, sides in the family's multiple), so a reference costs what the
  picture costs and the model sees the pictures at the scale it draws;
- else Instruct Pix2Pix on the configured instruct model (`SDBOT_INSTRUCT_MODEL`; on the tiny
  model, the built-in tiny one): the picture steers through the image guidance scale
  (`--image-cfg`, diffusers' `image_guidance_scale`) beside the prompt's CFG.

A masked edit (a job with `mask` or `select`: `/edit ... --box`, a mask attached, `--select`) runs
the edit model's inpaint pipeline (`EditSupport.inpaint_pipelines`: FLUX.1 Kontext's, Qwen-Image-
Edit's, FLUX.2 Klein's) on the picture scaled as above, with the region as /inpaint resolves it
(generation.jobs.painting.job_mask, feathered by `--blur`); the pipeline keeps the picture's
latents outside the mask, and its result, scaled back to the picture's size, is pasted through the
feathered mask, so pixels outside it are the picture's own, bit for bit (as /inpaint's).
Instruct Pix2Pix has no masked edit (the command layer refuses it before queueing)."""

from __future__ import annotations

import math

from PIL import Image

from generation.engine import Engine, Tracker
from generation.errors import EngineUserError
from generation.imaging.segment import blur_mask, composite
from generation.jobs.painting import job_mask
from generation.models import families
from generation.spec import GenerationSpec


def edit(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    entry = engine.models.registry.get(spec.model)
    masked = spec.mask is not None or spec.select is not None
    if entry is not None:
        family = families.family(entry.family)
        if masked:
            return _masked_edit(engine, spec, tracker, family, entry.guessed_variant)
        return _edit_with_family(engine, spec, tracker, family, entry.guessed_variant)
    if masked:
        raise EngineUserError("Instruct Pix2Pix doesn't edit inside a mask; use /inpaint, or /edit on a model that does masked edits.")
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


def _masked_edit(engine: Engine, spec: GenerationSpec, tracker: Tracker, family: families.Family, variant: str | None) -> list[Image.Image]:
    """The edit inside the job's mask, on the family's inpaint pipeline (module docstring)."""
    support = family.edit
    if support is None or support.inpaint_pipeline(variant) is None:
        label = family.variant(variant).label or family.label
        raise EngineUserError(f"the model `{spec.model}` ({label}) doesn't edit inside a mask; send the /edit without the mask.")
    original = engine.init_image(spec)
    soft = blur_mask(job_mask(engine, spec, original), spec.mask_blur)
    region = soft.point(lambda value: 255 if value > 0 else 0)  # the model edits the whole blend band
    limit = support.inpaint_limit(variant)
    pictures = [original, *(engine.blob_image(key, "RGB") for key in spec.edit_images)]
    if len(pictures) > limit:
        raise EngineUserError(f"`{spec.model}` edits inside a mask with at most {limit} picture(s); this job has {len(pictures)}.")
    area = spec.width * spec.height
    picture, *references = [at_area(image, area, family.size_multiple, min_side=support.min_side) for image in pictures]
    arguments: dict[str, object] = {
        "image": picture,
        "mask_image": region.resize(picture.size, Image.Resampling.NEAREST),
        "width": picture.width,
        "height": picture.height,
        "strength": spec.strength if spec.strength is not None else support.inpaint_strength,
        **support.fixed_arguments,
    }
    if support.area_argument:
        arguments[support.area_argument] = area
    if references:
        assert support.inpaint_reference_argument is not None
        arguments[support.inpaint_reference_argument] = references[0]
    painted = engine.diffuse(spec, "edit-inpaint", tracker, **arguments)
    return [composite(original, _at_size(image, original.size), soft) for image in painted]


def _at_size(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


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
