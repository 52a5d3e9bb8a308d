"""The engine: runs one GenerationSpec on a loaded diffusers pipeline and returns PNGs.

Runs in the worker's engine thread, never on the event loop. Reproducibility rules (DESIGN.md 4):
- image i of a batch is drawn from its own CPU `torch.Generator` seeded with seed + i, so any
  image equals the single image made with that seed, on CPU or GPU, and equals what bare
  diffusers gives for the same model, scheduler, seed and settings;
- the scheduler is built per job with `from_config` from the model's own scheduler config, so no
  scheduler instance is ever shared between runs.
Every PNG carries A1111 `parameters` (generation.parameters).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from generation.errors import EngineUserError, JobCancelled
from generation.loader import ModelCache
from generation.parameters import infotext
from generation.samplers import find_sampler
from generation.spec import GenerationSpec
from storage.blobs import BlobStore

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class RenderedImage:
    index: int
    seed: int
    png: bytes
    width: int
    height: int
    parameters: str


def build_scheduler(sampler_name: str, model_scheduler_config: dict[str, Any], seeds: list[int] | None = None) -> Any:
    """A fresh scheduler for one job. `seeds` (one per image) seed the Brownian-tree noise of
    DPM++ SDE, which ignores the pipeline's generators: without them its images would not be
    reproducible from their seed."""
    sampler = find_sampler(sampler_name)
    if sampler is None:
        raise EngineUserError(f"the sampler `{sampler_name}` is not available any more; pick another with --sampler.")
    options = dict(sampler.options)
    if sampler.scheduler == "DPMSolverSDEScheduler" and seeds is not None:
        options["noise_sampler_seed"] = list(seeds)
    return getattr(diffusers, sampler.scheduler).from_config(model_scheduler_config, **options)


class Engine:
    def __init__(self, models: ModelCache, blobs: BlobStore):
        self.models = models
        self.blobs = blobs

    @property
    def loaded_model(self) -> str | None:
        return self.models.current

    def preload(self, model: str) -> None:
        self.models.get(model)

    def run(
        self,
        spec: GenerationSpec,
        *,
        job_id: int | None = None,
        on_progress: ProgressFn = lambda step, total: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[RenderedImage]:
        loaded = self.models.get(spec.model)
        pipe = loaded.pipeline(spec.kind)
        pipe.scheduler = build_scheduler(spec.sampler, loaded.scheduler_config, spec.seeds())

        def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            on_progress(step + 1, pipeline.num_timesteps)
            if should_stop():
                raise JobCancelled()
            return {}

        arguments: dict[str, Any] = {
            "prompt": spec.prompt,
            "negative_prompt": spec.negative_prompt or None,
            "num_inference_steps": spec.steps,
            "guidance_scale": spec.cfg,
            "num_images_per_prompt": spec.n,
            "generator": [torch.Generator("cpu").manual_seed(seed) for seed in spec.seeds()],
            "callback_on_step_end": on_step_end,
            "output_type": "pil",
        }
        if spec.kind == "txt2img":
            arguments.update(width=spec.width, height=spec.height)
        else:
            arguments.update(image=self._init_image(spec), strength=spec.strength)
        try:
            with torch.inference_mode():
                images = pipe(**arguments).images
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise EngineUserError(
                f"the GPU ran out of memory drawing {spec.n} image(s) of {spec.width}x{spec.height}. "
                "Try a smaller --size or fewer images (--n)."
            ) from None
        return [self._encode(spec, index, image, job_id) for index, image in enumerate(images)]

    def _init_image(self, spec: GenerationSpec) -> Image.Image:
        assert spec.init_image is not None
        if not self.blobs.exists(spec.init_image):
            raise EngineUserError("the image this job starts from is gone from storage; send it again.")
        with Image.open(self.blobs.path(spec.init_image)) as image:
            image = image.convert("RGB")
            if image.size != (spec.width, spec.height):
                image = image.resize((spec.width, spec.height), Image.Resampling.LANCZOS)
            return image

    @staticmethod
    def _encode(spec: GenerationSpec, index: int, image: Image.Image, job_id: int | None) -> RenderedImage:
        seed = spec.seed + index
        parameters = infotext(spec, seed, job_id=job_id)
        info = PngInfo()
        info.add_text("parameters", parameters)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        return RenderedImage(index, seed, buffer.getvalue(), image.width, image.height, parameters)
