"""FLUX.1-dev for bench/gpu.py: the real architecture with RANDOM weights, built, saved, written as GGUF Q8_0,
and loaded by bare diffusers in each storage (bf16, fp8, GGUF), the way diffusers' docs load them.

Building: every module is made directly in bf16 with the GPU as the default device (no fp32 copy, no
host-side random init): 11.9 B transformer + 4.76 B T5-XXL + 123 M CLIP-L + 84 M VAE = 16.9 B
parameters, 33.7 GB in bf16. Construction and random init on an H100 take seconds; `save_pretrained`
(GPU -> host copy and safetensors writes of 33.7 GB) takes ~30-60 s, depending on the disk. The GGUF
Q8_0 transformer (12.7 GB) is quantized on the GPU (`q8_0`, bit-identical to gguf-py's Q8_0, which the
CPU smoke test checks against tests/support/gguf_files.write_gguf): gguf-py's numpy Q8_0 does ~106 M
parameters/s on one core (measured), ~2 min for 11.9 B, while the GPU takes seconds and the whole
write ~20-30 s. Estimated build, all told: ~1.5-2 min (FLUX_BUILD_GUESS_S). Disk: 33.7 GB folder +
12.7 GB GGUF, on a 64 GiB disk; `save_flux` checks the free space first.

This module imports nothing from bench/gpu.py (which runs as __main__ and imports this one).
"""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from config import ModelEntry

QUANTIZATIONS = ("none", "fp8", "gguf-q8_0")  # the FLUX sets: ModelEntry.quantization "none", "fp8", and a GGUF Q8_0 file
GUIDANCE = 3.5  # FLUX.1-dev's distilled guidance (the engine's --cfg for flux)
FLUX_BUILD_GUESS_S = 100.0  # build + save_pretrained, for the time budget
GGUF_WRITE_GUESS_S = 40.0  # to_bfl_keys + Q8_0 on the GPU + 12.7 GB written
FOLDER_BYTES = 33.7e9
GGUF_BYTES = 12.7e9

# --- FLUX.1-dev's configs (black-forest-labs/FLUX.1-dev: transformer/, vae/, text_encoder/, text_encoder_2/) ---
FLUX_DEV_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
FLUX_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 16,
    "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "force_upcast": True,  # as shipped; FluxPipeline decodes in the VAE's dtype regardless
}
FLUX_CLIP_L: dict[str, Any] = {  # openai/clip-vit-large-patch14's text model, token ids as FLUX.1-dev ships them
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
T5_XXL: dict[str, Any] = {  # google/t5-v1_1-xxl (FLUX.1-dev's text_encoder_2: the encoder only)
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "dense_act_fn": "gelu_new",
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}


def build_flux_pipeline(device: torch.device | str, dtype: torch.dtype = torch.bfloat16) -> Any:
    """FLUX.1-dev, real sizes, random weights (seeded), every module made in `dtype` on `device`
    ("meta": no memory, no time). Tokenizers: the project's offline ones (CLIP's real vocabulary;
    a small Unigram T5 vocabulary, whose ids all fall inside T5-XXL's 32128 embeddings)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    from generation.models.tiny import clip_vocab
    from generation.models.tiny_config import FLOW_SCHEDULER
    from generation.models.tiny_dit import t5_tokenizer

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are created in bf16: no fp32 copy of 16.9 B parameters
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(**FLUX_DEV_TRANSFORMER)
            vae = AutoencoderKL(**FLUX_VAE)
            text_encoder = CLIPTextModel(CLIPTextConfig(**FLUX_CLIP_L))
            text_encoder_2 = T5EncoderModel(T5Config(**T5_XXL))
    finally:
        torch.set_default_dtype(previous)
    vocab, merges = clip_vocab()
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(FLOW_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=t5_tokenizer(),
        transformer=transformer,
    )


def flux_parameter_counts() -> dict[str, float]:
    """Millions of parameters of FLUX.1-dev's components, built on the meta device (a check of the configs:
    11901.4 transformer, 4762.3 T5-XXL encoder, 123.1 CLIP-L, 83.8 VAE)."""
    pipe = build_flux_pipeline("meta")
    count = lambda module: sum(p.numel() for p in module.parameters()) / 1e6  # noqa: E731
    return {
        "flux transformer": count(pipe.transformer),
        "t5-xxl": count(pipe.text_encoder_2),
        "flux vae": count(pipe.vae),
    }


def save_flux(folder: Path, device: torch.device, gguf: bool) -> tuple[Path, Path | None]:
    """Build FLUX.1-dev on `device`, save it (bf16) into `folder`/flux, and (if `gguf`) its transformer as
    a Q8_0 .gguf beside it, in the original BFL key layout as published files are. Returns the folder and
    the .gguf (None when skipped for lack of disk, which it says)."""
    target, gguf_path = folder / "flux", folder / "flux-dev-random-Q8_0.gguf"
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < FOLDER_BYTES * 1.05:
        raise RuntimeError(f"{free / 1e9:.0f} GB free in {folder}; the FLUX.1-dev folder needs {FOLDER_BYTES / 1e9:.0f} GB")
    if gguf and free < (FOLDER_BYTES + GGUF_BYTES) * 1.05:
        print(f"only {free / 1e9:.0f} GB free in {folder}: no room for the GGUF file too, its sets are skipped", flush=True)
        gguf = False
    start = time.perf_counter()
    pipe = build_flux_pipeline(device)
    _sync(device)
    built = time.perf_counter()
    pipe.save_pretrained(target, safe_serialization=True)
    saved = time.perf_counter()
    print(f"built random-weight FLUX.1-dev in {built - start:.0f} s, saved in {saved - built:.0f} s", flush=True)
    if not gguf:
        return target, None
    transformer = pipe.transformer
    del pipe  # the text encoders and the VAE: room on the GPU for to_bfl_keys' concatenated copies
    _free(device)
    write_gguf_q8_0(transformer.state_dict(), gguf_path, device)
    print(
        f"wrote its transformer as GGUF Q8_0 ({gguf_path.stat().st_size / 1e9:.1f} GB) in {time.perf_counter() - saved:.0f} s", flush=True
    )
    return target, gguf_path


# --- GGUF Q8_0 on the GPU ------------------------------------------------------------------------------


def q8_0(weight: torch.Tensor) -> Any:
    """gguf-py's Q8_0 (`gguf.quants.Q8_0.quantize_blocks`, bit-exact with ggml's) in torch, on the
    weight's device: per 32 values an fp16 scale max|x|/127 and 32 int8s rounded half away from zero.
    Returns the packed uint8 numpy array (rows, cols / 32 * 34) that GGUFWriter takes."""
    rows, cols = weight.shape
    blocks = weight.detach().float().reshape(-1, 32)
    scale = blocks.abs().amax(dim=1, keepdim=True) / 127
    inverse = torch.where(scale == 0, torch.zeros_like(scale), 1 / scale)
    x = blocks * inverse
    magnitude = x.abs()
    floored = magnitude.floor()
    q = torch.sign(x) * (floored + (2 * (magnitude - floored)).floor())  # gguf's np_roundf
    packed = torch.cat([scale.half().view(torch.uint8), q.to(torch.int8).view(torch.uint8)], dim=1)
    return packed.reshape(rows, cols // 32 * 34).cpu().numpy()


def write_gguf_q8_0(state_dict: dict[str, torch.Tensor], path: Path, device: torch.device) -> Path:
    """tests/support/gguf_files.write_gguf(state_dict, path, "Q8_0", key_layout="bfl") with the Q8_0 done
    by `q8_0` on `device`: the same bytes (the smoke test compares them), in seconds on a GPU."""
    import gguf
    import numpy as np

    from tests.support.gguf_files import to_bfl_keys

    tensors = to_bfl_keys(state_dict)
    del state_dict
    qtype = gguf.GGMLQuantizationType.Q8_0
    writer = gguf.GGUFWriter(str(path), arch="flux")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name in list(tensors):
        tensor = tensors.pop(name).to(device)
        if tensor.ndim == 2 and tensor.shape[-1] % 32 == 0:
            writer.add_tensor(name, q8_0(tensor), raw_dtype=qtype)
        else:
            writer.add_tensor(name, np.ascontiguousarray(tensor.detach().float().cpu().numpy(), dtype=np.float32))
        del tensor
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def smoke_gguf(folder: Path, work: Path) -> Path:
    """For --cpu-smoke: `folder`'s transformer written by `write_gguf_q8_0` (on the CPU), checked to be
    byte for byte what the project's tests/support/gguf_files.write_gguf writes. Returns the file.
    diffusers' BFL converter splits at FLUX's width (3072): `tiny_bfl_widths` scales that split to the
    tiny model's, as the tests do, for the rest of this process (only this smoke test's loads use it)."""
    import pytest
    from diffusers import FluxTransformer2DModel

    from tests.support.gguf_files import tiny_bfl_widths, write_gguf

    tiny_bfl_widths(pytest.MonkeyPatch())  # never undone: the process ends with the smoke test

    state = FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer").state_dict()
    ours = write_gguf_q8_0(state, work / "tiny-flux-Q8_0.gguf", torch.device("cpu"))
    theirs = write_gguf(state, work / "reference.gguf", quant="Q8_0", key_layout="bfl")
    if ours.read_bytes() != theirs.read_bytes():
        raise AssertionError("bench's Q8_0 writer and tests/support/gguf_files.write_gguf wrote different files")
    print(f"GGUF Q8_0 writer (torch): the same {ours.stat().st_size} bytes as tests/support/gguf_files.write_gguf", flush=True)
    theirs.unlink()
    return ours


# --- what the engine and bare diffusers load ----------------------------------------------------------


def engine_entry(quantization: str, folder: Path, gguf: Path | None) -> ModelEntry:
    """The registry entry a worker would have for this set; memory `gpu` (both paths all on the GPU)."""
    if quantization == "gguf-q8_0":
        if gguf is None:
            raise RuntimeError("no GGUF file was written (see above)")
        return ModelEntry(source=str(gguf), config=str(folder), name="bench", memory="gpu")
    return ModelEntry(source=str(folder), name="bench", quantization=quantization, memory="gpu")


def load_bare_flux(folder: Path, gguf: Path | None, quantization: str, device: torch.device, dtype: torch.dtype) -> Any:
    """FluxPipeline on the same files, each storage set the way diffusers' docs do it."""
    from diffusers import FluxPipeline, FluxTransformer2DModel, GGUFQuantizationConfig

    extra: dict[str, Any] = {}
    if quantization == "gguf-q8_0":
        if gguf is None:
            raise RuntimeError("no GGUF file was written (see above)")
        extra["transformer"] = FluxTransformer2DModel.from_single_file(
            str(gguf),
            quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
            config=str(folder),
            subfolder="transformer",
            torch_dtype=dtype,
            local_files_only=True,
        )
    pipe = FluxPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True, **extra)
    if quantization == "fp8":
        pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- measuring and printing (bench/gpu.py's Row and paths, duck-typed) ----------------------------------


def measure_apart(row: Any, paths: dict[str, Callable[[], Any]], size: int, steps: int, runs: int, device: torch.device) -> None:
    """Each path in turn ("engine", then "bare"): made (its load time), one untimed warm-up job, `runs`
    timed jobs, its own peak memory, then freed before the next is made. Fills `row`'s load_*_s,
    warmup_*_s, peak_*_gib, peak_gib and runs."""
    timed: dict[str, list[tuple[float, float]]] = {}
    for side, make in paths.items():
        _free(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        path = make()
        setattr(row, f"load_{side}_s", time.perf_counter() - start)
        setattr(row, f"warmup_{side}_s", path.job(size, steps, 1)[1])
        timed[side] = [path.job(size, steps, 100 + i) for i in range(runs)]
        if device.type == "cuda":
            setattr(row, f"peak_{side}_gib", torch.cuda.max_memory_allocated(device) / 2**30)
        del path
        _free(device)
        if device.type == "cuda" and torch.cuda.memory_allocated(device) > 2**30:
            print(f"warning: {torch.cuda.memory_allocated(device) / 2**30:.1f} GiB still allocated after the {side} path", flush=True)
    row.runs = [
        {"engine_its": e[0], "bare_its": b[0], "engine_s": e[1], "bare_s": b[1]}
        for e, b in zip(timed["engine"], timed["bare"], strict=True)
    ]
    row.peak_gib = max(row.peak_engine_gib, row.peak_bare_gib) if device.type == "cuda" else float("nan")


def estimate_s(option: str, steps: int, runs: int, last: float | None, build: bool, gguf: bool) -> float:
    """What a set will take, for the time budget: the last bf16 set's time, else a first guess (loads
    ~25 s per path; ~3.5 it/s at 1024² on an H100 and ~1.5 s per job besides the steps), GGUF 1.3
    times that (its loads and its dequantizing layers), plus the build (and GGUF write) if not built."""
    guess = last if last is not None else 50.0 + 2 * (runs + 1) * (steps / 3.5 + 1.5)
    guess *= 1.3 if option == "gguf-q8_0" else 1.0
    return guess + (FLUX_BUILD_GUESS_S + (GGUF_WRITE_GUESS_S if gguf else 0.0) if build else 0.0)


def ratio(a: float, b: float) -> str:
    return f"{a / b:6.3f}" if a == a and b == b and b else "     -"  # NaN-safe


def gib(value: float) -> str:
    return f"{value:.1f}" if value == value else "-"


def print_table(rows: list[Any]) -> None:
    base = {(r.arch, r.dtype): r for r in rows if r.option == "none" and not r.error}
    print()
    print(
        f"{'model':9} {'dtype':5} {'quantization':12} {'engine it/s':>11} {'bare it/s':>9} {'eng/bare':>8} {'eng vs none':>11} "
        f"{'bare vs none':>12} {'eng s/job':>9} {'bare s/job':>10} {'warm-up s e/b':>13} {'load s e/b':>11} {'peak GiB e/b':>12} {'mem e/b':>7}"
    )
    for r in rows:
        if r.error:
            print(f"{r.arch:9} {r.dtype:5} {r.option:12} FAILED {r.error}")
            continue
        b = base.get((r.arch, r.dtype))
        print(
            f"{r.arch:9} {r.dtype:5} {r.option:12} {r.engine_its:11.2f} {r.bare_its:9.2f} {ratio(r.engine_its, r.bare_its):>8} "
            f"{ratio(r.engine_its, b.engine_its) if b else '-':>11} {ratio(r.bare_its, b.bare_its) if b else '-':>12} "
            f"{r.engine_s:9.3f} {r.bare_s:10.3f} {r.warmup_engine_s:6.1f}/{r.warmup_bare_s:<6.1f} "
            f"{r.load_engine_s:5.1f}/{r.load_bare_s:<5.1f} {gib(r.peak_engine_gib):>6}/{gib(r.peak_bare_gib):<5} "
            f"{ratio(r.peak_engine_gib, r.peak_bare_gib):>7}"
        )
    print(
        "\nit/s: denoising steps per second (median); eng/bare > 1: the engine is faster. quantization: the transformer's "
        "storage (none: the dtype; fp8: layerwise casting; gguf-q8_0: a GGUF file), computed in the dtype. Engine and bare "
        "ran one after the other, each with its own peak (torch.cuda.max_memory_allocated); mem e/b < 1: the engine used less."
    )


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
