"""FLUX.1 LoRA files for tests, built here from a transformer (and CLIP) of any size: random
weights, large enough to change a picture clearly, in the three layouts people publish:

- diffusers/peft (`transformer.<module>.lora_A.weight`, `text_encoder.` for CLIP), as ai-toolkit
  and diffusers' `save_lora_weights` write them;
- kohya (`lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`, `.alpha`; CLIP `lora_te1_`),
  written from the diffusers file with the inverse of diffusers' own kohya conversion: q, k and v
  of a block fused into one layer whose down weight stacks theirs and whose up weight holds theirs
  on its diagonal (diffusers splits such a "sparse" layer back exactly);
- ComfyUI/BFL (`diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`, CLIP
  `text_encoders.clip_l.transformer.`).
The three hold the same LoRA: loaded into diffusers they give the same pixels (the tests check)."""

from __future__ import annotations

import re

import torch

RANK = 4
# Fused BFL layers: their parts as diffusers names them, in the fused weight's order.
DOUBLE_FUSED = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}


def make_flux_lora(
    transformer: torch.nn.Module,
    seed: int,
    *,
    text_encoder: torch.nn.Module | None = None,
    include: str = r".*",
    exclude: str = r"(?!)",
    scale: float = 0.5,
    rank: int = RANK,
) -> dict[str, torch.Tensor]:
    """A diffusers-format LoRA on the transformer's Linear layers whose path matches `include` and
    not `exclude` (and on CLIP's attention, with `text_encoder`): A ~ N(0, scale²/in), B ~ N(0, scale²)."""
    generator = torch.Generator().manual_seed(seed)
    found: dict[str, torch.Tensor] = {}
    parts = [("transformer", transformer, include, exclude)]
    if text_encoder is not None:
        parts.append(("text_encoder", text_encoder, r".*self_attn\.(?:q|k|v|out)_proj", r"(?!)"))
    for prefix, model, wanted, unwanted in parts:
        for path, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or not re.fullmatch(wanted, path) or re.fullmatch(unwanted, path):
                continue
            down = torch.randn(rank, module.in_features, generator=generator) * scale / module.in_features**0.5
            up = torch.randn(module.out_features, rank, generator=generator) * scale
            found[f"{prefix}.{path}.lora_A.weight"] = down.contiguous()
            found[f"{prefix}.{path}.lora_B.weight"] = up.contiguous()
    return found


def bfl_names(transformer: torch.nn.Module) -> dict[str, str]:
    """diffusers module path -> BFL module path, for the modules that are one module in both."""
    from generation.models.dit_shapes import transformer_layers

    family = "chroma" if type(transformer).__name__.startswith("Chroma") else "flux"
    layers, _ = transformer_layers(family, dict(transformer.config))
    return {path: layer.sgm for path, layer in layers.items() if layer.sgm}


def _swap_scale_shift(weight: torch.Tensor) -> torch.Tensor:
    shift, scale = weight.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def to_bfl(lora: dict[str, torch.Tensor], transformer: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The LoRA's transformer layers by BFL module path: (down [r, in], up [out, r]), fused layers
    block-diagonal. Layers of a fused group must all be in the LoRA (or none)."""
    pairs = {
        key[: -len(".lora_A.weight")]: (lora[key], lora[key.replace("lora_A", "lora_B")]) for key in lora if key.endswith(".lora_A.weight")
    }
    names = bfl_names(transformer)
    found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    used: set[str] = set()
    blocks = [("transformer_blocks", "double_blocks", DOUBLE_FUSED), ("single_transformer_blocks", "single_blocks", SINGLE_FUSED)]
    for ours, theirs, groups in blocks:
        for i in range(len(getattr(transformer, ours))):
            for bfl, members in groups.items():
                keys = [f"transformer.{ours}.{i}.{member}" for member in members]
                present = [k for k in keys if k in pairs]
                if not present:
                    continue
                assert len(present) == len(keys), f"fused {theirs}.{i}.{bfl} needs all of {members}"
                downs, ups = zip(*(pairs[k] for k in keys), strict=True)
                found[f"{theirs}.{i}.{bfl}"] = (torch.cat(downs), torch.block_diag(*ups))
                used |= set(keys)
    for key, (down, up) in pairs.items():
        if key in used or not key.startswith("transformer."):
            continue
        path = key[len("transformer.") :]
        if path == "norm_out.linear":
            up = _swap_scale_shift(up)  # diffusers swaps BFL's (scale, shift) halves when it converts
        found[names[path]] = (down, up)
    return found


def text_pairs(lora: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        key[len("text_encoder.") : -len(".lora_A.weight")]: (lora[key], lora[key.replace("lora_A", "lora_B")])
        for key in lora
        if key.startswith("text_encoder.") and key.endswith(".lora_A.weight")
    }


def to_kohya_flux(lora: dict[str, torch.Tensor], transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """sd-scripts' FLUX.1 naming, with each layer's alpha = its rank (scale 1, as in the peft file)."""
    found: dict[str, torch.Tensor] = {}

    def put(name: str, down: torch.Tensor, up: torch.Tensor) -> None:
        found[f"{name}.lora_down.weight"] = down.contiguous()
        found[f"{name}.lora_up.weight"] = up.contiguous()
        found[f"{name}.alpha"] = torch.tensor(float(down.shape[0]))

    for path, (down, up) in to_bfl(lora, transformer).items():
        put("lora_unet_" + path.replace(".", "_"), down, up)
    for path, (down, up) in text_pairs(lora).items():
        put("lora_te1_" + path.replace(".", "_"), down, up)
    return found


def to_comfyui_flux(lora: dict[str, torch.Tensor], transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """BFL module names under `diffusion_model.`, CLIP under `text_encoders.clip_l.transformer.`, peft's lora_A/lora_B."""
    found: dict[str, torch.Tensor] = {}
    for prefix, pairs in (("diffusion_model.", to_bfl(lora, transformer)), ("text_encoders.clip_l.transformer.", text_pairs(lora))):
        for path, (down, up) in pairs.items():
            found[f"{prefix}{path}.lora_A.weight"] = down.contiguous()
            found[f"{prefix}{path}.lora_B.weight"] = up.contiguous()
    return found


def widened(lora: dict[str, torch.Tensor], factor: int = 2) -> dict[str, torch.Tensor]:
    """The same layers for a transformer `factor` times wider (what a LoRA made for a bigger model looks like)."""
    return {key: torch.randn(*(d * factor if d != RANK else d for d in value.shape)) * 0.1 for key, value in lora.items()}
