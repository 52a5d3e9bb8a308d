#!/usr/bin/env python3
"""GPU speed of the engine against bare diffusers, with each speed option on and off.

Models: SD 1.5 and SDXL at their real sizes with RANDOM weights (nothing can be downloaded on a
lent GPU machine, and speed does not depend on the weights' values): UNet, VAE and CLIP text
encoders built from their real configs here, saved with `save_pretrained` (fp16) into a temp
folder, and loaded through the project's loader (`ModelCache`, with `SpeedOptions`), so the
engine path is what a worker runs. Bare diffusers loads the same folder with
StableDiffusionPipeline / StableDiffusionXLPipeline and sets each option the way diffusers' docs
do (`set_attn_processor`, `.to(memory_format=...)`, `pipe.unet = torch.compile(pipe.unet)`).

Each set is one (architecture, dtype, option): a fresh engine and a fresh bare pipeline, one
untimed warm-up job each (for torch_compile, the compile: its time is printed apart), then timed
txt2img jobs alternating engine / bare (drift in the machine's speed hits both alike).
it/s: denoising steps per second, from the steps' callbacks with `torch.cuda.synchronize()`
(prompt encoding, VAE decode and the engine's PNG are outside it); s/job: the whole job, synced.
The SDXL VAE is run in the working dtype (force_upcast off, as with the fp16-fix VAE people use).

    python bench/gpu.py              # SD 1.5 at 512², SDXL at 1024²; fp16 and bf16; ~8 min on an H100
    python bench/gpu.py --quick      # fp16 only, 10 steps, compile on SD 1.5 only: ~3 min
    python bench/gpu.py --cpu-smoke  # the tiny model on CPU, 64 px: checks this script, measures nothing

Without CUDA (and without --cpu-smoke) it says so and exits 0. A time budget (--budget-s) skips
the sets left when it is spent, and lists them. Prints a table and the ratios engine/bare and
option on/off; --json writes the rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
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
    error: str = ""
    runs: list[dict[str, float]] = field(default_factory=list)


class EnginePath:
    """The project's loader and engine: ModelCache(speed=...) -> Engine -> run_job (PNG and all)."""

    def __init__(
        self, folder: Path, models_dir: Path, blobs: LocalBlobStore, device: torch.device, dtype: torch.dtype, options: SpeedOptions
    ):
        registry = ModelRegistry([ModelEntry(source=str(folder), name="bench")])
        self.engine = Engine(ModelCache(registry, models_dir, device, dtype, speed=options), blobs)
        self.engine.preload("bench")
        self.device = device

    def job(self, size: int, steps: int, seed: int) -> tuple[float, float]:
        spec = GenerationSpec(
            kind="txt2img", prompt=PROMPT, model="bench", width=size, height=size, steps=steps, cfg=7.0, sampler="Euler", seed=seed, n=1
        )
        clock = StepClock(self.device)
        _sync(self.device)
        start = time.perf_counter()
        run_job(self.engine, spec, on_progress=lambda step, total: clock.mark())
        _sync(self.device)
        return clock.its(), time.perf_counter() - start


class BarePath:
    """Bare diffusers on the same folder, each option set as diffusers' docs show it."""

    def __init__(self, folder: Path, arch: str, device: torch.device, dtype: torch.dtype, option: str):
        from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
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
        self.pipe, self.device = pipe, device
        self.config = dict(pipe.scheduler.config)
        self.scheduler_class = EulerDiscreteScheduler

    def job(self, size: int, steps: int, seed: int) -> tuple[float, float]:
        clock = StepClock(self.device)

        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            clock.mark()
            return tensors

        _sync(self.device)
        start = time.perf_counter()
        self.pipe.scheduler = self.scheduler_class.from_config(self.config)
        self.pipe(
            PROMPT,
            num_inference_steps=steps,
            guidance_scale=7.0,
            width=size,
            height=size,
            generator=torch.Generator("cpu").manual_seed(seed),
            callback_on_step_end=on_step,
        )
        _sync(self.device)
        return clock.its(), time.perf_counter() - start


def measure(plan: Plan, folder: Path, work: Path, device: torch.device, args: argparse.Namespace) -> Row:
    row = Row(plan.arch, plan.dtype, plan.option)
    dtype = DTYPES[plan.dtype]
    engine = bare = None
    try:
        torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        engine = EnginePath(folder, work / "models", LocalBlobStore(work / "blobs"), device, dtype, OPTIONS[plan.option])
        bare = BarePath(folder, plan.arch, device, dtype, plan.option)
        _, row.warmup_engine_s = engine.job(plan.size, args.steps, 1)
        _, row.warmup_bare_s = bare.job(plan.size, args.steps, 1)
        for i in range(args.runs):
            e_its, e_s = engine.job(plan.size, args.steps, 100 + i)
            b_its, b_s = bare.job(plan.size, args.steps, 100 + i)
            row.runs.append({"engine_its": e_its, "bare_its": b_its, "engine_s": e_s, "bare_s": b_s})
        row.engine_its = statistics.median(r["engine_its"] for r in row.runs)
        row.bare_its = statistics.median(r["bare_its"] for r in row.runs)
        row.engine_s = statistics.median(r["engine_s"] for r in row.runs)
        row.bare_s = statistics.median(r["bare_s"] for r in row.runs)
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


# --- the run -----------------------------------------------------------------------------------------


def plans(args: argparse.Namespace) -> list[Plan]:
    """In order of importance, so that a spent budget drops the least useful sets: every option
    but compile for each dtype first, then compile (minutes of compiling per set), fp16 first."""
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
    return [p for p in out if keep(p.arch, args.arch) and keep(p.dtype, args.dtype) and keep(p.option, args.option)]


def ratio(a: float, b: float) -> str:
    return f"{a / b:6.3f}" if a == a and b == b and b else "     -"  # NaN-safe


def _gib(value: float) -> str:
    return f"{value:.1f}" if value == value else "-"


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
            f"{r.engine_s:9.3f} {r.bare_s:10.3f} {r.warmup_engine_s:6.1f}/{r.warmup_bare_s:<6.1f} {_gib(r.peak_gib):>8}"
        )
    print(
        "\nit/s: denoising steps per second (median); eng/bare > 1: the engine is faster; "
        "vs sdpa: option on / default (for classic: < 1 means sdpa is faster)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fp16 only, 10 steps, 2 runs, no SDXL compile")
    parser.add_argument("--cpu-smoke", action="store_true", help="the tiny model on CPU: checks that the script runs")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per job (default 20; --quick 10)")
    parser.add_argument("--runs", type=int, default=None, help="timed jobs per path and set (default 3; --quick 2)")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="skip the sets left after this many seconds (default 450; --quick 200)"
    )
    parser.add_argument("--arch", help="only these (comma-separated): sd15, sdxl")
    parser.add_argument("--dtype", help="only these: fp16, bf16")
    parser.add_argument("--option", help=f"only these: {', '.join(OPTIONS)} (sdpa is the base of the ratios)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.cpu_smoke:
        args.steps, args.runs, args.budget_s = args.steps or 3, args.runs or 1, args.budget_s or 1e9
        device = torch.device("cpu")
        # inductor's C++ code generation takes minutes per shape on a small CPU: the smoke test
        # runs dynamo's tracing and guards (the routing) with the eager backend instead.
        speed.COMPILE_KWARGS["backend"] = "eager"
        header = f"CPU smoke test (tiny model, 64 px; torch_compile with dynamo's eager backend); torch {torch.__version__}"
    else:
        if not torch.cuda.is_available():
            print("bench/gpu.py: no CUDA device here, nothing to measure (use --cpu-smoke to check the script). Exiting.")
            return 0
        args.steps = args.steps or (10 if args.quick else 20)
        args.runs = args.runs or (2 if args.quick else 3)
        args.budget_s = args.budget_s or (200.0 if args.quick else 450.0)
        device = torch.device("cuda")
        header = f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}"
    import diffusers

    print(f"{header}; diffusers {diffusers.__version__}; {args.steps} steps, {args.runs} timed runs per path and set")
    started = time.perf_counter()
    rows: list[Row] = []
    skipped: list[Plan] = []
    set_time: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as tmp:
        work = Path(tmp)
        folders: dict[str, Path] = {}
        if args.cpu_smoke:
            from generation.models.tiny import ensure_tiny

            folders["tiny"] = ensure_tiny(work / "models")
            counts = parameter_counts()
            print("real-size configs (M parameters): " + ", ".join(f"{k} {v:.1f}" for k, v in counts.items()))
        for plan in plans(args):
            guess = set_time.get(plan.arch, 0.0) + (COMPILE_GUESS_S[plan.arch] if plan.option == "torch_compile" else 0.0)
            if time.perf_counter() - started + guess > args.budget_s:
                skipped.append(plan)
                continue
            if plan.arch not in folders:
                folders[plan.arch] = save_model(plan.arch, work / "models", device)
            t0 = time.perf_counter()
            row = measure(plan, folders[plan.arch], work, device, args)
            elapsed = time.perf_counter() - t0
            if plan.option == "sdpa":
                set_time[plan.arch] = elapsed
            rows.append(row)
            status = f"FAILED ({row.error})" if row.error else f"engine {row.engine_its:.2f} it/s, bare {row.bare_its:.2f} it/s"
            print(
                f"[{time.perf_counter() - started:5.0f} s] {plan.arch} {plan.dtype} {plan.option}: {status} (set took {elapsed:.0f} s)",
                flush=True,
            )
    print_table(rows)
    if skipped:
        print("skipped for the time budget: " + ", ".join(f"{p.arch} {p.dtype} {p.option}" for p in skipped))
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
