"""The engine: runs one GenerationSpec and returns PNGs.

Runs in the worker's engine thread, never on the event loop. Reproducibility rules (DESIGN.md 4):
- image i of a batch is drawn from its own CPU `torch.Generator` seeded with seed + i, so any
  image equals the single image made with that seed, on CPU or GPU, and equals what bare
  diffusers gives for the same model, scheduler, seed and settings;
- the scheduler is built per job with `from_config` from the model's own scheduler config, so no
  scheduler instance is ever shared between runs.
Every PNG carries A1111 `parameters` (generation.parameters).

One place per kind of job: txt2img and img2img here; inpaint and outpaint (zoom out, pan) in
`generation.painting`; upscales in `generation.upscale`; face restoration in `generation.faces`.
They all draw through `Engine.diffuse`, which owns the per-job state: the scheduler, the
generators, progress and cancel, the seamless (tiling) padding and a VAE override.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from generation.errors import EngineUserError, JobCancelled
from generation.loader import LoadedModel, ModelCache
from generation.parameters import infotext
from generation.prompt_conditions import PromptConditions
from generation.samplers import find_sampler
from generation.seamless import circular_padding
from generation.spec import GenerationSpec
from generation.tools import Tools
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


class Tracker:
    """Progress and cancel for one job, which may run several diffusion passes (hires tiles):
    `planned` is the job's total of denoising steps when known, so progress runs 0..100% once."""

    def __init__(self, on_progress: ProgressFn, should_stop: Callable[[], bool], planned: int = 0):
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.planned = planned
        self.done = 0
        # Prompt conditionings of this job, by (steps run, images): hires runs many passes alike.
        self.conditions: dict[tuple[int, int], Any] = {}

    def step(self, step: int, pass_total: int) -> None:
        self.on_progress(self.done + step, max(self.planned, self.done + pass_total))
        self.check()

    def end_pass(self, pass_total: int) -> None:
        self.done += pass_total

    def check(self) -> None:
        if self.should_stop():
            raise JobCancelled()


class Engine:
    def __init__(self, models: ModelCache, blobs: BlobStore, tools: Tools | None = None):
        self.models = models
        self.blobs = blobs
        self.tools = tools or Tools(device=models.device, dtype=models.dtype)

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
        from generation import painting, upscale
        from generation.faces_job import fix_faces

        tracker = Tracker(on_progress, should_stop)
        if spec.kind in ("txt2img", "img2img"):
            images = self._generate(spec, tracker)
        elif spec.kind == "inpaint":
            images = painting.inpaint(self, spec, tracker)
        elif spec.kind == "outpaint":
            images = painting.outpaint(self, spec, tracker)
        elif spec.kind == "upscale":
            images = upscale.upscale(self, spec, tracker)
        elif spec.kind == "facefix":
            images = fix_faces(self, spec, tracker)
        else:  # pragma: no cover - the spec's Literal rules this out
            raise EngineUserError(f"I can't run jobs of kind `{spec.kind}`.")
        return [self._encode(spec, index, image, job_id) for index, image in enumerate(images)]

    # --- shared by every kind of job -------------------------------------------------------

    def diffuse(
        self, spec: GenerationSpec, pipeline_kind: str, tracker: Tracker, *, seeds: list[int] | None = None, **arguments: Any
    ) -> list[Image.Image]:
        """One pass of the diffusion pipeline `pipeline_kind` with the job's prompt and settings;
        `arguments` add or override pipeline arguments (image, mask_image, strength, ...)."""
        loaded = self.models.get(spec.model)
        pipe = loaded.pipeline(pipeline_kind)
        seeds = seeds or spec.seeds()
        pipe.scheduler = build_scheduler(spec.sampler, loaded.scheduler_config, seeds)
        strength = arguments.get("strength")
        steps_run = spec.steps if strength is None else min(int(spec.steps * strength), spec.steps)
        key = (steps_run, len(seeds))
        if key not in tracker.conditions:  # every pipeline of a model shares its text encoders
            tracker.conditions[key] = PromptConditions.build(pipe, spec, steps_run, images=len(seeds))
        conditions = tracker.conditions[key]

        def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            tracker.step(step + 1, pipeline.num_timesteps)
            return conditions.switch(pipeline, step + 1)

        call: dict[str, Any] = {
            **conditions.first().pipeline_arguments(),  # A1111's prompt syntax, weights and chunks
            "callback_on_step_end_tensor_inputs": conditions.tensor_inputs(),
            "num_inference_steps": spec.steps,
            "guidance_scale": spec.cfg,
            "num_images_per_prompt": len(seeds),
            "generator": [torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            "callback_on_step_end": on_step_end,
            "output_type": "pil",
        }
        call.update(arguments)
        try:
            with self.job_components(loaded, pipe, spec), torch.inference_mode():
                images = pipe(**call).images
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            width, height = call.get("width") or spec.width, call.get("height") or spec.height
            raise EngineUserError(
                f"the GPU ran out of memory drawing {len(seeds)} image(s) of {width}x{height}. "
                "Try a smaller size or fewer images (--n)."
            ) from None
        tracker.end_pass(pipe.num_timesteps)
        return list(images)

    @contextlib.contextmanager
    def job_components(self, loaded: LoadedModel, pipe: Any, spec: GenerationSpec) -> Iterator[None]:
        """The job's own VAE and padding, on the shared pipeline for this job only, restored after
        it (the engine thread runs one job at a time, so no other job sees them)."""
        own_vae = pipe.vae
        if spec.vae:
            pipe.vae = loaded.vae(self.tools.vae_source(spec.vae), self.models.device, self.models.dtype)
        try:
            with circular_padding([pipe.unet, pipe.vae], enabled=spec.tile):
                yield
        finally:
            pipe.vae = own_vae

    def init_image(self, spec: GenerationSpec) -> Image.Image:
        """The job's input image at its own size, RGB."""
        assert spec.init_image is not None
        return self.blob_image(spec.init_image, "RGB")

    def blob_image(self, key: str, mode: str) -> Image.Image:
        if not self.blobs.exists(key):
            raise EngineUserError("an image this job needs is gone from storage; send it again.")
        with Image.open(self.blobs.path(key)) as image:
            return image.convert(mode)

    def native_size(self, spec: GenerationSpec) -> int:
        entry = self.models.registry.get(spec.model)
        return entry.native_size if entry is not None else 512

    # --- txt2img and img2img -----------------------------------------------------------------

    def _generate(self, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
        if spec.kind == "txt2img":
            return self.diffuse(spec, "txt2img", tracker, width=spec.width, height=spec.height)
        image = self.init_image(spec)
        if image.size != (spec.width, spec.height):
            image = image.resize((spec.width, spec.height), Image.Resampling.LANCZOS)
        return self.diffuse(spec, "img2img", tracker, image=image, strength=spec.strength)

    @staticmethod
    def _encode(spec: GenerationSpec, index: int, image: Image.Image, job_id: int | None) -> RenderedImage:
        seed = spec.seed + index
        parameters = infotext(spec, seed, job_id=job_id, size=image.size)
        info = PngInfo()
        info.add_text("parameters", parameters)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        return RenderedImage(index, seed, buffer.getvalue(), image.width, image.height, parameters)
