#!/usr/bin/env python3
"""GPU speed of the engine against bare diffusers: SD with each speed option on and off, FLUX.1-dev
in each weight storage (bf16, fp8, GGUF Q8_0), and the DiT families SD 3.5 (Large, Medium), Qwen-Image,
Z-Image Turbo and FLUX.2 Klein 4B in bf16 (bench/gpu_dits.py).

Models: SD 1.5, SDXL and FLUX.1-dev at their real sizes with RANDOM weights (nothing can be
downloaded on a lent GPU machine, and speed does not depend on the weights' values), built from
their real configs here (FLUX: bench/gpu_flux.py, ~1.5-2 min on an H100 with its GGUF file),
saved with `save_pretrained` (SD fp16, FLUX bf16) into a temp folder, and loaded through the
project's loader (`ModelCache`, with `SpeedOptions` or the entry's `quantization`), so the engine
path is what a worker runs. Bare diffusers loads the same files with its pipeline classes and sets
each option the way diffusers' docs do (`set_attn_processor`, `.to(memory_format=...)`,
`torch.compile(pipe.unet)`, `enable_layerwise_casting`, `from_single_file(..., GGUFQuantizationConfig)`).

An SD set is one (architecture, dtype, option): a fresh engine and a fresh bare pipeline, one
untimed warm-up job each (for torch_compile, the compile: its time is printed apart), then timed
txt2img jobs alternating engine / bare (drift in the machine's speed hits both alike). A FLUX set is
one storage (`quantization` none, fp8, gguf-q8_0) at 1024², bf16, guidance 3.5: the engine path
loads, warms up, runs its timed jobs and is freed, then the bare path does the same, since two
FLUX pipelines (2 x 31 GiB) would crowd an 80 GB card and each path's own peak is what fp8 and GGUF
are for. it/s: denoising steps per second, from the steps' callbacks with `torch.cuda.synchronize()`
(prompt encoding, VAE decode and the engine's PNG are outside it); s/job: the whole job, synced.
The SDXL VAE is run in the working dtype (force_upcast off, as with the fp16-fix VAE people use).

    python bench/gpu.py                  # SD (~8 min), then FLUX (~8 min): more than one 10-minute run
    python bench/gpu.py --families sd    # SD 1.5 at 512², SDXL at 1024²; fp16 and bf16; ~8 min on an H100
    python bench/gpu.py --families flux  # FLUX.1-dev at 1024², 28 steps, 3 storages: ~8 min (estimated)
    python bench/gpu.py --families sd3,zimage,flux2  # SD 3.5 Large + Medium, Z-Image, Klein 4B at 1024², bf16: ~7.5 min (estimated)
    python bench/gpu.py --families qwen  # Qwen-Image (20 B + 8 B encoder, 57 GB) at 1024², 20 steps: ~5 min (estimated)
    python bench/gpu.py --quick          # SD fp16, 10 steps (~3 min); FLUX 10 steps (~6 min: build and loads)
    python bench/gpu.py --cpu-smoke      # the tiny models on CPU, 64 px: checks this script, measures nothing
    python bench/gpu.py --sweep          # EVERY family, engine and bare, each speed option and cache: one table, <8 min
    python bench/gpu.py --sweep --smoke  # the same sets on the tiny models on CPU (bench/gpu_sweep.py)

A DiT set (sd3, sd3-medium, qwen, zimage, flux2) is one model at 1024², bf16, its family's own
guidance (SD 3.5 and Qwen-Image with CFG, the distilled Z-Image Turbo and FLUX.2 Klein without), engine
then bare as for FLUX; a DiT whose estimate would not fit its family's budget (or the disk) is built
with fewer transformer layers, which the output says.

Without CUDA (and without --cpu-smoke) it says so and exits 0. A time budget per family
(--budget-s) skips the family's sets left when it is spent (from estimates of each set and of the
build), and lists them. Prints a table per family, with the ratios engine/bare and option on/off;
--json writes the rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The repo root replaces this script's folder on the path: a bench/ file named like a stdlib
# module (bench/queue.py) would otherwise shadow it for every import below.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import torch  # noqa: E402
import torch._dynamo  # noqa: E402

from bench import gpu_dits, gpu_flux  # noqa: E402
from bench.gpu_flux import gib, ratio  # noqa: E402
from config import ModelEntry, ModelRegistry  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.jobs import run_job  # noqa: E402
from generation.models import speed  # noqa: E402
from generation.models.loader import ModelCache  # noqa: E402
from generation.models.speed import SpeedOptions  # noqa: E402
from generation.spec import GenerationSpec  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402

PROMPT = "a red fox in the snow, photograph, detailed fur"
OPTIONS: dict[str, SpeedOptions] = {
    "sdpa": SpeedOptions(),  # the default: every ratio "vs sdpa" is against this set
    "classic": SpeedOptions(attention="classic"),
    "channels_last": SpeedOptions(channels_last=True),
    "torch_compile": SpeedOptions(torch_compile=True),
}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
COMPILE_GUESS_S = {"sd15": 90.0, "sdxl": 200.0, "tiny": 30.0}  # engine + bare compile, for the budget
FAMILIES = {
    "sd": ("sd15", "sdxl", "tiny"),
    "flux": ("flux", "tiny-flux"),
    **gpu_dits.FAMILY_ARCHES,
}  # --families -> architectures (tiny: --cpu-smoke)
FLUX_ARCHES = FAMILIES["flux"]
# Per family and mode (full, --quick, --cpu-smoke): denoising steps, timed jobs per path (FLUX: 2 of
# 28 steps, so that its three sets fit one 10-minute run), and the time budget in seconds.
# DiTs: SD 3.5 28 (Large's default), Qwen-Image 20 of its 50 (two transformer passes a step, 20 B),
# Z-Image Turbo 8 and FLUX.2 Klein 4 (the distilled models' own).
STEPS = {"sd": (20, 10, 3), "flux": (28, 10, 2), "sd3": (28, 10, 2), "qwen": (20, 10, 2), "zimage": (8, 8, 2), "flux2": (4, 4, 2)}
RUNS = {"sd": (3, 2, 1), "flux": (2, 2, 1), "sd3": (2, 2, 1), "qwen": (2, 1, 1), "zimage": (3, 2, 1), "flux2": (3, 2, 1)}
BUDGET_S = {
    "sd": (450.0, 200.0, 1e9),
    "flux": (540.0, 420.0, 1e9),
    "sd3": (540.0, 300.0, 1e9),
    "qwen": (540.0, 400.0, 1e9),
    "zimage": (300.0, 200.0, 1e9),
    "flux2": (300.0, 200.0, 1e9),
}


def family_of(arch: str) -> str:
    return next(family for family, arches in FAMILIES.items() if arch in arches)


# --- the real architectures' configs (diffusers' / transformers' names) ----------------------------

SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}
VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "norm_num_groups": 32,
    "force_upcast": False,
}
_TOKENS = {"vocab_size": 49408, "max_position_embeddings": 77, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407}
CLIP_L: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    **_TOKENS,
}
CLIP_BIG_G: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
    **_TOKENS,
}
SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}


def build_pipeline(arch: str, device: torch.device | str) -> Any:
    """SD 1.5 or SDXL, real sizes, random weights (seeded), fp32 on `device`."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from generation.models.tiny import clip_vocab

    torch.manual_seed(0)
    xl = arch == "sdxl"
    with torch.device(device):
        unet = UNet2DConditionModel(**(SDXL_UNET if xl else SD15_UNET))
        vae = AutoencoderKL(**VAE, sample_size=1024 if xl else 512, scaling_factor=0.13025 if xl else 0.18215)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G)) if xl else None
    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    scheduler = EulerDiscreteScheduler.from_config(SCHEDULER)
    if xl:
        tokenizer_2 = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token="!")
        return StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
        )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_model(arch: str, folder: Path, device: torch.device) -> Path:
    """Build on the GPU (random init of 2.6 B parameters is slow on a CPU), save in fp16."""
    target = folder / arch
    start = time.perf_counter()
    pipe = build_pipeline(arch, device)
    pipe.to(dtype=torch.float16).save_pretrained(target, safe_serialization=True)
    del pipe
    _free()
    print(f"built and saved random-weight {arch} in {time.perf_counter() - start:.0f} s", flush=True)
    return target


def parameter_counts() -> dict[str, float]:
    """Millions of parameters of each real-size component, built on the meta device (no memory,
    no time): a check that the configs are the real architectures'."""
    pipes = {arch: build_pipeline(arch, "meta") for arch in ("sd15", "sdxl")}
    count = lambda module: sum(p.numel() for p in module.parameters()) / 1e6  # noqa: E731
    return {
        "sd15 unet": count(pipes["sd15"].unet),
        "sdxl unet": count(pipes["sdxl"].unet),
        "vae": count(pipes["sd15"].vae),
        "clip-l": count(pipes["sd15"].text_encoder),
        "clip-bigG": count(pipes["sdxl"].text_encoder_2),
        **gpu_flux.flux_parameter_counts(),
        **gpu_dits.parameter_counts(),
    }


# --- timing ------------------------------------------------------------------------------------------


class StepClock:
    """Times of the denoising steps, each after a device sync (the step's kernels are done)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.marks: list[float] = []

    def mark(self) -> None:
        _sync(self.device)
        self.marks.append(time.perf_counter())

    def its(self) -> float:
        if len(self.marks) < 2:
            return float("nan")
        return (len(self.marks) - 1) / (self.marks[-1] - self.marks[0])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Plan:
    arch: str
    dtype: str
    option: str
    size: int


@dataclass
class Row:
    arch: str
    dtype: str
    option: str
    engine_its: float = float("nan")
    bare_its: float = float("nan")
    engine_s: float = float("nan")
    bare_s: float = float("nan")
    warmup_engine_s: float = float("nan")
    warmup_bare_s: float = float("nan")
    peak_gib: float = float("nan")
    # FLUX sets (engine and bare run apart): each path's own peak, and its load time
    peak_engine_gib: float = float("nan")
    peak_bare_gib: float = float("nan")
    load_engine_s: float = float("nan")
    load_bare_s: float = float("nan")
    error: str = ""
    runs: list[dict[str, float]] = field(default_factory=list)


class EnginePath:
    """The project's loader and engine: ModelCache(speed=...) -> Engine -> run_job (PNG and all)."""

    def __init__(
        self,
        entry: ModelEntry,
        models_dir: Path,
        blobs: LocalBlobStore,
        device: torch.device,
        dtype: torch.dtype,
        options: SpeedOptions,
        guidance: float = 0.0,
    ):
        self.engine = Engine(ModelCache(ModelRegistry([entry]), models_dir, device, dtype, speed=options), blobs)
        self.engine.preload(entry.display_name)
        self.model, self.device = entry.display_name, device
        family = self.engine.models.get(self.model).family.id
        flux = family == "flux"
        self.style = {"sampler": "Euler", "cfg": gpu_flux.GUIDANCE if flux else 7.0, "family": "flux" if flux else None}
        if family in gpu_dits.FAMILY_ARCHES:  # the DiTs: the family's own guidance (gpu_dits.DITS)
            self.style = {"sampler": "Euler", "cfg": guidance, "family": family}

    def job(self, size: int, steps: int, seed: int) -> tuple[float, float]:
        spec = GenerationSpec(
            kind="txt2img", prompt=PROMPT, model=self.model, width=size, height=size, steps=steps, seed=seed, **self.style
        )
        clock = StepClock(self.device)
        _sync(self.device)
        start = time.perf_counter()
        run_job(self.engine, spec, on_progress=lambda step, total: clock.mark())
        _sync(self.device)
        return clock.its(), time.perf_counter() - start


def load_bare_sd(folder: Path, arch: str, device: torch.device, dtype: torch.dtype, option: str) -> Any:
    """Bare diffusers on the same folder, each option set as diffusers' docs show it."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.models.attention_processor import AttnProcessor

    if arch == "sdxl":
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(
            folder, dtype=dtype, use_safetensors=True, safety_checker=None, requires_safety_checker=False
        )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if option == "classic":
        pipe.unet.set_attn_processor(AttnProcessor())
        pipe.vae.set_attn_processor(AttnProcessor())
    elif option == "channels_last":
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    elif option == "torch_compile":
        pipe.unet = torch.compile(pipe.unet, **speed.COMPILE_KWARGS)
        pipe.vae.decoder = torch.compile(pipe.vae.decoder, **speed.COMPILE_KWARGS)
    return pipe


class BarePath:
    """A bare diffusers pipeline (load_bare_sd, gpu_flux.load_bare_flux), called as its docs show,
    with a fresh scheduler of the model's own config per job (as the engine makes one per job)."""

    def __init__(self, pipe: Any, device: torch.device, guidance: float, arguments: dict[str, Any] | None = None):
        self.pipe, self.device, self.guidance = pipe, device, guidance
        self.arguments = arguments  # the DiTs: prompt= by keyword, their CFG argument and negative (gpu_dits.bare_arguments)
        self.config = dict(pipe.scheduler.config)
        self.scheduler_class = type(pipe.scheduler)
        if not self.scheduler_class.__name__.startswith("FlowMatch"):
            from diffusers import EulerDiscreteScheduler

            self.scheduler_class = EulerDiscreteScheduler

    def job(self, size: int, steps: int, seed: int) -> tuple[float, float]:
        clock = StepClock(self.device)

        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            clock.mark()
            return tensors

        _sync(self.device)
        start = time.perf_counter()
        self.pipe.scheduler = self.scheduler_class.from_config(self.config)
        first = {"guidance_scale": self.guidance} if self.arguments is None else {"prompt": PROMPT, **self.arguments}
        self.pipe(
            *(() if self.arguments is not None else (PROMPT,)),
            num_inference_steps=steps,
            **first,
            width=size,
            height=size,
            generator=torch.Generator("cpu").manual_seed(seed),
            callback_on_step_end=on_step,
        )
        _sync(self.device)
        return clock.its(), time.perf_counter() - start


def measure(plan: Plan, folder: Path, work: Path, device: torch.device, args: argparse.Namespace) -> Row:
    """An SD set: engine and bare loaded together, timed jobs alternating."""
    row = Row(plan.arch, plan.dtype, plan.option)
    dtype = DTYPES[plan.dtype]
    steps = steps_for(plan, args)
    engine = bare = None
    try:
        torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        entry = ModelEntry(source=str(folder), name="bench")
        engine = EnginePath(entry, work / "models", LocalBlobStore(work / "blobs"), device, dtype, OPTIONS[plan.option])
        bare = BarePath(load_bare_sd(folder, plan.arch, device, dtype, plan.option), device, 7.0)
        _, row.warmup_engine_s = engine.job(plan.size, steps, 1)
        _, row.warmup_bare_s = bare.job(plan.size, steps, 1)
        for i in range(runs_for(plan, args)):
            e_its, e_s = engine.job(plan.size, steps, 100 + i)
            b_its, b_s = bare.job(plan.size, steps, 100 + i)
            row.runs.append({"engine_its": e_its, "bare_its": b_its, "engine_s": e_s, "bare_s": b_s})
        _medians(row)
        if device.type == "cuda":
            row.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    except Exception as error:  # noqa: BLE001 - one broken set must not lose the others
        row.error = f"{type(error).__name__}: {error}"[:300]
        traceback.print_exc(limit=6)
    finally:
        del engine, bare
        torch._dynamo.reset()
        _free()
    return row


def measure_flux(plan: Plan, folder: Path, gguf: Path | None, work: Path, device: torch.device, args: argparse.Namespace) -> Row:
    """A FLUX set: the engine path, then the bare one, each loaded, run and freed alone (gpu_flux.measure_apart)."""
    row = Row(plan.arch, plan.dtype, plan.option)
    dtype = DTYPES[plan.dtype]
    paths = {
        "engine": lambda: EnginePath(
            gpu_flux.engine_entry(plan.option, folder, gguf), work / "models", LocalBlobStore(work / "blobs"), device, dtype, SpeedOptions()
        ),
        "bare": lambda: BarePath(gpu_flux.load_bare_flux(folder, gguf, plan.option, device, dtype), device, gpu_flux.GUIDANCE),
    }
    try:
        gpu_flux.measure_apart(row, paths, plan.size, steps_for(plan, args), runs_for(plan, args), device)
        _medians(row)
    except Exception as error:  # noqa: BLE001 - one broken set must not lose the others
        row.error = f"{type(error).__name__}: {error}"[:300]
        traceback.print_exc(limit=6)
    finally:
        _free()
    return row


def measure_dit(plan: Plan, folder: Path, work: Path, device: torch.device, args: argparse.Namespace) -> Row:
    """A DiT set (gpu_dits): the engine path, then the bare one, each loaded, run and freed alone."""
    row = Row(plan.arch, plan.dtype, plan.option)
    dtype, spec = DTYPES[plan.dtype], gpu_dits.settings(plan.arch)
    entry = ModelEntry(source=str(folder), name="bench", memory="gpu")
    paths = {
        "engine": lambda: EnginePath(entry, work / "models", LocalBlobStore(work / "blobs"), device, dtype, SpeedOptions(), spec.cfg),
        "bare": lambda: BarePath(
            gpu_dits.load_bare(plan.arch, folder, device, dtype), device, spec.cfg, gpu_dits.bare_arguments(plan.arch)
        ),
    }
    try:
        gpu_flux.measure_apart(row, paths, plan.size, steps_for(plan, args), runs_for(plan, args), device)
        _medians(row)
    except Exception as error:  # noqa: BLE001 - one broken set must not lose the others
        row.error = f"{type(error).__name__}: {error}"[:300]
        traceback.print_exc(limit=6)
    finally:
        _free()
    return row


def _medians(row: Row) -> None:
    for key in ("engine_its", "bare_its", "engine_s", "bare_s"):
        setattr(row, key, statistics.median(r[key] for r in row.runs))


# --- the run -----------------------------------------------------------------------------------------


def plans(args: argparse.Namespace) -> list[Plan]:
    """SD sets, then FLUX sets (so that each family's folders are deleted once its sets are done: the
    disk holds 64 GiB). Within a family in order of importance, so that a spent budget drops the least
    useful sets: SD: every option but compile for each dtype first, then compile (minutes of
    compiling per set), fp16 first; FLUX: bf16, fp8, then GGUF (the slowest to load and run)."""
    out: list[Plan] = []
    if args.cpu_smoke:
        out = [Plan("tiny", "fp32", option, 64) for option in OPTIONS]
    else:
        dtypes = ("fp16",) if args.quick else ("fp16", "bf16")
        sizes = (("sd15", 512), ("sdxl", 1024))
        out = [
            Plan(arch, dtype, option, size) for dtype in dtypes for arch, size in sizes for option in OPTIONS if option != "torch_compile"
        ]
        out += [
            Plan(arch, dtype, "torch_compile", size) for dtype in dtypes for arch, size in sizes if not (args.quick and arch == "sdxl")
        ]  # SDXL's compile alone takes minutes
    keep = lambda value, wanted: not wanted or value in wanted.split(",")  # noqa: E731
    out = [p for p in out if keep(p.dtype, args.dtype) and keep(p.option, args.option)]
    flux = "tiny-flux" if args.cpu_smoke else "flux"
    out += [
        Plan(flux, "bf16", storage, 64 if args.cpu_smoke else 1024) for storage in gpu_flux.QUANTIZATIONS if keep(storage, args.storage)
    ]
    out += [  # the DiTs, one set each: bf16, quantization none
        Plan(arch, "bf16", "none", 64 if args.cpu_smoke else 1024)
        for arches in gpu_dits.FAMILY_ARCHES.values()
        for arch in arches
        if arch.startswith("tiny") == bool(args.cpu_smoke)
    ]
    return [p for p in out if keep(family_of(p.arch), args.families) and keep(p.arch, args.arch)]


def mode(args: argparse.Namespace) -> int:
    """The index into STEPS and BUDGET_S: 0 full, 1 --quick, 2 --cpu-smoke."""
    return 2 if args.cpu_smoke else 1 if args.quick else 0


def steps_for(plan: Plan, args: argparse.Namespace) -> int:
    return args.steps or STEPS[family_of(plan.arch)][mode(args)]


def runs_for(plan: Plan, args: argparse.Namespace) -> int:
    return args.runs or RUNS[family_of(plan.arch)][mode(args)]


def estimate_s(plan: Plan, todo: list[Plan], built: set[str], set_time: dict[str, float], args: argparse.Namespace) -> float:
    """What the set will take, for the budget: SD: the last sdpa set's time (and the compile); FLUX:
    gpu_flux.estimate_s, which adds the build while the model is not built yet."""
    if family_of(plan.arch) == "sd":
        return set_time.get(plan.arch, 0.0) + (COMPILE_GUESS_S[plan.arch] if plan.option == "torch_compile" else 0.0)
    if family_of(plan.arch) in gpu_dits.FAMILY_ARCHES:
        if plan.arch.startswith("tiny"):
            return 0.0
        fraction = args.fractions.get(plan.arch, 1.0)
        return gpu_dits.estimate_s(plan.arch, steps_for(plan, args), runs_for(plan, args), None, plan.arch not in built, fraction)
    gguf = any(p.arch == plan.arch and p.option == "gguf-q8_0" for p in todo)
    runs = runs_for(plan, args)
    return gpu_flux.estimate_s(plan.option, steps_for(plan, args), runs, set_time.get(plan.arch), plan.arch not in built, gguf)


def prepare(arch: str, todo: list[Plan], work: Path, device: torch.device, fraction: float = 1.0) -> tuple[Path, Path | None]:
    """The model's folder (built and saved, or the tiny one), and its GGUF transformer file for FLUX."""
    gguf = any(p.arch == arch and p.option == "gguf-q8_0" for p in todo)
    if arch in gpu_dits.TINY:
        return gpu_dits.ensure_tiny(arch, work / "models"), None
    if arch in gpu_dits.DITS:
        return gpu_dits.save(arch, work / "models", device, fraction), None
    if arch == "tiny":
        from generation.models.tiny import ensure_tiny

        return ensure_tiny(work / "models"), None
    if arch == "tiny-flux":
        from generation.models.tiny_dit import ensure_tiny_flux

        folder = ensure_tiny_flux(work / "models")
        return folder, gpu_flux.smoke_gguf(folder, work) if gguf else None
    if arch == "flux":
        return gpu_flux.save_flux(work / "models", device, gguf)
    return save_model(arch, work / "models", device), None


def drop(files: tuple[Path, Path | None]) -> None:
    """Delete a model's folder and GGUF file once its sets are done: the GPU machine's disk holds
    64 GiB, and FLUX.1-dev needs 46 GB of it."""
    for path in files:
        if path is not None and path.is_dir():
            shutil.rmtree(path)
        elif path is not None:
            path.unlink(missing_ok=True)


def print_table(rows: list[Row]) -> None:
    base = {(r.arch, r.dtype): r for r in rows if r.option == "sdpa" and not r.error}
    print()
    print(
        f"{'model':5} {'dtype':5} {'option':13} {'engine it/s':>11} {'bare it/s':>9} {'eng/bare':>8} "
        f"{'eng vs sdpa':>11} {'bare vs sdpa':>12} {'eng s/job':>9} {'bare s/job':>10} {'warm-up s e/b':>13} {'peak GiB':>8}"
    )
    for r in rows:
        if r.error:
            print(f"{r.arch:5} {r.dtype:5} {r.option:13} FAILED {r.error}")
            continue
        b = base.get((r.arch, r.dtype))
        print(
            f"{r.arch:5} {r.dtype:5} {r.option:13} {r.engine_its:11.2f} {r.bare_its:9.2f} {ratio(r.engine_its, r.bare_its):>8} "
            f"{ratio(r.engine_its, b.engine_its) if b else '-':>11} {ratio(r.bare_its, b.bare_its) if b else '-':>12} "
            f"{r.engine_s:9.3f} {r.bare_s:10.3f} {r.warmup_engine_s:6.1f}/{r.warmup_bare_s:<6.1f} {gib(r.peak_gib):>8}"
        )
    print(
        "\nit/s: denoising steps per second (median); eng/bare > 1: the engine is faster; "
        "vs sdpa: option on / default (for classic: < 1 means sdpa is faster)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="SD: fp16 only, 10 steps, 2 runs, no SDXL compile; FLUX: 10 steps")
    parser.add_argument("--cpu-smoke", action="store_true", help="the tiny models on CPU: checks that the script runs")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps per job (default SD 20, FLUX 28, SD 3.5 28, Qwen-Image 20, Z-Image 8, "
        "FLUX.2 Klein 4; --quick 10 each but Z-Image 8, Klein 4; --cpu-smoke 3 SD, 2 the others)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="timed jobs per path and set (default SD 3, FLUX 2, SD 3.5 2, Qwen-Image 2, Z-Image 3, FLUX.2 Klein 3; --quick 2, Qwen-Image 1)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="per family: skip its sets left after this many seconds of its own (default SD 450, FLUX 540, SD 3.5 and Qwen-Image "
        "540, Z-Image and FLUX.2 Klein 300; --quick 200, 420, 300, 400, 200, 200)",
    )
    parser.add_argument(
        "--families", help=f"only these (comma-separated): {', '.join(FAMILIES)} (default all; more than one 10-minute run)"
    )
    parser.add_argument("--arch", help="only these: sd15, sdxl, flux, sd3, sd3-medium, qwen, zimage, flux2")
    parser.add_argument(
        "--layer-fraction",
        type=float,
        default=None,
        help="DiT sets: build each transformer with this share of its blocks (default: all that fit the family's budget)",
    )
    parser.add_argument("--dtype", help="SD sets only these: fp16, bf16 (FLUX sets are bf16)")
    parser.add_argument("--option", help=f"SD sets only these: {', '.join(OPTIONS)} (sdpa is the base of the ratios)")
    parser.add_argument(
        "--storage", help=f"FLUX sets only these: {', '.join(gpu_flux.QUANTIZATIONS)} (none, bf16 weights, is the base of the ratios)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="every family's real architecture (random weights, built on the GPU in bf16), engine and bare, each speed option "
        "and cache on and off, one table, under 8 minutes on an H100 (bench/gpu_sweep.py; --arch, --steps, --runs, --budget-s apply)",
    )
    parser.add_argument("--smoke", action="store_true", help="with --sweep: the tiny models on CPU (checks the script)")
    args = parser.parse_args()
    if args.sweep or args.smoke:
        from bench import gpu_sweep

        args.smoke = args.smoke or args.cpu_smoke
        return gpu_sweep.run(args, build_pipeline)
    args.fractions = {}  # DiT arch -> the share of its transformer's blocks built (gpu_dits.fit_fraction)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    budget = {family: args.budget_s or BUDGET_S[family][mode(args)] for family in FAMILIES}
    if args.cpu_smoke:
        device = torch.device("cpu")
        # inductor's C++ code generation takes minutes per shape on a small CPU: the smoke test
        # runs dynamo's tracing and guards (the routing) with the eager backend instead.
        speed.COMPILE_KWARGS["backend"] = "eager"
        header = f"CPU smoke test (tiny models, 64 px; torch_compile with dynamo's eager backend); torch {torch.__version__}"
    else:
        if not torch.cuda.is_available():
            print("bench/gpu.py: no CUDA device here, nothing to measure (use --cpu-smoke to check the script). Exiting.")
            return 0
        device = torch.device("cuda")
        header = f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}"
    import diffusers

    todo = plans(args)
    steps = ", ".join(f"{family} {args.steps or STEPS[family][mode(args)]}" for family in FAMILIES)
    runs = ", ".join(f"{family} {args.runs or RUNS[family][mode(args)]}" for family in FAMILIES)
    print(f"{header}; diffusers {diffusers.__version__}; steps: {steps}; timed runs per path and set: {runs}")
    started = time.perf_counter()
    rows: list[Row] = []
    skipped: list[Plan] = []
    set_time: dict[str, float] = {}
    family_start: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as tmp:
        work = Path(tmp)
        folders: dict[str, tuple[Path, Path | None]] = {}
        broken: dict[str, str] = {}  # architectures whose build failed
        if args.cpu_smoke:
            counts = parameter_counts()
            print("real-size configs (M parameters): " + ", ".join(f"{k} {v:.1f}" for k, v in counts.items()))
        for index, plan in enumerate(todo):
            family = family_of(plan.arch)
            family_start.setdefault(family, time.perf_counter())
            if plan.arch in gpu_dits.DITS and plan.arch not in args.fractions:  # fewer layers if the real size would not fit
                left = budget[family] - (time.perf_counter() - family_start[family])
                fit = gpu_dits.fit_fraction(plan.arch, left, steps_for(plan, args), runs_for(plan, args))
                args.fractions[plan.arch] = args.layer_fraction or fit
                if args.fractions[plan.arch] < 1.0:
                    why = "--layer-fraction" if args.layer_fraction else f"the real size would not fit the {budget[family]:.0f} s budget"
                    layers = gpu_dits.layers_text(plan.arch, args.fractions[plan.arch])
                    print(f"{plan.arch}: {why}: built with {layers} transformer layers (not the real model's speed)", flush=True)
            guess = estimate_s(plan, todo, set(folders), set_time, args)
            if time.perf_counter() - family_start[family] + guess > budget[family]:
                skipped.append(plan)
                continue
            for arch in [a for a in folders if family_of(a) != family]:  # a family's sets are all done before the next's
                drop(folders.pop(arch))
            if plan.arch not in folders and plan.arch not in broken:
                try:
                    folders[plan.arch] = prepare(plan.arch, todo, work, device, args.fractions.get(plan.arch, 1.0))
                except Exception as error:  # noqa: BLE001 - the other family's sets still run
                    broken[plan.arch] = f"building {plan.arch} failed: {type(error).__name__}: {error}"[:300]
                    traceback.print_exc(limit=6)
                _free()
            t0 = time.perf_counter()
            if plan.arch in broken:
                row = Row(plan.arch, plan.dtype, plan.option, error=broken[plan.arch])
            elif family in gpu_dits.FAMILY_ARCHES:
                row = measure_dit(plan, folders[plan.arch][0], work, device, args)
            elif family == "flux":
                row = measure_flux(plan, *folders[plan.arch], work, device, args)
            else:
                row = measure(plan, folders[plan.arch][0], work, device, args)
            elapsed = time.perf_counter() - t0
            if plan.option in ("sdpa", "none", "fp8") and not row.error:  # the base of the next estimates
                set_time[plan.arch] = elapsed
            rows.append(row)
            status = f"FAILED ({row.error})" if row.error else f"engine {row.engine_its:.2f} it/s, bare {row.bare_its:.2f} it/s"
            print(
                f"[{time.perf_counter() - started:5.0f} s] {plan.arch} {plan.dtype} {plan.option}: {status} (set took {elapsed:.0f} s)",
                flush=True,
            )
            if plan.arch in folders and not any(p.arch == plan.arch for p in todo[index + 1 :]):
                drop(folders.pop(plan.arch))
    sd_rows = [r for r in rows if family_of(r.arch) == "sd"]
    flux_rows = [r for r in rows if family_of(r.arch) == "flux"]
    dit_rows = [r for r in rows if family_of(r.arch) in gpu_dits.FAMILY_ARCHES]
    if sd_rows:
        print_table(sd_rows)
    if flux_rows:
        gpu_flux.print_table(flux_rows)
    if dit_rows:
        gpu_dits.print_table(dit_rows, {r.arch: steps_for(Plan(r.arch, r.dtype, r.option, 0), args) for r in dit_rows})
    if skipped:
        print("skipped for the time budget: " + ", ".join(f"{p.arch} {p.dtype} {p.option}" for p in skipped))
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
