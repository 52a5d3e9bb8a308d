"""The engine core: the diffusion step every job kind draws through, and the per-job state
around it. Runs in the worker's engine thread, never on the event loop.

Reproducibility rules (docs/rules.md, "Reproducibility"):
- image i of a batch is drawn from its own CPU `torch.Generator` seeded with seed + i, so any
  image equals the single image made with that seed, on CPU or GPU, and equals what bare
  diffusers gives for the same model, scheduler, seed and settings;
- the scheduler is built per job with `from_config` from the model's own scheduler config, so no
  scheduler instance is ever shared between runs.

`Engine.diffuse` owns that state: the scheduler, the generators, the prompt conditionings, the
job's LoRAs, its image references (an IP-Adapter, `generation.control.ip_adapters`; on FLUX.1 its
IP-Adapter or Redux, `generation.control.flux_references`), progress and
cancel (`Tracker`), the seamless (tiling) padding and a VAE override, and it restores the shared
pipeline afterwards. What each kind of job does with it (txt2img,
inpaint, upscale, ...) lives in `generation.jobs`, which imports this module; this module imports
no job kind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import diffusers
import torch
from PIL import Image

from config.models import IPAdapterEntry, ModelEntry
from generation.assets.adapters import DEFAULT_BUDGET_BYTES, Adapters
from generation.control import flux_references
from generation.control.catalog import TINY_PIX2PIX
from generation.control.inputs import ControlInputs
from generation.control.ip_adapters import References, adapter_entry, check_spec, load_ip_adapter
from generation.control.nets import ControlNets, load_instruct_pipeline
from generation.errors import EngineUserError, JobCancelled
from generation.imaging.previews import Previewer
from generation.imaging.seamless import circular_padding
from generation.models import caches, families
from generation.models.families import SD1, Family
from generation.models.loader import LoadedModel, ModelCache
from generation.models.motion import MotionModels, context_windows
from generation.models.samplers import find_sampler
from generation.prompts import regions
from generation.prompts.conditions import PromptConditions
from generation.prompts.plain import PlainPrompts
from generation.spec import GenerationSpec
from generation.tools import Tools
from storage.blobs import BlobStore

ProgressFn = Callable[[int, int], None]


def build_scheduler(sampler_name: str, model_scheduler_config: dict[str, Any], seeds: list[int] | None = None, family: Family = SD1) -> Any:
    """A fresh scheduler for one job. `seeds` (one per image) seed the Brownian-tree noise of
    DPM++ SDE, which ignores the pipeline's generators: without them its images would not be
    reproducible from their seed. Flow-matching families have their own samplers (`Family.samplers`)."""
    if family.flow_matching:
        if sampler_name not in family.samplers:
            raise EngineUserError(f"{family.label} draws with {', '.join(family.samplers)}, not `{sampler_name}`; leave out --sampler.")
        scheduler, flow_options = family.samplers[sampler_name]
        return getattr(diffusers, scheduler).from_config(model_scheduler_config, **flow_options)
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
        # The job's ControlNets and maps (generation.control.preprocess.prepare), for every pass.
        self.controls: ControlInputs | None = None
        # The job's image references (IP-Adapter and embeddings, encoded once), for every pass.
        self.references: References | flux_references.FluxReferences | None = None

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
        self,
        models: ModelCache,
        blobs: BlobStore,
        tools: Tools | None = None,
        *,
        adapter_budget_bytes: int = DEFAULT_BUDGET_BYTES,
        controlnets: ControlNets | None = None,
        instruct_source: str | None = None,
        motion: MotionModels | None = None,
        ip_adapters: dict[str, IPAdapterEntry] | None = None,
        previews: Previewer | None = None,
    ):
        self.models = models
        self.blobs = blobs
        self.tools = tools or Tools(device=models.device, dtype=models.dtype)
        self.adapters = Adapters(blobs, adapter_budget_bytes)  # users' LoRAs, kept loaded per model (LRU by bytes)
        # ControlNet models, kept loaded beside the base models (only the tiny ones without a config)
        self.controlnets = controlnets or ControlNets({}, models.models_dir, models.device, models.dtype)
        self.instruct_source = instruct_source  # SDBOT_INSTRUCT_MODEL, for /edit
        self._instruct: LoadedModel | None = None
        # AnimateDiff's motion adapters and camera moves (only the tiny ones without a config)
        self.motion = motion or MotionModels({}, {}, models.models_dir, models.device, models.dtype)
        self.ip_adapters = ip_adapters or {}  # SDBOT_IP_ADAPTERS (only the tiny one without a config)
        # Live previews (SDBOT_PREVIEW): made between steps while the worker shows a task's previews.
        self.previews = previews or Previewer()

    @property
    def loaded_model(self) -> str | None:
        return self.models.current

    def preload(self, model: str) -> None:
        self.models.get(model)

    # --- shared by every kind of job -------------------------------------------------------

    def diffuse(
        self, spec: GenerationSpec, pipeline_kind: str, tracker: Tracker, *, seeds: list[int] | None = None, **arguments: Any
    ) -> list[Image.Image]:
        """One pass of the diffusion pipeline `pipeline_kind` with the job's prompt and settings;
        `arguments` add or override pipeline arguments (image, mask_image, strength, ...). A job
        with controls is steered by them: `control_region` (an argument) is the part of the canvas
        this pass draws, when it is not all of it (an inpaint crop, an upscale tile)."""
        loaded = self.instruct_model(spec.model) if pipeline_kind == "instruct" else self.models.get(spec.model)
        if pipeline_kind == "img2img" and loaded.family.img2img_by_inpaint:  # FLUX.2 Klein: no img2img pipeline
            pipeline_kind = "inpaint"
            arguments = {**arguments, "mask_image": Image.new("L", arguments["image"].size, 255)}
        region = arguments.pop("control_region", None)
        support = loaded.family.controlnet
        if tracker.controls is not None:
            pipe = loaded.control_pipeline(pipeline_kind, tracker.controls.nets)
            size = _pass_size(spec, arguments)
            arguments = {**tracker.controls.pass_arguments(pipeline_kind, size, region, support), **arguments}  # type: ignore[arg-type]
        else:
            pipe = loaded.pipeline("txt2img" if pipeline_kind == "instruct" else pipeline_kind)
        # The job's LoRAs (and no other) and embeddings, set BEFORE its prompt is encoded: our
        # prompt encoder runs the text encoders, whose adapters must already be the job's.
        references = self.references(loaded, spec, tracker)
        with (
            self.adapters.applied(pipe, spec, loaded.name, denoiser=loaded.family.denoiser),
            references.applied(pipe) if references is not None else contextlib.nullcontext(),
        ):
            if tracker.controls is not None and support is not None and support.map_latents_unseeded:
                return self._diffuse_seeded(loaded, pipe, spec, tracker, seeds or spec.seeds(), arguments, pipeline_kind)
            return self._diffuse(loaded, pipe, spec, tracker, seeds, arguments, kind=pipeline_kind)

    def _diffuse_seeded(
        self, loaded: LoadedModel, pipe: Any, spec: GenerationSpec, tracker: Tracker, seeds: list[int], arguments: dict[str, Any], kind: str
    ) -> list[Image.Image]:
        """Each image alone, torch's global RNG seeded with its seed: for a pipeline that samples
        the map's latents from that RNG (SD 3.5's ControlNet pipeline), so that image i is the
        single image drawn with seed + i, as bare diffusers draws it after `torch.manual_seed`."""
        strength = arguments.get("strength")
        steps = spec.steps if strength is None else min(int(spec.steps * strength), spec.steps)
        tracker.planned = max(tracker.planned, tracker.done + steps * len(seeds))  # progress runs 0..100% once
        cuda = [self.models.device.index or 0] if self.models.device.type == "cuda" else []
        images = []
        for seed in seeds:
            with torch.random.fork_rng(devices=cuda):  # the worker's own RNG state is left as it was
                torch.manual_seed(seed)
                images += self._diffuse(loaded, pipe, spec, tracker, [seed], arguments, kind=kind)
        return images

    def diffuse_clip(self, spec: GenerationSpec, pipeline_kind: str, tracker: Tracker, **arguments: Any) -> list[Image.Image]:
        """One AnimateDiff pass that draws a clip's frames: `animate` from noise (`num_frames`), or
        `video2video` restyling `video` (a list of frames) at `strength`, with the job's motion
        adapter, camera moves, LoRAs and prompt. One generator (the job's seed) makes the whole
        clip's noise; a clip longer than its context is drawn in windows (`context_windows`)."""
        assert spec.clip is not None and spec.clip.motion is not None
        if tracker.controls is not None or spec.regions or spec.references:
            what = "ControlNet" if tracker.controls is not None else "regional prompts" if spec.regions else "image references"
            raise EngineUserError(f"{what} don't steer clips yet; drop them from this /animate or /video2video.")
        loaded = self.models.get(spec.model)
        pipe = self.motion.pipeline(loaded, pipeline_kind, spec.clip.motion)
        cameras = self.motion.camera_weights(pipe, spec.clip.cameras)
        with self.adapters.applied(pipe, spec, loaded.name, extra=cameras, denoiser=loaded.family.denoiser):
            return self._diffuse(loaded, pipe, spec, tracker, [spec.seed], arguments, clip=True)

    def diffuse_video(
        self, spec: GenerationSpec, tracker: Tracker, *, first: Image.Image | None = None, last: Image.Image | None = None
    ) -> list[Image.Image]:
        """One pass of a video model (Wan, LTX-Video: `Family.video()`) that draws a clip's
        `clip.frames` frames: from the prompt (t2v), from a first frame (i2v), or from a first to a
        last frame (flf2v), at the job's size, with the job's prompt, sampler, steps, CFG and
        `--motion` (the family's MotionRule: words added to the prompts, or the frame rate the model
        is told), and its LoRAs (on both experts of Wan 2.2 A14B). One generator seeded with the job's seed makes the clip's noise, as bare diffusers
        draws it; progress and cancel go through the tracker at each step."""
        assert spec.clip is not None
        used = (
            ("ControlNet", tracker.controls is not None),
            ("regional prompts", spec.regions),
            ("image references", spec.references),
        )
        refused = [what for what, given in used if given]
        if refused:  # the command layer refuses them before queueing (Family.why_not); a job made elsewhere stops here
            what = refused[0]
            raise EngineUserError(f"{what} don't steer a video model's clips here; drop them from this clip.")
        loaded = self.models.get(spec.model)
        support = loaded.family.video()
        if support is None:
            raise EngineUserError(
                f"the model `{loaded.name}` ({loaded.family.label}) draws pictures, not clips; pick a video model with --model."
            )
        variant = loaded.entry.guessed_variant
        problems = support.check(variant, spec.clip.frames, spec.width, spec.height, first is not None, last is not None)
        if problems:
            raise EngineUserError(" ".join(problems))
        mode = support.mode_for(first is not None, last is not None)
        pipe = loaded.video_pipeline(mode)
        rule = support.motion.get(spec.clip.motion_amount or "")
        drawn = spec
        if rule is not None and (rule.prompt_suffix or rule.negative_suffix):  # the family's words for the motion asked
            drawn = spec.evolve(
                prompt=_joined(spec.prompt, rule.prompt_suffix), negative_prompt=_joined(spec.negative_prompt, rule.negative_suffix)
            )
        arguments: dict[str, Any] = {
            **support.fixed_arguments,
            "num_frames": spec.clip.frames,
            "width": spec.width,
            "height": spec.height,
        }
        if support.fps_argument is not None:  # LTX-Video's frame-rate conditioning (and `--motion` through it)
            arguments[support.fps_argument] = max(1, round(spec.clip.fps * (rule.frame_rate_factor if rule else 1.0)))
        if mode == "flf2v" and support.end_frame == "conditions":  # LTX-Video: a condition at the first and at the last frame
            from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

            arguments["conditions"] = [
                LTXVideoCondition(image=first, frame_index=0),
                LTXVideoCondition(image=last, frame_index=spec.clip.frames - 1),
            ]
        elif first is not None:
            arguments["image"] = first
            if last is not None:
                arguments[support.end_frame] = last
        options = support.scheduler_options.get(mode)
        report = tracker.on_progress
        if spec.clip.max_seconds is not None:  # SDBOT_MAX_CLIP_GPU_SECONDS: checked at each step
            tracker.on_progress = _timed(report, spec.clip.max_seconds)
        try:
            with self.adapters.applied(pipe, spec, loaded.name, denoiser=loaded.family.denoiser):  # the family's LoRAs
                return self._diffuse(loaded, pipe, drawn, tracker, [spec.seed], arguments, clip=True, scheduler_options=options)
        finally:
            tracker.on_progress = report

    def diffuse_batch(self, specs: list[GenerationSpec], tracker: Tracker) -> list[list[Image.Image]]:
        """Several txt2img jobs with one batch key (GenerationSpec.batch_key) drawn together: each
        job's prompts encoded alone (as when it runs alone), the conditionings laid side by side,
        one generator per image (seed + i of its own job), one pipeline call. Returns each job's
        images. Prompts that encode to a different number of 75-token chunks cannot share a call
        (the embeddings differ in length, and padding one would change its picture), so they are
        drawn in one call per length."""
        lead = specs[0]
        if any(spec.batch_key() != lead.batch_key() or not spec.batch_key() for spec in specs):
            raise ValueError("only txt2img jobs with one batch key can be drawn together")
        loaded = self.models.get(lead.model)
        pipe = loaded.pipeline("txt2img")
        size = {"width": lead.width, "height": lead.height}
        if loaded.family.prompt_encoding != "a1111":  # plain prompts: one call, a prompt row per picture
            together = PlainPrompts.side_by_side(specs, negative=_negatives(loaded.family))
            seeds = [seed for spec in specs for seed in spec.seeds()]
            tracker.planned = lead.steps
            with self.adapters.applied(pipe, lead, loaded.name, denoiser=loaded.family.denoiser):
                drawn = self._diffuse(loaded, pipe, lead, tracker, seeds, size, conditions=together)
            return [[drawn.pop(0) for _ in range(spec.n)] for spec in specs]
        images: list[list[Image.Image]] = [[] for _ in specs]
        with self.adapters.applied(pipe, lead, loaded.name, denoiser=loaded.family.denoiser):  # one LoRA set: part of the batch key
            encoded = [PromptConditions.build(pipe, spec, spec.steps, images=1).first() for spec in specs]
            by_length: dict[tuple[int, ...], list[int]] = {}
            for index, conditioning in enumerate(encoded):
                by_length.setdefault(tuple(conditioning.prompt_embeds.shape), []).append(index)
            tracker.planned = lead.steps * len(by_length)
            for members in by_length.values():
                together = PromptConditions.side_by_side([encoded[i] for i in members], [specs[i].n for i in members])
                seeds = [seed for i in members for seed in specs[i].seeds()]
                drawn = self._diffuse(loaded, pipe, lead, tracker, seeds, size, conditions=together)
                for i in members:
                    images[i], drawn = drawn[: specs[i].n], drawn[specs[i].n :]
        return images

    def _diffuse(
        self,
        loaded: LoadedModel,
        pipe: Any,
        spec: GenerationSpec,
        tracker: Tracker,
        seeds: list[int] | None,
        arguments: dict[str, Any],
        conditions: PromptConditions | PlainPrompts | None = None,
        clip: bool = False,
        kind: str = "txt2img",
        scheduler_options: Mapping[str, Any] | None = None,
    ) -> list[Image.Image]:
        seeds = seeds or spec.seeds()
        scheduler_config = {**loaded.scheduler_config, **(scheduler_options or {})}
        pipe.scheduler = build_scheduler(spec.sampler, scheduler_config, seeds, loaded.family)
        strength = arguments.get("strength")
        steps_run = spec.steps if strength is None else min(int(spec.steps * strength), spec.steps)
        # wildcard images differ in prompt; the text encoders' LoRAs and embeddings change the encoding
        key = (spec.prompt, spec.negative_prompt, steps_run, len(seeds), spec.loras, spec.embeddings)
        if conditions is None:
            if key not in tracker.conditions:  # every pipeline of a model shares its text encoders
                if loaded.family.prompt_encoding != "a1111":  # the pipeline encodes plain text itself
                    tracker.conditions[key] = PlainPrompts.build(spec, images=len(seeds), negative=_negatives(loaded.family))
                else:  # Regional prompting (spec.regions): a conditioning per region, blended in the UNet.
                    build = regions.conditions_for if spec.regions else PromptConditions.build
                    tracker.conditions[key] = build(pipe, spec, steps_run, images=len(seeds))
            conditions = tracker.conditions[key]

        frames = (len(arguments["video"]) if "video" in arguments else int(arguments["num_frames"])) if clip else 0
        previews, preview_size = self.previews, _pass_size(spec, arguments)

        def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            tracker.step(step + 1, pipeline.num_timesteps)
            previews.step(tensors.get("latents"), loaded.family, preview_size, frames)  # at most every SDBOT_PREVIEW_SECONDS
            changed = conditions.switch(pipeline, step + 1)
            if clip and "prompt_embeds" in changed:  # AnimateDiff holds the prompt once per frame
                changed["prompt_embeds"] = changed["prompt_embeds"].repeat_interleave(frames, dim=0)
            return changed

        call: dict[str, Any] = {
            **conditions.first().pipeline_arguments(),  # A1111's prompt syntax, weights and chunks
            "callback_on_step_end_tensor_inputs": conditions.tensor_inputs(),
            "num_inference_steps": spec.steps,
            loaded.family.cfg_argument: spec.cfg,  # guidance_scale; Qwen-Image's true_cfg_scale
            "num_images_per_prompt": conditions.images,  # a batch's conditionings hold one row per image
            "generator": [torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            "callback_on_step_end": on_step_end,
            "output_type": "pil",
        }
        call.update(arguments)
        if isinstance(tracker.references, References) and not clip:  # the pictures' embeddings, a row per image of a prompt row
            guided = spec.cfg > 1 and pipe.unet.config.time_cond_proj_dim is None  # the pipeline's own test
            call.update(tracker.references.arguments(pipe, guided, len(seeds) // conditions.images))
        elif tracker.references is not None and not clip:  # FLUX.1: its IP-Adapter's embeddings, or Redux's prompt embeddings
            tracker.references.update_call(pipe, call)
        if "image" in call and "width" not in call and loaded.family.img2img_takes_size:
            # A picture's pass draws at the picture's size. SD's img2img pipelines do that by
            # themselves; FLUX-style ones would draw at their default size (1024²) unless told.
            call["width"], call["height"] = _pass_size(spec, arguments)
        # diffusers 0.42.1's SD 3.5 inpaint pipeline decodes without the VAE's shift (#13611): take
        # its latents and decode them as its txt2img pipeline does.
        decode_here = kind == "inpaint" and "inpaint_decode_without_shift" in loaded.family.quirks
        if decode_here:
            call["output_type"] = "latent"
        if clip:  # AnimateDiff: one video per prompt, its frames (not images) out
            call["num_videos_per_prompt"] = call.pop("num_images_per_prompt")
            call["generator"] = call["generator"][0]  # one video; FreeNoise's shuffle takes one generator
            windows = context_windows(pipe, frames, spec.clip.context, spec.clip.stride, call)  # type: ignore[union-attr]
        try:
            with (
                self.job_components(loaded, pipe, spec),
                regions.applied(pipe, conditions),
                tracker.controls.applied() if tracker.controls is not None else contextlib.nullcontext(),
                windows if clip else contextlib.nullcontext(),
                # the job's cache accelerator, fresh for this pass (pictures and video models' clips; AnimateDiff's draw uncached)
                caches.applied(
                    pipe,
                    loaded.family,
                    spec.cache if spec.kind == "video" or not clip else None,
                    spec.steps,
                    controlled=tracker.controls is not None,
                ),
                torch.inference_mode(),
            ):
                if loaded.family.negative_as_embeds:
                    _negative_as_embeds(pipe, call)
                output = pipe(**call)
                images = output.frames[0] if clip else output.images
                if decode_here:
                    images = _decode(pipe, images)
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            width, height = call.get("width") or spec.width, call.get("height") or spec.height
            what = f"a clip of {frames} frames" if clip else f"{len(seeds)} image(s)"
            raise EngineUserError(
                f"the GPU ran out of memory drawing {what} of {width}x{height}. "
                + ("Try fewer --frames or a smaller size." if clip else "Try a smaller size or fewer images (--n).")
            ) from None
        tracker.end_pass(pipe.num_timesteps)
        return list(images)

    def references(self, loaded: LoadedModel, spec: GenerationSpec, tracker: Tracker) -> References | flux_references.FluxReferences | None:
        """The job's image references (`--sref`, `--oref`): its IP-Adapter (on FLUX.1 also Redux),
        loaded once and kept in the ControlNets' LRU, and its pictures, read once per job (the
        tracker keeps them)."""
        if not spec.references:
            return None
        if tracker.references is None:
            check_spec(spec)
            if loaded.family.denoiser != "unet" and loaded.family.id != "flux":
                label = loaded.family.label
                raise EngineUserError(f"image references work on SD 1.x/2.x, SDXL and FLUX.1, not {label}; draw it without --sref/--oref.")
            name = spec.references[0].adapter
            if loaded.family.id == "flux":
                tracker.references = self._flux_references(name, spec)
                return tracker.references
            entry = adapter_entry(name, self.ip_adapters, self.models.models_dir)
            device, dtype = self.models.device, self.models.dtype
            adapter = self.controlnets.keep(f"IP-Adapter {name}", lambda: load_ip_adapter(name, entry, device, dtype), lambda a: a.nbytes())
            pictures = [[self.blob_image(key, "RGB") for key in ref.images] for ref in spec.references]
            tracker.references = References(adapter, spec.references, pictures)
        return tracker.references

    def _flux_references(self, name: str, spec: GenerationSpec) -> flux_references.FluxReferences:
        """A FLUX.1 job's references: its IP-Adapter or Redux (`name`), kept as the UNet's are."""
        entry = flux_references.adapter_entry(name, self.ip_adapters, self.models.models_dir)
        flux_references.check_entry(name, entry, spec.references)
        device, dtype = self.models.device, self.models.dtype
        model = self.controlnets.keep(
            f"FLUX.1 {entry.kind} {name}", lambda: flux_references.load(name, entry, device, dtype), lambda m: m.nbytes()
        )
        pictures = [[self.blob_image(key, "RGB") for key in ref.images] for ref in spec.references]
        return flux_references.references(model, spec.references, pictures)

    @contextlib.contextmanager
    def job_components(self, loaded: LoadedModel, pipe: Any, spec: GenerationSpec) -> Iterator[None]:
        """The job's own VAE and padding, on the shared pipeline for this job only, restored after
        it (the engine thread runs one job at a time, so no other job sees them)."""
        own_vae = pipe.vae
        if spec.vae:
            pipe.vae = loaded.vae(self.tools.vae_source(spec.vae), self.models.device, self.models.dtype)
        try:
            with circular_padding([getattr(pipe, loaded.family.denoiser), pipe.vae], enabled=spec.tile):
                yield
        finally:
            pipe.vae = own_vae

    def instruct_model(self, name: str) -> LoadedModel:
        """The Instruct Pix2Pix model `name` (the configured one, or the built-in tiny one), loaded once."""
        source = "tiny" if name == TINY_PIX2PIX else self.instruct_source
        if source is None:
            raise EngineUserError("no instruct model is configured any more (SDBOT_INSTRUCT_MODEL), so /edit can't run.")
        if self._instruct is None or self._instruct.entry.source != source:
            pipe = load_instruct_pipeline(source, self.models.models_dir, self.models.device, self.models.dtype)
            self._instruct = LoadedModel(name, ModelEntry(source=source, name=name), pipe, dict(pipe.scheduler.config))
        return self._instruct

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

    def size_multiple(self, spec: GenerationSpec) -> int:
        """What the job's model needs its sides to be multiples of (8 for UNets, 16 for FLUX-style DiTs)."""
        entry = self.models.registry.get(spec.model)
        return families.family(entry.family).size_multiple if entry is not None else 8


def _timed(report: ProgressFn, limit: float) -> ProgressFn:
    """`report`, refusing to go on once `limit` seconds have passed since it was made: a clip that
    runs longer than its estimate said stops at a step, with a reply saying why."""
    started = time.monotonic()

    def timed(*args: Any) -> None:
        if time.monotonic() - started > limit:
            raise EngineUserError(
                f"this clip ran past the limit of {limit:,g} GPU-seconds a clip here and was stopped. "
                "Ask for fewer frames or steps, or a smaller size."
            )
        report(*args)

    return timed


def _joined(text: str, words: str) -> str:
    """`text` with `words` after it (a comma between), or `text` as it is when there are none."""
    if not words:
        return text
    return f"{text.rstrip().rstrip(',')}, {words}" if text.strip() else words


def _negative_as_embeds(pipe: Any, call: dict[str, Any]) -> None:
    """For a pipeline that takes negative prompts only as embeddings (FLUX.2 Klein): encode them
    with its own encode_prompt (one row per prompt; it repeats them per image as it does its own).
    Empty ones are left to the pipeline, which encodes "" itself."""
    texts = call.pop("negative_prompt", None)
    if texts and any(texts):
        call["negative_prompt_embeds"], _ = pipe.encode_prompt(prompt=list(texts), device=pipe._execution_device)


def _negatives(family: Family) -> str | None:
    """What a plain-text family's pipeline gets for an empty negative prompt: "" (or the family's
    blank one, Qwen-Image's " "), or None for a family without negative prompts."""
    if not family.supports("negative"):
        return None
    return family.blank_negative or ""


def _decode(pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
    """Latents to pictures with the VAE's scaling and shift, as SD 3.5's txt2img pipeline decodes."""
    config = pipe.vae.config
    latents = latents / config.scaling_factor + (config.shift_factor or 0.0)
    decoded = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")


def _pass_size(spec: GenerationSpec, arguments: dict[str, Any]) -> tuple[int, int]:
    """The size a pass draws at: its width and height, else its input picture's, else the job's."""
    if "width" in arguments and "height" in arguments:
        return int(arguments["width"]), int(arguments["height"])
    image = arguments.get("image")
    if isinstance(image, Image.Image):
        return image.size
    return spec.width, spec.height
