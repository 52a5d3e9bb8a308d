"""What a run trains on, besides the person's pictures as stored: their captions (sidecars, the
trigger alone, or the trigger before the captioning model's words) and DreamBooth's class
pictures (drawn once by the base model per model, class, count and size, then kept)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import torch
from PIL import Image

from generation.engine import Engine, build_scheduler
from generation.errors import JobCancelled
from generation.parameters import png
from generation.training.hooks import Hooks
from generation.training.spec import TrainingSpec

SAMPLE_SAMPLER = "Euler a"  # samples and class pictures
SAMPLE_CFG = 7.0


@contextlib.contextmanager
def sampling_scheduler(loaded: Any) -> Iterator[None]:
    """The loaded pipeline with a fresh SAMPLE_SAMPLER for the block (samples, class pictures),
    its own scheduler back afterwards. The engine thread is the run's alone meanwhile."""
    pipe = loaded.txt2img
    was, pipe.scheduler = pipe.scheduler, build_scheduler(SAMPLE_SAMPLER, loaded.scheduler_config)
    try:
        yield
    finally:
        pipe.scheduler = was


def images_of(blobs: Any, spec: TrainingSpec) -> list[Image.Image]:
    pictures = []
    for image in spec.images:
        with Image.open(blobs.path(image.blob)) as picture:
            pictures.append(picture.convert("RGB"))
    return pictures


def captions_for(engine: Engine, spec: TrainingSpec, should_stop: Callable[[], bool]) -> tuple[list[str], list[str]]:
    """Every picture's caption (sidecar, trigger alone, or trigger + the captioner's words), and
    notes for the person."""
    notes: list[str] = []
    written: list[str | None] = [None] * len(spec.images)
    wanted = [i for i, image in enumerate(spec.images) if image.caption is None and spec.captions == "auto"]
    if wanted:
        if not engine.tools.captioner:
            notes.append("No captioning model is configured (SDBOT_CAPTIONER), so each caption is the trigger word alone.")
        else:
            interrogator = engine.tools.interrogator()
            pictures = images_of(engine.blobs, spec)
            for i in wanted:
                written[i] = interrogator.caption(pictures[i], should_stop=should_stop)
                if should_stop():
                    raise JobCancelled()
    return [spec.caption_of(image, text) for image, text in zip(spec.images, written, strict=True)], notes


def class_key(spec: TrainingSpec) -> str:
    text = f"{spec.model}|{spec.class_prompt}|{spec.class_images}|{spec.resolution}|{spec.sample_steps}|{SAMPLE_SAMPLER}"
    return hashlib.sha256(text.encode()).hexdigest()


def class_pictures(engine: Engine, spec: TrainingSpec, hooks: Hooks) -> list[Image.Image]:
    """DreamBooth's class pictures: drawn once by the base model (no adapter), then kept."""
    if spec.method != "dreambooth":
        return []
    key = class_key(spec)
    stored = hooks.class_images(key)
    if stored is not None:
        return [Image.open(io.BytesIO(data)).convert("RGB") for data in stored]
    engine.adapters.unload_all()
    loaded = engine.models.get(spec.model)
    pipe = loaded.txt2img
    drawn = []
    with sampling_scheduler(loaded):
        for index in range(spec.class_images):
            hooks.progress(0, spec.steps, f"drawing class picture {index + 1} of {spec.class_images}")
            if hooks.stopping():
                raise JobCancelled()
            with torch.no_grad():
                drawn.append(
                    pipe(
                        prompt=spec.class_prompt,
                        width=spec.resolution,
                        height=spec.resolution,
                        num_inference_steps=spec.sample_steps,
                        guidance_scale=SAMPLE_CFG,
                        generator=torch.Generator("cpu").manual_seed(spec.seed + index),
                    ).images[0]
                )
    hooks.save_class_images(key, [png(picture) for picture in drawn])
    return drawn
