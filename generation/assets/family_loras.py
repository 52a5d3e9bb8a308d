"""LoRA files for SD 3.5, Qwen-Image, Z-Image, FLUX.2, Wan and LTX-Video, recognised from their
safetensors header alone (torch-free; `generation.assets.files` asks this module before `dit_loras`,
which does FLUX.1).

The engine loads them through the family's own diffusers loader (`SD3LoraLoaderMixin`,
`QwenImageLoraLoaderMixin`, `ZImageLoraLoaderMixin`, `Flux2LoraLoaderMixin`,
`WanLoraLoaderMixin`, `LTXVideoLoraLoaderMixin`), which converts the formats people publish; this
module accepts what those converters take:
- diffusers/peft (ai-toolkit, SimpleTuner, musubi-tuner exports, diffusers' `save_lora_weights`):
  `transformer.<diffusers module>.lora_A.weight` / `.lora_B.weight` (optional `.alpha`);
- ComfyUI/ai-toolkit: `diffusion_model.<module>.lora_A.weight` (or `lora_down`/`lora_up`), with
  diffusers' module names for Qwen-Image and Z-Image (Z-Image's `attention.out` too) and BFL's for
  FLUX.2 (`double_blocks.0.img_attn.qkv`, `single_blocks.0.linear1`);
- kohya: `lora_unet_<module, `_` for `.`>.lora_down.weight` / `.lora_up.weight` / `.alpha`.
- SD 3.5's kohya and ComfyUI files name SAI's blocks (`joint_blocks.0.x_block.attn.qkv`), which
  diffusers 0.42.1 does not convert for a LoRA: `generation.assets.dit_convert` does.
- Wan's ComfyUI files name Wan's own modules (`diffusion_model.blocks.0.self_attn.q`, `ffn.0`,
  `cross_attn.k_img`), musubi-tuner's are kohya-style (`lora_unet_blocks_0_self_attn_q`, with an
  alpha for every layer); both may carry `.diff_b` bias offsets (lightx2v, CausVid), which diffusers
  loads as LoRA biases, and `.diff` offsets of norm layers, which it drops (so they are left out and
  counted here). LTX-Video's ComfyUI files are diffusers' names under `diffusion_model.`; diffusers
  converts no kohya file for LTX-Video, so those are refused with the reason.
Text-encoder layers are left out (these loaders load the transformer alone; SD 3.5's
CLIP layers are not checked here, so they are left out too), and the upload reply says how many.
DoRA and LyCORIS files are refused: the loaders would drop DoRA's part, and LyCORIS is not handled
the same way across them.

Which family a file is for: the names say it for Z-Image (`layers.N.attention`, the refiners),
Qwen-Image (`img_mlp`, `txt_mod`), FLUX.2 (`to_qkv_mlp_proj`, `ff.linear_in`, the shared modulation,
or BFL names whose MLP shapes are FLUX.2's 3x SwiGLU, not FLUX.1's 4x GELU) and SD 3.5 (`attn2`,
SAI's blocks). A file that changes only the joint blocks' attention (`transformer_blocks.N.attn.to_q`
in diffusers' names: FLUX.1, SD 3.5, Qwen-Image and FLUX.2 all have them) says its family only by its
width where that is one family's own (SD 3.5's 1536 and 2432); otherwise its family is left open and
the fit check against the model decides (generation.assets.fit).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.models import ARCHITECTURE_NAMES
from generation.assets.dit_loras import check_pair
from generation.assets.fit import layer_of
from generation.assets.safetensors_header import AssetError, TensorEntry, quote

FAMILIES = ("sd3", "qwen", "zimage", "flux2", "wan", "ltx")
_KEY = re.compile(
    r"(?P<prefix>transformer\.|diffusion_model\.|lora_unet_|text_encoders?(?:_\d)?\.|lora_te\d?_)(?P<module>.+?)"
    r"\.(?P<suffix>lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha|dora_scale|lora_magnitude_vector"
    r"|(?:hada|lokr)_[a-z0-9_]+|lora_B\.bias|diff_b|diff)"
)
_FORMATS = {"transformer.": "diffusers", "diffusion_model.": "comfyui", "lora_unet_": "kohya"}
_ROLES = {"lora_A.weight": "down", "lora_down.weight": "down", "lora_B.weight": "up", "lora_up.weight": "up", "alpha": "alpha"}
_BIASES = ("diff_b", "lora_B.bias")  # a layer's bias offset (Wan's lightx2v and CausVid LoRAs)

# What names a family (the module, as the file writes it, `.` or `_`).
_MARKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Wan's blocks are `blocks.N` (diffusers' and its own names); LTX-Video's self-attention is
    # `attn1` (before SD 3.5, whose second attention is `attn2` as LTX-Video's cross-attention is).
    (
        "wan",
        re.compile(
            r"^blocks[._]\d+[._](?:attn[12]|ffn|self_attn|cross_attn)[._]|^condition_embedder[._]"
            r"|^(?:head[._]head|time_projection|text_embedding|time_embedding|img_emb)(?:[._]|$)"
        ),
    ),
    ("ltx", re.compile(r"^transformer_blocks[._]\d+[._]attn1[._]|^(?:patchify_proj|adaln_single|caption_projection)(?:[._]|$)")),
    # first: SAI's names include a `t_embedder`, as Z-Image's do
    ("sd3", re.compile(r"^(?:joint_blocks|y_embedder)[._]|^transformer_blocks[._]\d+[._]attn2[._]")),
    (
        "zimage",
        re.compile(
            r"^(?:(?:layers|noise_refiner|context_refiner)[._]\d+[._](?:attention|feed_forward|adaLN_modulation)"
            r"|all_x_embedder|all_final_layer|cap_embedder|t_embedder)"
        ),
    ),
    (
        "flux2",
        re.compile(
            r"to_qkv_mlp_proj|^single_transformer_blocks[._]\d+[._]attn[._]to_out|[._]linear_(?:in|out)$|_stream_modulation|^time_guidance_embed"
        ),
    ),
    ("qwen", re.compile(r"^transformer_blocks[._]\d+[._](?:img|txt)_(?:mlp|mod)")),
)
# FLUX.1's own names (dit_loras takes those files): its single blocks and per-block modulation.
_FLUX1 = re.compile(
    r"^single_transformer_blocks[._]\d+[._](?:proj_mlp|proj_out|norm[._]linear)|^time_text_embed[._]guidance"
    r"|[._](?:img|txt)_mod[._]lin$|^single_blocks[._]\d+[._]modulation|^vector_in"
)
# BFL names (FLUX.1 and FLUX.2 share them): FLUX.2 when an MLP's shape is its 3x SwiGLU
# (in/out ratios: FLUX.1's linear1 7, linear2 1/5, mlp.0 4, mlp.2 1/4).
_BFL = re.compile(r"^(?:double_blocks|single_blocks)[._]\d+[._]")
_FLUX2_RATIOS = (
    (re.compile(r"linear1$"), 9.0),
    (re.compile(r"linear2$"), 0.25),
    (re.compile(r"_mlp[._]0$"), 6.0),
    (re.compile(r"_mlp[._]2$"), 1 / 3),
)
# Only joint-block attention and MLPs in diffusers' names: several families have those.
_JOINT = re.compile(r"^transformer_blocks[._]\d+[._](?:attn[._]|ff(?:_context)?[._]net|norm1)")
_ATTENTION_IN = re.compile(r"[._]attn1?[._](?:to_[qkv]|add_[qkv]_proj)$|[._]attention[._]to_q$|[._]self_attn[._][qkv]$")
# SD 3.5's own inner widths: Medium (24 x 64) and Large (38 x 64).
SD3_WIDTHS = (1536, 2432)


@dataclass
class _Module:
    prefix: str
    name: str
    parts: dict[str, TensorEntry] = field(default_factory=dict)


def transformer_family(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The family a LoRA's keys (with their shapes) are for: one of FAMILIES, "flux" (FLUX.1's own
    names), "open" (joint-block layers several families share; the model decides), or None when
    the names are none of these (FLUX.1's diffusers names, which `dit_loras` tells, or a UNet's)."""
    modules: dict[str, dict[str, Sequence[int]]] = {}
    for key, shape in shapes.items():
        match = _KEY.fullmatch(key)
        if match and match["prefix"] in _FORMATS:
            modules.setdefault(match["module"], {})[_ROLES.get(match["suffix"], match["suffix"])] = shape
    if not modules:
        return None
    for family, mark in _MARKS:
        if any(mark.search(name) for name in modules):
            return family
    if any(_FLUX1.search(name) for name in modules):
        return "flux"
    if any(_BFL.match(name) for name in modules):
        return "flux2" if _flux2_shapes(modules) else "flux"
    if all(_JOINT.match(name) for name in modules):
        widths = {parts["down"][1] for name, parts in modules.items() if _ATTENTION_IN.search(name) and len(parts.get("down", ())) == 2}
        if len(widths) == 1 and widths.pop() in SD3_WIDTHS:
            return "sd3"
        return "open"
    return None  # FLUX.1's diffusers names (dit_loras tells), or a UNet model's


def _flux2_shapes(modules: Mapping[str, Mapping[str, Sequence[int]]]) -> bool:
    for name, parts in modules.items():
        down, up = parts.get("down"), parts.get("up")
        if not down or not up or len(down) != 2 or len(up) != 2 or not down[1]:
            continue
        for pattern, ratio in _FLUX2_RATIOS:
            if pattern.search(name) and math.isclose(up[0] / down[1], ratio, rel_tol=1e-3):
                return True
    return False


def family_lora(shown: str, tensors: dict[str, TensorEntry]) -> dict[str, Any] | None:
    """The `AssetInfo` fields of a LoRA for one of these families, or one whose family only the
    model can tell ("open": architecture None); None when its keys are another family's (FLUX.1,
    the UNet models). AssetError when it is one of these families' files that sdbot can't load."""
    family = transformer_family({key: entry.shape for key, entry in tensors.items()})
    if family is None or family == "flux":
        return None
    label = ARCHITECTURE_NAMES.get(family, "a transformer model") if family != "open" else "a transformer model"
    modules: dict[str, _Module] = {}
    left_out: set[tuple[str, str]] = set()  # (what it is, its name)
    formats = set()
    for key, entry in tensors.items():
        match = _KEY.fullmatch(key)
        if match is None:
            raise AssetError(
                f"{shown} looks like a LoRA for {label} but also holds tensors sdbot does not know, such as {quote(key)}. "
                "Upload a plain diffusers, kohya or ComfyUI LoRA file."
            )
        prefix, module, suffix = match["prefix"], match["module"], match["suffix"]
        if prefix not in _FORMATS:
            left_out.add(("text-encoder", f"{prefix}{module}"))
            continue
        if suffix in ("dora_scale", "lora_magnitude_vector"):
            raise AssetError(
                f"{shown} is a DoRA LoRA for {label}, which sdbot does not load (diffusers would drop its DoRA part). Upload a plain LoRA."
            )
        if suffix.startswith(("hada_", "lokr_")):
            raise AssetError(f"{shown} is a LyCORIS (LoHa/LoKr) file for {label}; sdbot takes plain LoRAs for {label}.")
        if suffix == "diff" and family == "wan" and "norm" in module:
            left_out.add(("norm", module))  # a norm layer's offset, which diffusers' Wan loader drops
            continue
        if suffix in _BIASES and family == "wan":
            suffix = "bias"  # loaded as the LoRA's bias (lora_B.bias)
        elif suffix not in _ROLES:
            raise AssetError(f"{shown} holds {quote(key)}, a kind of LoRA weight sdbot does not load for {label}.")
        formats.add(_FORMATS[prefix])
        found = modules.setdefault(module, _Module(prefix, module))
        role = _ROLES.get(suffix, suffix)
        if role in found.parts:
            raise AssetError(f"{shown} is damaged: layer {quote(module)} has two {role} weights.")
        found.parts[role] = entry
    if len(formats) > 1:
        raise AssetError(f"{shown} mixes {' and '.join(sorted(formats))} key names; convert it to one of them and upload it again.")
    if not modules:
        raise AssetError(f"{shown} changes only text encoders, and {label} LoRAs load onto its transformer alone.")
    (fmt,) = formats
    if family == "ltx" and fmt == "kohya":
        raise AssetError(
            f"{shown} is a kohya-style LoRA for {label}, which diffusers does not convert. Upload it in diffusers' "
            "(`transformer.…lora_A.weight`) or ComfyUI's (`diffusion_model.…`) format."
        )
    for module in modules.values():
        if set(module.parts) == {"bias"}:
            raise AssetError(
                f"{shown} holds only a bias offset for layer {quote(module.name)}, without its LoRA weights; sdbot loads "
                f"{label} LoRA layers with their down and up weights."
            )
        check_pair(shown, module.name, module.parts)
    layers = tuple(layer for m in modules.values() if (layer := layer_of("transformer", m.name, m.parts)) is not None)
    return {
        "format": fmt,
        "architecture": None if family == "open" else family,
        "rank": max(m.parts["down"].shape[0] for m in modules.values()),
        "modules": len(modules),
        "components": ("transformer",),
        "layers": layers,
        "transformer_width": _width(modules.values()),
        "left_out": len(left_out),
        "left_out_what": " and ".join(sorted({kind for kind, _ in left_out})) or "text-encoder",
    }


def _width(modules: Sequence[_Module] | Any) -> int | None:
    """The transformer's inner width, from the attention layers' inputs (None when they don't say or disagree)."""
    widths = {
        m.parts["down"].shape[1]
        for m in modules
        if _ATTENTION_IN.search(m.name) or m.name.endswith(("_attn_qkv", ".attn.qkv", "img_attn.qkv"))
    }
    return widths.pop() if len(widths) == 1 else None
