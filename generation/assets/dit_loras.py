"""FLUX.1 LoRA files (which Chroma takes too), recognised from their safetensors header alone.
Torch-free, like `generation.assets.files`, which asks this module first.

Formats people publish, as their keys look (diffusers' `FluxLoraLoaderMixin.lora_state_dict`
converts all three; the engine loads them through it, generation.assets.adapters):
- diffusers/peft (ai-toolkit, SimpleTuner, diffusers' `save_lora_weights`):
  `transformer.<diffusers module>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r] (optional
  `.alpha`), CLIP `text_encoder.text_model.encoder.layers.N.self_attn.q_proj.lora_A.weight`;
- kohya (sd-scripts): `lora_unet_<BFL module, `_` for `.`>.lora_down.weight` / `.lora_up.weight` /
  `.alpha`, e.g. `lora_unet_double_blocks_0_img_attn_qkv` (q, k and v fused in one layer),
  `lora_unet_single_blocks_0_linear1` (q, k, v and the MLP's input fused); CLIP `lora_te1_`, T5 `lora_te3_`;
- ComfyUI / BFL names: `diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight` (or
  `lora_down`/`lora_up`), CLIP `text_encoders.clip_l.transformer.`, T5 `text_encoders.t5xxl.transformer.`.
The block names are FLUX.1's, which Chroma keeps: a file says "FLUX.1 layout", and which model it
fits (FLUX.1 or Chroma, at which width) is the fit check's answer (generation.assets.fit).

T5 layers are left out (diffusers does not load T5 LoRAs for FLUX.1); the upload reply says so.
DoRA (`dora_scale`) and LyCORIS (LoHa, LoKr) files for FLUX.1 are refused: diffusers would drop
the DoRA part silently, and it has no LyCORIS loader for FLUX.1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from generation.assets.fit import layer_of
from generation.assets.safetensors_header import AssetError, TensorEntry, quote

# The FLUX.1/Chroma transformer's modules as diffusers names them (dots), and as BFL/kohya do (`_`).
_DIFFUSERS_MODULE = re.compile(
    r"transformer_blocks\.\d+\.(?:attn\.(?:to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)|ff(?:_context)?\.net\.(?:0\.proj|2)"
    r"|norm1(?:_context)?\.linear)"
    r"|single_transformer_blocks\.\d+\.(?:attn\.to_[qkv]|proj_mlp|proj_out|norm\.linear)"
    r"|x_embedder|context_embedder|proj_out|norm_out\.linear|time_text_embed\.(?:timestep|guidance|text)_embedder\.linear_[12]"
    r"|distilled_guidance_layer\.(?:in_proj|out_proj|layers\.\d+\.linear_[12])"
)
# What diffusers' kohya/BFL conversion (`_convert_kohya_flux_lora_to_diffusers`) maps.
_BFL_MODULE = re.compile(
    r"double_blocks_\d+_(?:img|txt)_(?:attn_qkv|attn_proj|mlp_0|mlp_2|mod_lin)|single_blocks_\d+_(?:linear1|linear2|modulation_lin)"
    r"|img_in|txt_in|(?:time_in|vector_in|guidance_in)_(?:in_layer|out_layer)|final_layer_linear|final_layer_adaLN_modulation_1"
)
_CLIP_MODULE = re.compile(r"text_model_encoder_layers_\d+_(?:self_attn_(?:q|k|v|out)_proj|mlp_fc[12])")
# A key is FLUX-style when it names one of FLUX's own blocks in one of the three layouts.
_FLUX_MARK = re.compile(
    r"transformer\.(?:(?:single_transformer_blocks|transformer_blocks)\.\d+|x_embedder|context_embedder|time_text_embed|norm_out)\."
    r"|lora_unet_(?:(?:double_blocks|single_blocks)_\d+|img_in|txt_in|time_in|vector_in|guidance_in|final_layer)_?"
    r"|diffusion_model\.(?:(?:double_blocks|single_blocks)\.\d+|img_in|txt_in|time_in|vector_in|guidance_in|final_layer)\."
)

# Layouts: (format, key pattern -> component, module, suffix)
_LAYOUTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "diffusers",
        re.compile(
            r"(?P<prefix>transformer|text_encoder)\.(?P<module>.+?)"
            r"\.(?P<suffix>lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_down\.weight|lora_up\.weight|alpha"
            r"|lora_magnitude_vector(?:\.weight)?)"
        ),
    ),
    (
        "kohya",
        re.compile(
            r"(?P<prefix>lora_unet|lora_te1?|lora_te[23])_(?P<module>[A-Za-z0-9_]+)\.(?P<suffix>lora_down\.weight|lora_up\.weight|alpha|dora_scale|[a-z0-9_]+)"
        ),
    ),
    (
        "comfyui",
        re.compile(
            r"(?P<prefix>diffusion_model|text_encoders\.clip_l\.transformer|text_encoders\.t5xxl\.transformer)\.(?P<module>.+?)"
            r"\.(?P<suffix>lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha|dora_scale)"
        ),
    ),
)
_COMPONENTS = {
    "transformer": "transformer",
    "text_encoder": "te1",
    "lora_unet": "transformer",
    "lora_te": "te1",
    "lora_te1": "te1",
    "lora_te2": "t5",
    "lora_te3": "t5",
    "diffusion_model": "transformer",
    "text_encoders.clip_l.transformer": "te1",
    "text_encoders.t5xxl.transformer": "t5",
}
_ROLES = {
    "lora_A.weight": "down",
    "lora_down.weight": "down",
    "lora_B.weight": "up",
    "lora_up.weight": "up",
    "lora_B.bias": "bias",
    "alpha": "alpha",
    "lora_magnitude_vector": "magnitude",
    "lora_magnitude_vector.weight": "magnitude",
}
FORMAT_NAMES = {"comfyui": "ComfyUI/BFL-named LoRA"}
_CLIP_PREFIXES = ("lora_te_", "lora_te1_", "text_encoder.", "text_encoders.clip_l.transformer.")
_ATTENTION_OUT = re.compile(r"attn_(?:to_[qkv]|to_out_0|add_[qkv]_proj|to_add_out)$|_attn_proj$")
_FUSED_IN = re.compile(r"_attn_qkv$|_linear1$")


def is_flux_key(key: str) -> bool:
    """Whether a LoRA key names a FLUX.1 block (diffusers, kohya or BFL naming)."""
    return _FLUX_MARK.match(key) is not None


def is_flux_lora(keys: Iterable[str]) -> bool:
    return any(is_flux_key(key) for key in keys)


def is_clip_only(keys: Iterable[str]) -> bool:
    """Whether a LoRA changes only a (first) CLIP text encoder: SD 1.x's CLIP-L is FLUX.1's too, so
    such a file goes on FLUX.1 where its layers fit (the fit check decides, as for any file)."""
    keys = list(keys)
    return bool(keys) and all(key.startswith(_CLIP_PREFIXES) for key in keys)


@dataclass
class DiTModule:
    component: str  # transformer, te1 (FLUX.1's CLIP), t5 (left out)
    name: str  # as the file names it, `.` written `_`
    parts: dict[str, TensorEntry]  # by role: down, up, alpha, bias, magnitude


def flux_lora(shown: str, tensors: dict[str, TensorEntry]) -> dict[str, Any] | None:
    """The `AssetInfo` fields of a FLUX.1 LoRA file (format, architecture "flux", rank, modules,
    components, layers, transformer_width, left_out); None when its keys are not FLUX.1's.
    AssetError when they are but the file is not one sdbot can load."""
    if not is_flux_lora(tensors):
        return None
    formats: dict[str, dict[str, DiTModule]] = {}
    for key, entry in tensors.items():
        for fmt, pattern in _LAYOUTS:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            prefix, module, suffix = match["prefix"], match["module"], match["suffix"]
            component = _COMPONENTS[prefix]
            name = module.replace(".", "_")
            if suffix == "dora_scale":
                raise AssetError(
                    f"{shown} is a DoRA LoRA for FLUX.1 (`dora_scale`), which sdbot does not load yet "
                    "(diffusers would drop its DoRA part). Upload a plain LoRA."
                )
            if suffix not in _ROLES:
                what = "a LyCORIS (LoHa/LoKr)" if suffix.startswith(("hada_", "lokr_")) else "an unknown"
                raise AssetError(f"{shown} is {what} file for FLUX.1 ({quote(key)}); sdbot takes plain LoRAs for FLUX.1.")
            if not _known_module(fmt, component, module, name):
                raise AssetError(
                    f"{shown} is a FLUX.1 LoRA, but it changes {quote(module)}, a layer diffusers does not convert "
                    "for FLUX.1; sdbot can't load it."
                )
            found = formats.setdefault(fmt, {}).setdefault(f"{prefix}.{name}", DiTModule(component, name, {}))
            role = _ROLES[suffix]
            if role in found.parts:
                raise AssetError(f"{shown} is damaged: layer {quote(module)} has two {role} weights.")
            found.parts[role] = entry
            break
        else:
            raise AssetError(
                f"{shown} looks like a FLUX.1 LoRA but also holds tensors sdbot does not know, such as {quote(key)}. "
                "Upload a plain diffusers, kohya or ComfyUI LoRA file."
            )
    if len(formats) > 1:
        raise AssetError(f"{shown} mixes {' and '.join(sorted(formats))} key names; convert it to one of them and upload it again.")
    ((fmt, by_name),) = formats.items()
    modules = list(by_name.values())
    for module in modules:
        check_pair(shown, module.name, module.parts)
    kept = sorted((m for m in modules if m.component != "t5"), key=lambda m: m.component != "transformer")  # the transformer's first
    if not kept:
        raise AssetError(f"{shown} changes only FLUX.1's T5 text encoder, which diffusers does not load LoRAs for.")
    layers = tuple(layer for m in kept if (layer := layer_of(m.component, m.name, m.parts)) is not None)
    return {
        "format": fmt,
        "architecture": "flux",
        "rank": max(m.parts["down"].shape[0] for m in kept),
        "modules": len(kept),
        "components": tuple(c for c in ("transformer", "te1") if any(m.component == c for m in kept)),
        "layers": layers,
        "transformer_width": _width(kept),
        "left_out": len(modules) - len(kept),
    }


def check_pair(shown: str, name: str, parts: dict[str, TensorEntry]) -> None:
    """AssetError unless a layer has a down [r, in] and an up [out, r] weight of one rank r > 0, and
    at most a single-number alpha."""
    if "down" not in parts or "up" not in parts:
        raise AssetError(f"{shown} is damaged or incomplete: layer {quote(name)} needs both its down (A) and up (B) weights.")
    down, up = parts["down"].shape, parts["up"].shape
    if len(down) != 2 or len(up) != 2 or down[0] != up[1] or down[0] == 0:
        raise AssetError(
            f"{shown} is damaged or incomplete: layer {quote(name)}: its down {list(down)} and up {list(up)} weights do not fit together."
        )
    alpha = parts.get("alpha")
    if alpha is not None and math.prod(alpha.shape) != 1:
        raise AssetError(f"{shown} is damaged or incomplete: layer {quote(name)}: its alpha is not a single number.")


def _known_module(fmt: str, component: str, module: str, flat: str) -> bool:
    if component == "t5":
        return True
    if component == "te1":
        return _CLIP_MODULE.fullmatch(flat) is not None
    if fmt == "diffusers":
        return _DIFFUSERS_MODULE.fullmatch(module) is not None
    return _BFL_MODULE.fullmatch(flat) is not None


def _width(modules: list[DiTModule]) -> int | None:
    """The transformer's inner width, from its attention layers (None when they don't say, or disagree)."""
    widths = set()
    for module in modules:
        if module.component != "transformer":
            continue
        if _ATTENTION_OUT.search(module.name):
            widths.add(module.parts["up"].shape[0])
        elif _FUSED_IN.search(module.name):
            widths.add(module.parts["down"].shape[1])
    return widths.pop() if len(widths) == 1 else None
