"""`python bench/gpu.py --sweep`: every family's real architecture, one table, in one run of under 8
minutes on an H100 (estimated: not yet run on a GPU), so the figures can be taken the first time a
GPU is lent. `--sweep --smoke`: the same sets on the tiny models on a CPU (seconds a set), which
checks the script.

For each family (SD 1.5, SDXL, SD 3.5 Medium, FLUX.1-dev, Chroma, Qwen-Image, Z-Image Turbo, FLUX.2
Klein 4B, Wan 2.1 T2V 1.3B, LTX-Video 2B) one pipeline is built with RANDOM weights from the real
configs (bench/gpu.py, gpu_flux.py, gpu_dits.py; Chroma, Wan and LTX-Video here), directly on the GPU
in bf16 (nothing is downloaded or saved: building on the meta device and materialising would lose the
buffers made in `__init__`, such as CLIP's position ids, so the modules are made on the GPU with bf16
as the default dtype, which is as fast). The engine gets that very pipeline (a `LoadedModel` put in its
`ModelCache`), and bare diffusers calls it as its docs show: both paths share the weights, so one copy
fits the card. Each set is one speed option or cache, set on the shared modules (for bare diffusers
the way its docs set it: `set_attn_processor`, `.to(memory_format=...)`, `compile_repeated_blocks`,
`enable_cache` or `apply_*` for the hooks), then a warm-up job and timed jobs, alternating engine and
bare, then undone. it/s: denoising steps per second from the steps' callbacks, synced.

Random weights and the caches: a cache with a fixed schedule (TaylorSeer, PAB, DeepCache) skips the
same work whatever the weights, so its speed-up here is the real one; an adaptive one (First Block
Cache, MagCache) decides from how much the features change between steps, which random weights do
not say: its figure here is not the real model's (trained FLUX.1-dev skips about half the steps at
First Block Cache's 0.08).

Time: each family has an equal share of the run's budget (--budget-s, 450 s; what one leaves over
passes on), is built once (about 5-40 s on an H100: 29 B parameters for Qwen-Image, 13 B with T5 for
FLUX.1), and runs its sets in order: base, SD's attention and channels_last, its caches, then the
compiled ones (tens of seconds of compiling each); a set that would not fit its share is skipped and
listed. So the run ends within about 8 minutes however the estimates err (a set already started
finishes). On a CPU, `--smoke` takes about 80 s (2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

PROMPT = "a red fox in the snow, photograph, detailed fur"


@dataclass(frozen=True)
class Arch:
    name: str
    tiny: str  # the built-in tiny model of the family (its tokenizers and scheduler; --smoke draws it)
    size: tuple[int, int]  # width, height
    frames: int = 0  # a video model's clip


ARCHES = (
    Arch("sd15", "tiny", (512, 512)),
    Arch("sdxl", "tiny", (1024, 1024)),
    Arch("sd3-medium", "tiny-sd3", (1024, 1024)),
    Arch("flux", "tiny-flux", (1024, 1024)),
    Arch("chroma", "tiny-chroma", (1024, 1024)),
    Arch("qwen", "tiny-qwen", (1024, 1024)),
    Arch("zimage", "tiny-zimage", (1024, 1024)),
    Arch("flux2", "tiny-flux2", (1024, 1024)),
    Arch("wan", "tiny-wan", (832, 480), 33),
    Arch("ltx", "tiny-ltx", (704, 480), 41),
)
SD_OPTIONS = ("classic", "channels_last", "torch_compile")  # UNet families only
COMPILED = ("compile_blocks", "torch_compile")

WAN_1_3B = {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960, "num_layers": 30, "text_dim": 4096}
UMT5_XXL = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
}


@dataclass
class Cell:
    arch: str
    option: str  # "base" (no option, no cache), a speed option, or a cache's name
    engine_its: float = float("nan")
    bare_its: float = float("nan")
    warmup_s: float = float("nan")
    note: str = ""
    runs: list[tuple[float, float]] = field(default_factory=list)


# --- building -----------------------------------------------------------------------------------------


def build(arch: Arch, tiny_pipe: Any, device: torch.device, dtype: torch.dtype, sd_builder: Callable[[str, Any], Any]) -> Any:
    """The real-size pipeline of `arch` with random weights, in `dtype` on `device`."""
    from bench import gpu_dits, gpu_flux

    if arch.name in ("sd15", "sdxl"):
        return sd_builder(arch.name, device).to(dtype=dtype)
    if arch.name == "flux":
        return gpu_flux.build_flux_pipeline(device, dtype)
    if arch.name in gpu_dits.DITS:
        return gpu_dits.build_pipeline(arch.name, device, dtype)
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLLTXVideo,
        AutoencoderKLWan,
        ChromaTransformer2DModel,
        LTXVideoTransformer3DModel,
        WanTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            if arch.name == "chroma":  # Chroma1-HD: diffusers' defaults are its config
                modules = {
                    "transformer": ChromaTransformer2DModel(),
                    "text_encoder": T5EncoderModel(T5Config(**gpu_flux.T5_XXL)),
                    "vae": AutoencoderKL(**gpu_flux.FLUX_VAE),
                }
            elif arch.name == "wan":  # Wan 2.1 T2V 1.3B, UMT5-XXL, Wan's VAE (diffusers' defaults)
                modules = {
                    "transformer": WanTransformer3DModel(**WAN_1_3B),
                    "text_encoder": UMT5EncoderModel(UMT5Config(**UMT5_XXL)),
                    "vae": AutoencoderKLWan(),
                }
            else:  # LTX-Video 2B (0.9.x): diffusers' defaults, T5-XXL
                modules = {
                    "transformer": LTXVideoTransformer3DModel(),
                    "text_encoder": T5EncoderModel(T5Config(**gpu_flux.T5_XXL)),
                    "vae": AutoencoderKLLTXVideo(),
                }
    finally:
        torch.set_default_dtype(previous)
    return type(tiny_pipe)(**{**tiny_pipe.components, **{k: v.eval() for k, v in modules.items()}})


# --- the two paths ------------------------------------------------------------------------------------


class Clock:
    def __init__(self, device: torch.device):
        self.device, self.marks = device, []

    def mark(self, *_: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.marks.append(time.perf_counter())

    def its(self) -> float:
        return (len(self.marks) - 1) / (self.marks[-1] - self.marks[0]) if len(self.marks) > 1 else float("nan")


class Paths:
    """The engine (run_job on a LoadedModel holding `pipe`) and bare diffusers (`pipe` called as its
    docs show), on the same modules."""

    def __init__(self, arch: Arch, pipe: Any, family: Any, device: torch.device, dtype: torch.dtype, work: Path, steps: int):
        from config.models import ModelEntry, ModelRegistry
        from generation.engine import Engine
        from generation.models.loader import LoadedModel, ModelCache
        from storage.blobs import LocalBlobStore

        self.arch, self.pipe, self.family, self.device, self.steps = arch, pipe, family, device, steps
        entry = ModelEntry(source=arch.tiny, name="bench", architecture=family.id)
        cache = ModelCache(ModelRegistry([entry]), work / "models", device, dtype)
        cache._loaded["bench"] = LoadedModel("bench", entry, pipe, dict(pipe.scheduler.config), family)
        cache.current = "bench"
        self.engine = Engine(cache, LocalBlobStore(work / "blobs"))
        self.cfg = family.variant(None).cfg if family.variant(None).cfg is not None else 4.0
        pipe.set_progress_bar_config(disable=True)

    def spec(self, cache: str | None, seed: int) -> Any:
        from generation.spec import ClipSpec, GenerationSpec

        width, height = self.arch.size
        clip = ClipSpec(frames=self.arch.frames, fps=16) if self.arch.frames else None
        return GenerationSpec(
            kind="video" if clip else "txt2img",
            prompt=PROMPT,
            model="bench",
            family=self.family.id,
            width=width,
            height=height,
            steps=self.steps,
            cfg=self.cfg,
            sampler=self.family.default_sampler,
            seed=seed,
            clip=clip,
            cache=cache,
        )

    def engine_job(self, cache: str | None, seed: int) -> float:
        from generation.jobs import run_job

        clock = Clock(self.device)
        run_job(self.engine, self.spec(cache, seed), on_progress=clock.mark)
        return clock.its()

    def bare_job(self, seed: int) -> float:
        clock = Clock(self.device)
        width, height = self.arch.size
        arguments: dict[str, Any] = {"prompt": PROMPT, "num_inference_steps": self.steps, "width": width, "height": height}
        arguments[self.family.cfg_argument] = self.cfg
        if self.family.supports("negative") and not self.family.negative_as_embeds:
            arguments["negative_prompt"] = self.family.blank_negative or ""
        if self.arch.frames:
            arguments["num_frames"] = self.arch.frames
        self.pipe(
            **arguments,
            generator=torch.Generator("cpu").manual_seed(seed),
            callback_on_step_end=lambda pipe, step, t, tensors: clock.mark() or tensors,
            output_type="latent",
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return clock.its()


@contextlib.contextmanager
def bare_cache(pipe: Any, family: Any, name: str | None, steps: int) -> Iterator[None]:
    """Cache `name` on the denoiser as diffusers' docs put it (`enable_cache` on a CacheMixin, else the
    hook's `apply_*`), for one bare diffusers job (DeepCache: diffusers has none)."""
    if name is None:
        yield
        return
    from diffusers.models.cache_utils import CacheMixin

    from generation.models import caches
    from generation.models.families.base import CACHES

    model = getattr(pipe, family.denoiser)
    config = caches._config(name, CACHES[name].knobs, steps, pipe)
    if isinstance(model, CacheMixin):
        model.enable_cache(config)
        try:
            yield
        finally:
            model.disable_cache()
        return
    hooked = caches._DiffusersCache(model, config, contexts=False)
    try:
        yield
    finally:
        hooked.remove()


@contextlib.contextmanager
def speed_option(pipe: Any, family: Any, option: str) -> Iterator[None]:
    """A speed option on the shared modules for one set, undone afterwards."""
    from generation.models import speed

    model = getattr(pipe, family.denoiser)
    try:
        if option == "classic":
            speed.set_attention(model, "classic")
            speed.set_attention(pipe.vae, "classic")
        elif option == "channels_last":
            model.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        elif option == "torch_compile":
            speed.compile_forward(model, eager_when=speed._needs_eager_unet)
        elif option == "compile_blocks":
            speed.compile_blocks(model, family.repeated_blocks)
        yield
    finally:
        if option == "classic":
            speed.set_attention(model, "sdpa")
            speed.set_attention(pipe.vae, "sdpa")
        elif option == "channels_last":
            model.to(memory_format=torch.contiguous_format)
            pipe.vae.to(memory_format=torch.contiguous_format)
        elif option == "torch_compile":
            vars(model).pop("forward", None)
        elif option == "compile_blocks":
            for module in model.modules():
                module._compiled_call_impl = None
        torch._dynamo.reset()


def measure(paths: Paths, option: str, runs: int) -> Cell:
    """One set: the option or cache on, a warm-up job each, then `runs` timed jobs alternating."""
    cell = Cell(paths.arch.name, option)
    cache = option if option not in ("base", *SD_OPTIONS, *COMPILED) else None
    speed_on = option if cache is None and option != "base" else "none"
    why = "diffusers has no UNet cache" if cache == "deepcache" else ""

    def bare(seed: int) -> float:  # the hooks on for the bare job only: the engine puts on its own per job
        if cell.note:
            return float("nan")
        try:
            with bare_cache(paths.pipe, paths.family, cache, paths.steps):
                return paths.bare_job(seed)
        except ValueError as error:  # diffusers' stateful hooks in a pipeline that sets no cache context
            if "cache context" not in str(error):
                raise
            cell.note = f"bare: {type(paths.pipe).__name__} sets no cache context for the hook"
            return float("nan")

    try:
        with speed_option(paths.pipe, paths.family, speed_on):
            cell.note = why
            started = time.perf_counter()
            paths.engine_job(cache, 1)
            bare(1)
            cell.warmup_s = time.perf_counter() - started
            for i in range(runs):
                cell.runs.append((paths.engine_job(cache, 100 + i), bare(100 + i)))
        cell.engine_its = statistics.median(e for e, _ in cell.runs)
        cell.bare_its = statistics.median(b for _, b in cell.runs)
    except Exception as error:  # noqa: BLE001 - one broken set must not lose the others
        cell.note = f"FAILED {type(error).__name__}: {error}"[:200]
        traceback.print_exc(limit=4)
    return cell


# --- the run ------------------------------------------------------------------------------------------


def sets_of(family: Any) -> list[str]:
    """A family's sets after its base: its caches, then the compiled ones (SD's speed options first)."""
    unet = family.denoiser == "unet"
    return [*(SD_OPTIONS[:2] if unet else ()), *family.caches, "compile_blocks", *(("torch_compile",) if unet else ())]


def run(args: argparse.Namespace, sd_builder: Callable[[str, Any], Any]) -> int:
    from config.models import ModelEntry, ModelRegistry
    from generation.models import speed
    from generation.models.loader import ModelCache

    smoke = args.smoke
    if smoke:
        device, dtype = torch.device("cpu"), torch.float32
        speed.COMPILE_KWARGS["backend"] = "eager"  # inductor's C++ compile takes minutes on a CPU
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("bench/gpu.py --sweep: no CUDA device here (use --smoke to check the script). Exiting.")
        return 0
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
    steps = args.steps or (4 if smoke else 12)
    runs = args.runs or (1 if smoke else 2)
    budget = args.budget_s or (1e9 if smoke else 450.0)
    wanted = [a for a in ARCHES if not args.arch or a.name in args.arch.split(",")]
    header = "CPU smoke (tiny models)" if smoke else torch.cuda.get_device_name(device)
    print(f"{header}; torch {torch.__version__}; {steps} steps; {runs} timed job(s) per path and set; budget {budget:.0f} s", flush=True)
    started = time.perf_counter()
    cells: list[Cell] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sdbot-sweep-") as tmp:
        work = Path(tmp)
        sources = dict.fromkeys(a.tiny for a in wanted)
        tiny_dir = Path(tempfile.gettempdir()) / "sdbot-bench-models"  # the tiny models, kept between runs
        tiny_cache = ModelCache(ModelRegistry([ModelEntry(source=s) for s in sources]), tiny_dir, torch.device("cpu"), torch.float32)
        # One pass, a family built once: its share of the budget (what an earlier family left over
        # passes on), its sets in order (base, options, caches, then the compiled ones), and what
        # would not fit its share skipped and listed. A set is started only while its share lasts.
        for index, arch in enumerate(wanted):
            deadline = started + budget * (index + 1) / len(wanted)
            tiny = tiny_cache.get(arch.tiny)
            family = tiny.family
            todo = ["base", *sets_of(family)]
            if time.perf_counter() > deadline:
                skipped += [f"{arch.name} {s}" for s in todo]
                continue
            t0 = time.perf_counter()
            try:
                pipe = tiny.txt2img if smoke else build(arch, tiny.txt2img, device, dtype, sd_builder)
            except Exception as error:  # noqa: BLE001
                cells.append(Cell(arch.name, "build", note=f"FAILED {type(error).__name__}: {error}"[:200]))
                traceback.print_exc(limit=4)
                continue
            built = time.perf_counter() - t0
            drawn = Arch(arch.name, arch.tiny, (64, 64), 9 if arch.frames else 0) if smoke else arch  # tiny: tiny pictures
            paths = Paths(drawn, pipe, family, device, dtype, work, steps)
            for option in todo:
                base_s = next((c.warmup_s for c in cells if c.arch == arch.name and c.option == "base"), 0.0)
                guess = base_s * (4 if option in COMPILED else 1)  # a compile: a few warm-ups' worth (a guess)
                if option != "base" and time.perf_counter() + guess > deadline:
                    skipped.append(f"{arch.name} {option}")
                    continue
                cell = measure(paths, option, runs)
                cells.append(cell)
                print(
                    f"[{time.perf_counter() - started:5.0f} s] {arch.name} {option}: engine {cell.engine_its:.2f} it/s, "
                    f"bare {cell.bare_its:.2f} it/s {cell.note}".rstrip()
                    + (f" (built in {built:.0f} s)" if option == "base" else ""),
                    flush=True,
                )
            del paths, pipe
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print_table(cells)
    if skipped:
        print("skipped for the time budget: " + ", ".join(skipped))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 1 if any(c.note.startswith("FAILED") for c in cells) else 0


def vs(x: float, y: float) -> str:
    """x / y as `x1.23`, or "-" where either is missing (nan) or y is 0."""
    return f"x{x / y:.2f}" if x == x and y == y and y else "-"


def print_table(cells: list[Cell]) -> None:
    base = {c.arch: c for c in cells if c.option == "base" and not c.note}
    print(f"\n{'model':11} {'set':15} {'engine it/s':>11} {'bare it/s':>9} {'eng/bare':>8} {'eng vs base':>11} {'bare vs base':>12}  note")
    for c in cells:
        b = base.get(c.arch)
        print(
            f"{c.arch:11} {c.option:15} {c.engine_its:11.2f} {c.bare_its:9.2f} {vs(c.engine_its, c.bare_its):>8} "
            f"{vs(c.engine_its, b.engine_its) if b else '-':>11} {vs(c.bare_its, b.bare_its) if b else '-':>12}  {c.note}"
        )
    print(
        "\nit/s: denoising steps a second (median); eng/bare > 1: the engine is faster; vs base: the set against the same "
        "path with no option and no cache. Adaptive caches (fbc, magcache) on random weights: see the docstring."
    )
