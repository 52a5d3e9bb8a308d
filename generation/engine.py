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

from generation import regions
from generation.adapters import DEFAULT_BUDGET_BYTES, Adapters
from generation.errors import EngineUserError, JobCancelled
from generation.loader import LoadedModel, ModelCache
from generation.parameters import infotext
from generation.prompt_conditions import PromptConditions
from generation.samplers import find_sampler
from generation.seamless import circular_padding
from generation.spec import GenerationSpec
from generation.tools import Tools
from generation.wildcards import has_wildcards
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
        # Prompt conditionings of this job, by (prompt, negative, steps run, images, LoRAs,
        # embeddings): hires runs many passes alike; the images of a wildcard job each have their
        # own prompt; the text encoders' LoRAs and the embeddings are part of an encoding.
        self.conditions: dict[tuple[Any, ...], Any] = {}

    def step(self, step: int, pass_total: int) -> None:
        self.on_progress(self.done + step, max(self.planned, self.done + pass_total))
        self.check()

    def end_pass(self, pass_total: int) -> None:
        self.done += pass_total

    def check(self) -> None:
        if self.should_stop():
            raise JobCancelled()


class Engine:
    def __init__(
        self, models: ModelCache, blobs: BlobStore, tools: Tools | None = None, *,
        adapter_budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ):  # fmt: skip
        self.models = models
        self.blobs = blobs
        self.tools = tools or Tools(device=models.device, dtype=models.dtype)
        self.adapters = Adapters(blobs, adapter_budget_bytes)  # users' LoRAs, kept loaded per model (LRU by bytes)

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
        kinds: dict[str, Callable[[Any, GenerationSpec, Tracker], list[Image.Image]]] = {
            "txt2img": Engine._generate, "img2img": Engine._generate, "inpaint": painting.inpaint,
            "outpaint": painting.outpaint, "upscale": upscale.upscale, "facefix": fix_faces,
        }  # fmt: skip
        if spec.kind not in kinds:
            raise EngineUserError(f"I can't draw jobs of kind `{spec.kind}`.")
        if not spec.wildcards and not has_wildcards(f"{spec.prompt}\n{spec.negative_prompt}"):
            images = kinds[spec.kind](self, spec, tracker)
            return [self._encode(spec, index, image, job_id) for index, image in enumerate(images)]
        # Wildcards: each image gets its own picks, from its own seed, so it is drawn alone with
        # its own prompt; image i then equals the single image made with seed + i.
        tracker.planned = spec.n * spec.steps if spec.kind == "txt2img" else 0
        rendered = []
        for index in range(spec.n):
            single = spec.image_spec(index)
            [image] = kinds[spec.kind](self, single, tracker)
            rendered.append(self._encode(single, index, image, job_id, template=spec, index_seed=single.seed))
        return rendered

    def answer(
        self,
        spec: GenerationSpec,
        *,
        job_id: int | None = None,
        on_progress: ProgressFn = lambda step, total: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> dict[str, Any]:
        """Run a text job (`enhance`, `describe`): candidate prompts, as the job's result."""
        on_progress(0, 1)
        if spec.kind == "enhance":
            prompts = self.tools.enhancer().generate(
                spec.prompt, count=spec.n, seed=spec.seed, max_new_tokens=self.tools.enhance_max_new_tokens,
                should_stop=should_stop,
            )  # fmt: skip
            candidates = [{"prompt": text} for text in prompts]
        elif spec.kind == "describe":
            image = self.init_image(spec)
            prompts = self.tools.interrogator().describe(image, count=spec.n, should_stop=should_stop)
            # Drawn at the picture's proportions, as the user saw it.
            candidates = [{"prompt": text, "options": {"size": f"{spec.width}x{spec.height}"}} for text in prompts]
        else:
            raise EngineUserError(f"jobs of kind `{spec.kind}` draw pictures; they have no text answer.")
        if should_stop():
            raise JobCancelled()
        on_progress(1, 1)
        return {"candidates": candidates}

    # --- shared by every kind of job -------------------------------------------------------

    def diffuse(
        self, spec: GenerationSpec, pipeline_kind: str, tracker: Tracker, *, seeds: list[int] | None = None, **arguments: Any
    ) -> list[Image.Image]:
        """One pass of the diffusion pipeline `pipeline_kind` with the job's prompt and settings;
        `arguments` add or override pipeline arguments (image, mask_image, strength, ...)."""
        loaded = self.models.get(spec.model)
        pipe = loaded.pipeline(pipeline_kind)
        # The job's LoRAs (and no other) and embeddings, set BEFORE its prompt is encoded: our
        # prompt encoder runs the text encoders, whose adapters must already be the job's.
        with self.adapters.applied(pipe, spec, loaded.name):
            return self._diffuse(loaded, pipe, spec, tracker, seeds, arguments)

    def _diffuse(
        self, loaded: LoadedModel, pipe: Any, spec: GenerationSpec, tracker: Tracker, seeds: list[int] | None,
        arguments: dict[str, Any],
    ) -> list[Image.Image]:  # fmt: skip
        seeds = seeds or spec.seeds()
        pipe.scheduler = build_scheduler(spec.sampler, loaded.scheduler_config, seeds)
        strength = arguments.get("strength")
        steps_run = spec.steps if strength is None else min(int(spec.steps * strength), spec.steps)
        # wildcard images differ in prompt; the text encoders' LoRAs and embeddings change the encoding
        key = (spec.prompt, spec.negative_prompt, steps_run, len(seeds), spec.loras, spec.embeddings)
        if key not in tracker.conditions:  # every pipeline of a model shares its text encoders
            # Regional prompting (spec.regions): a conditioning per region, blended in the UNet.
            build = regions.conditions_for if spec.regions else PromptConditions.build
            tracker.conditions[key] = build(pipe, spec, steps_run, images=len(seeds))
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
            with self.job_components(loaded, pipe, spec), regions.applied(pipe, conditions), torch.inference_mode():
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
    def _encode(
        spec: GenerationSpec, index: int, image: Image.Image, job_id: int | None, *,
        template: GenerationSpec | None = None, index_seed: int | None = None,
    ) -> RenderedImage:  # fmt: skip
        """The PNG of image `index`. `template`: the job as written, when this image's prompt is
        its wildcard picks (`spec`), so the parameters keep both."""
        seed = index_seed if index_seed is not None else spec.seed + index
        parameters = infotext(spec, seed, job_id=job_id, size=image.size, template=template)
        info = PngInfo()
        info.add_text("parameters", parameters)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        return RenderedImage(index, seed, buffer.getvalue(), image.width, image.height, parameters)
