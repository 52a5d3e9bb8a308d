"""The `tiny` model: Stable Diffusion 1.x's real architecture with random weights, small enough
to run in seconds on a CPU. It is built here, saved with `save_pretrained`, and then loaded through
the same path as any real model, so the whole bot runs and is tested with no GPU and no network.
It draws noise: that is the point of it, and the bot says so.

Random weights make a picture almost blind to its prompt, so a test comparing prompt encodings
would pass even when the encoding were wrong. The builder therefore makes it text-sensitive
(docs/rules.md, pitfalls): token embeddings at CLIP's scale, stronger cross-attention keys and
values, random affine parameters on the norms, and a final text norm whose output mean is clearly
off zero. The tokenizer is CLIP's real one, rebuilt from the BPE merges that the open-clip-torch
wheel carries (read as a file; open_clip is never imported, it may download at import).
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import shutil
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from generation.models import tiny_config

log = logging.getLogger(__name__)

TINY_VERSION = "tiny-sd1-v1"  # bump when the recipe changes, so cached copies are rebuilt
SEED = 20261126
SCHEDULER_CONFIG = {  # Stable Diffusion 1.5's scheduler_config.json
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


def ensure_tiny(models_dir: Path) -> Path:
    """The tiny model's diffusers folder under `models_dir`, built on first use."""
    return pipeline_folder(models_dir, TINY_VERSION, build_tiny_pipeline)


def pipeline_folder(models_dir: Path, version: str, build: Callable[[], Any]) -> Path:
    """The diffusers folder `models_dir/version` of the pipeline `build()` makes (every built-in
    tiny model's), built and saved on first use."""
    target = Path(models_dir) / version
    if not (target / "model_index.json").exists():
        build_atomically(target, lambda folder: build().save_pretrained(folder, safe_serialization=True))
    return target


def build_atomically(target: Path, save: Callable[[Path], None]) -> None:
    """`save(folder)` into a staging folder beside `target`, then renamed to it: a crash mid-build
    leaves nothing half built behind (the next start builds it again)."""
    staging = target.with_name(target.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("building %s (once)", target)
    save(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def build_tiny_pipeline():  # type: ignore[no-untyped-def]
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        unet = UNet2DConditionModel(**tiny_config.UNET)
        vae = AutoencoderKL(**tiny_config.VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**tiny_config.TEXT_ENCODER))
        _make_text_sensitive(unet, text_encoder)
        vocab, merges = clip_vocab()
        tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
        scheduler = PNDMScheduler.from_config(SCHEDULER_CONFIG)
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
    finally:
        torch.random.set_rng_state(generator_state)


@torch.no_grad()
def _make_text_sensitive(unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    text_encoder.text_model.embeddings.token_embedding.weight.mul_(50)
    for name, module in unet.named_modules():
        if name.endswith("attn2"):
            module.to_k.weight.mul_(4)
            module.to_v.weight.mul_(4)
    for module in [*unet.modules(), *text_encoder.modules()]:
        if isinstance(module, torch.nn.LayerNorm | torch.nn.GroupNorm) and module.weight is not None:
            module.weight.copy_(1 + 0.5 * torch.randn_like(module.weight))
            module.bias.copy_(0.2 * torch.randn_like(module.bias))
    # A1111's emphasis divides by the mean of the final hidden states: keep it clearly off zero.
    text_encoder.text_model.final_layer_norm.bias.add_(0.5)


@lru_cache(maxsize=1)
def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocab and merges, rebuilt from open-clip-torch's BPE file the way OpenAI's
    SimpleTokenizer (and so Hugging Face's vocab.json) builds them: 49408 tokens."""
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("open-clip-torch is not installed; it carries the CLIP BPE merges (pip install -e .)")
    bpe = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges  # type: ignore[return-value]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))
