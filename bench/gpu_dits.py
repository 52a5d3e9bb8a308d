"""SD 3.5, Qwen-Image, Z-Image and FLUX.2 Klein for bench/gpu.py: each family's real architecture with
RANDOM weights, built on the GPU in bf16 (as bench/gpu_flux.py builds FLUX.1-dev), saved with
`save_pretrained`, and loaded by the engine (ModelCache -> Engine -> run_job) and by its bare diffusers
pipeline, one path after the other (`gpu_flux.measure_apart`: Qwen-Image's 57 GB could not be loaded
twice on an 80 GB card).

The configs (diffusers' / transformers' argument names, checked against diffusers 0.42.1's and
transformers 5.5's __init__s), from the published config.json files as far as they are known here:
- SD 3.5 Large (`sd3`): SD3Transformer2DModel, 38 layers x 38 heads of 64, caption projection 2432,
  pos_embed_max_size 192, RMS QK norm: 8.06 B. CLIP-L and CLIP-G (OpenCLIP bigG, 32 layers) with
  projections, T5-XXL's encoder, SD3's 16-channel VAE (FLUX.1's layout, scale 1.5305, shift 0.0609).
- SD 3.5 Medium (`sd3-medium`): 24 layers x 24 heads, caption projection 1536, dual attention
  (MMDiT-X) in layers 0..12: 2.24 B here (published as 2.5 B). pos_embed_max_size 384 is from memory (unsure; it only sizes a
  position table, ~0.6 M parameters per 2x, and 1024² uses 64x64 of it either way).
- Qwen-Image (`qwen`): QwenImageTransformer2DModel 60 layers x 24 heads of 128, joint_attention_dim
  3584: 20.4 B; Qwen2.5-VL-7B-Instruct (text: 28 layers, 3584 wide, 18944 MLP, 28 heads / 4 KV heads,
  vocab 152064, M-RoPE 16/24/24; its 32-block vision tower too, as the pipeline loads it): 8.3 B;
  AutoencoderKLQwenImage at its class defaults (base_dim 96, as published). 28.7 B = 57.4 GB in bf16.
- Z-Image Turbo (`zimage`): ZImageTransformer2DModel dim 3840, 30 layers + 2 + 2 refiner layers,
  30 heads, caption width 2560, axes (32, 48, 48), axes_lens (1536, 512, 512) as tiny_zimage has
  Turbo's: 6.15 B; Qwen3-4B (Qwen3Model: 36 layers, 2560 wide, 9728 MLP, 32 heads / 8 KV heads of
  128, vocab 151936, tied embeddings): 4.0 B; FLUX.1's VAE.
- FLUX.2 Klein 4B (`flux2`): Flux2Transformer2DModel with 5 double and 20 single blocks, 24 heads of
  128, joint_attention_dim 7680 (3 x Qwen3-4B's 2560: the pipeline stacks layers 9, 18 and 27),
  no guidance embedding: ~3.9 B. The block counts and head count are from memory of the published
  config (unsure: they give the "4B" the name says); Qwen3-4B as a Qwen3ForCausalLM; FLUX.2's VAE
  (AutoencoderKLFlux2) at its class defaults. The distilled model: `is_distilled=True`, 4 steps,
  guidance 1.0 (no CFG).
Tokenizers: the project's offline ones (tiny_*.py; CLIP's real vocabulary, small BPE/Unigram
vocabularies for T5 and Qwen whose ids all fall inside the real embeddings). A prompt may split into
a few more tokens than with the real vocabularies; SD3 and FLUX.2 pad to fixed lengths anyway.

Sizes and time: each set is one model at 1024², bf16 (`quantization` none, memory gpu). Estimated on
an H100 (`estimate_s`: ~350 TFLOP/s effective, as FLUX.1-dev's ~3.5 it/s): SD 3.5 Large ~3 min,
Medium ~1.5 min, Qwen-Image ~5 min (20 steps; its 57 GB are written and read twice), Z-Image ~1.5 min,
FLUX.2 Klein ~1.5 min, builds included. A set whose estimate does not fit what is left of its
family's budget is built with fewer transformer layers (`fit_fraction`), and one whose folder would not
fit the disk too (`disk_fraction`); either says so, and the table shows the layers built.

This module imports nothing from bench/gpu.py (which runs as __main__ and imports this one).
"""

from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.gpu_flux import FLUX_CLIP_L, FLUX_VAE, T5_XXL, _free, _sync, gib, ratio


@dataclass(frozen=True)
class Dit:
    """One real-size set: the engine's family id, its pipeline class, how its CFG is passed, and the
    H100 guesses for the time budget."""

    family: str
    label: str
    pipeline: str
    cfg: float
    cfg_argument: str = "guidance_scale"
    negative: str | None = ""  # what the engine sends for an empty negative prompt (None: no negative)
    layer_keys: tuple[str, ...] = ("num_layers",)
    its_guess: float = 3.0  # it/s at 1024² on an H100
    tiny: str = ""


DITS: dict[str, Dit] = {
    "sd3": Dit("sd3", "SD 3.5 Large", "StableDiffusion3Pipeline", 3.5, its_guess=2.5, tiny="tiny-sd3"),
    "sd3-medium": Dit("sd3", "SD 3.5 Medium", "StableDiffusion3Pipeline", 4.5, its_guess=7.0),
    "qwen": Dit("qwen", "Qwen-Image", "QwenImagePipeline", 4.0, "true_cfg_scale", " ", its_guess=1.0, tiny="tiny-qwen"),
    "zimage": Dit("zimage", "Z-Image Turbo", "ZImagePipeline", 0.0, layer_keys=("n_layers",), its_guess=6.0, tiny="tiny-zimage"),
    "flux2": Dit(
        "flux2",
        "FLUX.2 Klein 4B",
        "Flux2KleinPipeline",
        1.0,
        negative=None,
        layer_keys=("num_layers", "num_single_layers"),
        its_guess=8.0,
        tiny="tiny-flux2",
    ),
}
TINY = {spec.tiny: arch for arch, spec in DITS.items() if spec.tiny}  # tiny-sd3 -> sd3 (the settings it shares)
FAMILY_ARCHES = {
    "sd3": ("sd3", "sd3-medium", "tiny-sd3"),
    "qwen": ("qwen", "tiny-qwen"),
    "zimage": ("zimage", "tiny-zimage"),
    "flux2": ("flux2", "tiny-flux2"),
}
BUILT: dict[str, str] = {}  # arch -> "built layers / real layers", for the table

# --- the configs -------------------------------------------------------------------------------------
SD35_LARGE: dict[str, Any] = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 38,
    "attention_head_dim": 64,
    "num_attention_heads": 38,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 2432,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
    "dual_attention_layers": (),
    "qk_norm": "rms_norm",
}
SD35_MEDIUM: dict[str, Any] = {
    **SD35_LARGE,
    "num_layers": 24,
    "num_attention_heads": 24,
    "caption_projection_dim": 1536,
    "pos_embed_max_size": 384,
    "dual_attention_layers": tuple(range(13)),
}
SD3_CLIP_G: dict[str, Any] = {  # OpenCLIP bigG's text tower, SD3's text_encoder_2 (with projection)
    **FLUX_CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
SD3_VAE: dict[str, Any] = {**FLUX_VAE, "scaling_factor": 1.5305, "shift_factor": 0.0609}
QWEN_IMAGE: dict[str, Any] = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 60,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 3584,
    "guidance_embeds": False,
    "axes_dims_rope": (16, 56, 56),
}
QWEN25_VL_7B: dict[str, Any] = {
    "text_config": {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
        "tie_word_embeddings": False,
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
    },
    "tie_word_embeddings": False,
}
Z_IMAGE: dict[str, Any] = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 2560,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": (32, 48, 48),
    "axes_lens": (1536, 512, 512),
}
QWEN3_4B: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": True,
}
FLUX2_KLEIN_4B: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 128,
    "num_layers": 5,
    "num_single_layers": 20,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 3 * 2560,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (32, 32, 32, 32),
    "rope_theta": 2000,
    "guidance_embeds": False,
}
TRANSFORMERS = {"sd3": SD35_LARGE, "sd3-medium": SD35_MEDIUM, "qwen": QWEN_IMAGE, "zimage": Z_IMAGE, "flux2": FLUX2_KLEIN_4B}


def scaled(arch: str, fraction: float) -> dict[str, Any]:
    """The transformer's config with its blocks cut to `fraction` (at least one of each kind)."""
    config = dict(TRANSFORMERS[arch])
    for key in DITS[arch].layer_keys:
        config[key] = max(1, round(config[key] * fraction))
    if config.get("dual_attention_layers"):
        config["dual_attention_layers"] = tuple(i for i in config["dual_attention_layers"] if i < config["num_layers"] - 1)
    return config


def layers_text(arch: str, fraction: float) -> str:
    real, built = TRANSFORMERS[arch], scaled(arch, fraction)
    return "+".join(f"{built[k]}" for k in DITS[arch].layer_keys) + " of " + "+".join(f"{real[k]}" for k in DITS[arch].layer_keys)


def build_pipeline(arch: str, device: torch.device | str, dtype: torch.dtype = torch.bfloat16, fraction: float = 1.0) -> Any:
    """`arch`'s pipeline at real size (its transformer's blocks cut to `fraction`), random weights (seeded),
    every module made in `dtype` on `device` ("meta": no memory, no time)."""
    import diffusers
    import transformers

    from generation.models import tiny_flux2, tiny_qwen, tiny_zimage
    from generation.models.tiny import clip_vocab
    from generation.models.tiny_dit import t5_tokenizer
    from generation.models.tiny_sd3 import SD3_SCHEDULER

    torch.manual_seed(0)
    flow = diffusers.FlowMatchEulerDiscreteScheduler.from_config
    config = scaled(arch, fraction)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are made in bf16: no fp32 copy
    try:
        with torch.device(device):
            if arch in ("sd3", "sd3-medium"):
                vocab, merges = clip_vocab()
                return diffusers.StableDiffusion3Pipeline(
                    transformer=diffusers.SD3Transformer2DModel(**config),
                    scheduler=flow(SD3_SCHEDULER),
                    vae=diffusers.AutoencoderKL(**SD3_VAE),
                    text_encoder=transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**FLUX_CLIP_L)).eval(),
                    tokenizer=transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77),
                    text_encoder_2=transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**SD3_CLIP_G)).eval(),
                    tokenizer_2=transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token="!"),
                    text_encoder_3=transformers.T5EncoderModel(transformers.T5Config(**T5_XXL)).eval(),
                    tokenizer_3=t5_tokenizer(),
                )
            if arch == "qwen":
                tokenizer = tiny_qwen.qwen_tokenizer()
                ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tiny_qwen.QWEN_SPECIAL_TOKENS}
                vl = transformers.Qwen2_5_VLConfig(
                    **QWEN25_VL_7B,
                    image_token_id=ids["<|image_pad|>"],
                    video_token_id=ids["<|video_pad|>"],
                    vision_start_token_id=ids["<|vision_start|>"],
                    vision_end_token_id=ids["<|vision_end|>"],
                    bos_token_id=ids["<|endoftext|>"],
                    eos_token_id=ids["<|im_end|>"],
                )
                return diffusers.QwenImagePipeline(
                    scheduler=flow(tiny_qwen.QWEN_SCHEDULER),
                    vae=diffusers.AutoencoderKLQwenImage().eval(),
                    text_encoder=transformers.Qwen2_5_VLForConditionalGeneration(vl).eval(),
                    tokenizer=tokenizer,
                    transformer=diffusers.QwenImageTransformer2DModel(**config).eval(),
                )
            if arch == "zimage":
                tokenizer = tiny_zimage.qwen_tokenizer()
                qwen3 = transformers.Qwen3Config(
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                    bos_token_id=tokenizer.pad_token_id,
                    **QWEN3_4B,
                )
                return diffusers.ZImagePipeline(
                    scheduler=flow(tiny_zimage.ZIMAGE_SCHEDULER),
                    vae=diffusers.AutoencoderKL(**FLUX_VAE),
                    text_encoder=transformers.Qwen3Model(qwen3).eval(),
                    tokenizer=tokenizer,
                    transformer=diffusers.ZImageTransformer2DModel(**config).eval(),
                )
            if arch == "flux2":
                tokenizer = tiny_flux2.qwen_tokenizer()
                qwen3 = transformers.Qwen3Config(
                    bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                    eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                    **QWEN3_4B,
                )
                return diffusers.Flux2KleinPipeline(
                    scheduler=flow(tiny_flux2.FLUX2_SCHEDULER),
                    vae=diffusers.AutoencoderKLFlux2().eval(),
                    text_encoder=transformers.Qwen3ForCausalLM(qwen3).eval(),
                    tokenizer=tokenizer,
                    transformer=diffusers.Flux2Transformer2DModel(**config).eval(),
                    is_distilled=True,
                )
    finally:
        torch.set_default_dtype(previous)
    raise KeyError(arch)


@functools.cache
def _counts(arch: str) -> dict[str, float]:
    """Parameters of `arch`'s transformer and of the rest, built on the meta device."""
    pipe = build_pipeline(arch, "meta")
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    total = sum(count(m) for m in pipe.components.values() if isinstance(m, torch.nn.Module))
    return {"transformer": count(pipe.transformer), "rest": total - count(pipe.transformer)}


def parameter_counts() -> dict[str, float]:
    """Millions of parameters of each set's transformer and of the rest (text encoders, VAE): a check
    of the configs (expected ~8060 SD 3.5 Large, ~2240 Medium (published as 2.5 B), ~20430 Qwen-Image + ~8290 Qwen2.5-VL-7B,
    ~6150 Z-Image + ~4020 Qwen3-4B, ~3900 Klein 4B + ~4020 Qwen3-4B)."""
    out: dict[str, float] = {}
    for arch in TRANSFORMERS:
        counts = _counts(arch)
        out[f"{arch} transformer"] = counts["transformer"] / 1e6
        out[f"{arch} rest"] = counts["rest"] / 1e6
    return out


# --- building, time and disk ---------------------------------------------------------------------------


def folder_bytes(arch: str, fraction: float = 1.0) -> float:
    counts = _counts(arch)
    return 2.0 * (counts["transformer"] * fraction + counts["rest"])  # bf16


def estimate_s(arch: str, steps: int, runs: int, last: float | None, build: bool, fraction: float = 1.0) -> float:
    """A set's time, for the budget: the last measured one, else a guess: two loads at ~1.5 GB/s, two
    paths of (runs + 1) jobs at `its_guess` it/s (x fraction of the layers) plus ~2 s besides the steps
    (encoding, decoding, PNG); plus the build (~10 s) and the save (~1 GB/s) while not built."""
    size = folder_bytes(arch, fraction) / 1e9
    if last is not None:
        guess = last
    else:
        its = DITS[arch].its_guess / max(fraction, 0.05)
        guess = 2 * (size / 1.5 + 5) + 2 * (runs + 1) * (steps / its + 2.0)
    return guess + (10.0 + size if build else 0.0)


def fit_fraction(arch: str, left_s: float, steps: int, runs: int) -> float:
    """The largest share of the transformer's blocks (1, 3/4, 1/2, 1/4) whose set fits `left_s`."""
    for fraction in (1.0, 0.75, 0.5, 0.25):
        if estimate_s(arch, steps, runs, None, True, fraction) <= left_s:
            return fraction
    return 0.25


def disk_fraction(arch: str, folder: Path, fraction: float) -> float:
    """`fraction`, or less where the folder would not fit the free disk (with 5% to spare)."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free / 1.05
    counts = _counts(arch)
    if 2.0 * (counts["transformer"] * fraction + counts["rest"]) <= free:
        return fraction
    fits = (free / 2.0 - counts["rest"]) / counts["transformer"]
    if fits < 0.05:
        raise RuntimeError(f"{free / 1e9:.0f} GB free in {folder}: not enough for {DITS[arch].label} even with few layers")
    print(f"{DITS[arch].label}: {free * 1.05 / 1e9:.0f} GB free on disk: built with {layers_text(arch, fits)} layers", flush=True)
    return fits


def save(arch: str, folder: Path, device: torch.device, fraction: float = 1.0) -> Path:
    """Build `arch` on `device` in bf16 and save it into `folder`/`arch`."""
    fraction = disk_fraction(arch, folder, fraction)
    target = folder / arch
    start = time.perf_counter()
    pipe = build_pipeline(arch, device, torch.bfloat16, fraction)
    _sync(device)
    built = time.perf_counter()
    pipe.save_pretrained(target, safe_serialization=True)
    del pipe
    _free(device)
    BUILT[arch] = layers_text(arch, fraction)
    note = "" if fraction == 1.0 else " (FEWER LAYERS than the real model: it/s is not the real model's)"
    print(
        f"built random-weight {DITS[arch].label} ({BUILT[arch]} layers{note}) in {built - start:.0f} s, "
        f"saved {folder_bytes(arch, fraction) / 1e9:.1f} GB in {time.perf_counter() - built:.0f} s",
        flush=True,
    )
    return target


def ensure_tiny(arch: str, models_dir: Path) -> Path:
    """For --cpu-smoke: the project's tiny model of the family (generation/models/tiny_*.py)."""
    from generation.models import tiny_flux2, tiny_qwen, tiny_sd3, tiny_zimage

    builders = {
        "tiny-sd3": tiny_sd3.ensure,
        "tiny-qwen": tiny_qwen.ensure,
        "tiny-zimage": tiny_zimage.ensure,
        "tiny-flux2": tiny_flux2.ensure,
    }
    BUILT[arch] = "tiny"
    return builders[arch](models_dir)


def settings(arch: str) -> Dit:
    return DITS[TINY.get(arch, arch)]


# --- the two paths -----------------------------------------------------------------------------------------


def bare_arguments(arch: str) -> dict[str, Any]:
    """What bare diffusers is called with besides the prompt, size, steps and generator: the family's
    CFG argument and the negative prompt the engine sends for an empty one."""
    spec = settings(arch)
    out: dict[str, Any] = {spec.cfg_argument: spec.cfg}
    if spec.negative is not None:
        out["negative_prompt"] = spec.negative
    return out


def load_bare(arch: str, folder: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """The family's diffusers pipeline class on the same folder, as its docs load it."""
    import diffusers

    pipe = getattr(diffusers, settings(arch).pipeline).from_pretrained(folder, dtype=dtype, use_safetensors=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def print_table(rows: list[Any], steps: dict[str, int]) -> None:
    print()
    print(
        f"{'model':16} {'layers':12} {'steps':>5} {'cfg':>4} {'engine it/s':>11} {'bare it/s':>9} {'eng/bare':>8} {'eng s/job':>9} "
        f"{'bare s/job':>10} {'warm-up s e/b':>13} {'load s e/b':>11} {'peak GiB e/b':>12} {'mem e/b':>7}"
    )
    for r in rows:
        spec = settings(r.arch)
        name = r.arch if r.arch.startswith("tiny") else spec.label
        if r.error:
            print(f"{name:16} FAILED {r.error}")
            continue
        print(
            f"{name:16} {BUILT.get(r.arch, '?'):12} {steps.get(r.arch, 0):5} {spec.cfg:4.1f} {r.engine_its:11.2f} {r.bare_its:9.2f} "
            f"{ratio(r.engine_its, r.bare_its):>8} {r.engine_s:9.3f} {r.bare_s:10.3f} {r.warmup_engine_s:6.1f}/{r.warmup_bare_s:<6.1f} "
            f"{r.load_engine_s:5.1f}/{r.load_bare_s:<5.1f} {gib(r.peak_engine_gib):>6}/{gib(r.peak_bare_gib):<5} "
            f"{ratio(r.peak_engine_gib, r.peak_bare_gib):>7}"
        )
    print(
        "\nDiTs at 1024² in bf16, random weights, engine and bare one after the other (each its own peak). cfg: the family's "
        "(Qwen-Image's true_cfg_scale with a blank negative, two passes a step; SD 3.5 real CFG; Z-Image Turbo and FLUX.2 Klein "
        "none). layers: the transformer's blocks built, of the real model's (fewer: not the real model's speed)."
    )
