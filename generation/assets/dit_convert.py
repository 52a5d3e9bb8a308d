"""A transformer LoRA written in the original model's names (SAI's for SD 3.5: kohya's
`lora_unet_joint_blocks_0_x_block_attn_qkv`, ComfyUI's `diffusion_model.joint_blocks.0.x_block.attn.qkv`)
turned into diffusers' names, driven by the family's layer table (generation.models.dit_layers).

diffusers 0.42.1 converts such files for FLUX.1, FLUX.2, Qwen-Image and Z-Image, but not for SD 3.5,
whose loader takes its own names only; this is the conversion its single-file loader does for the
model's weights (`convert_sd3_transformer_checkpoint_to_diffusers`), done for a LoRA's pairs:
- a layer that is one module in both (`x_block.attn.proj` -> `attn.to_out.0`) keeps its pair; where
  the original stores a modulation's halves as (shift, scale) and diffusers as (scale, shift), the up
  weight's halves are swapped (the last block's context modulation, the final layer's);
- a fused layer (`x_block.attn.qkv`) becomes one pair per part: the same down weight, and the up
  weight's rows for that part (exact: the part's change is those rows of up @ down);
- an `alpha` is folded into the up weight (scale alpha / rank), as kohya applies it.
Names may also be diffusers' own, flat or dotted; they pass through.
"""

from __future__ import annotations

import re

import torch

from generation.models.dit_layers import Layers

_PREFIXES = ("transformer.", "diffusion_model.", "lora_unet_")
_KEY = re.compile(r"(?P<module>.+?)\.(?P<suffix>lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha)")
_ROLES = {"lora_A.weight": "down", "lora_down.weight": "down", "lora_B.weight": "up", "lora_up.weight": "up", "alpha": "alpha"}


class ConversionError(ValueError):
    """A layer the table does not name, or a pair that is incomplete; the message names it."""


def from_original_names(state_dict: dict[str, torch.Tensor], table: Layers) -> dict[str, torch.Tensor]:
    """The transformer's pairs as `transformer.<diffusers path>.lora_A.weight` / `.lora_B.weight`."""
    by_flat: dict[str, tuple[str, bool]] = {}  # flat name -> (diffusers path, named by the original)
    for path, layer in table.layers.items():
        by_flat[path.replace(".", "_")] = (path, False)
        if layer.sgm:
            by_flat.setdefault(layer.sgm.replace(".", "_"), (path, True))
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        match = _KEY.fullmatch(next((key[len(p) :] for p in _PREFIXES if key.startswith(p)), key))
        if match is None:
            raise ConversionError(f"`{key}` is not a LoRA weight")
        modules.setdefault(match["module"].replace(".", "_"), {})[_ROLES[match["suffix"]]] = tensor
    out: dict[str, torch.Tensor] = {}
    for flat, parts in modules.items():
        if "down" not in parts or "up" not in parts:
            raise ConversionError(f"the layer `{flat}` lacks its down or up weight")
        down, up = parts["down"], parts["up"]
        if "alpha" in parts:
            up = up * (float(parts["alpha"]) / down.shape[0])
        if flat in table.members and table.members[flat]:
            members = table.members[flat]
            for path, rows in zip(members, up.chunk(len(members), dim=0), strict=True):
                _put(out, path, down, rows)
        elif flat in by_flat:
            path, original = by_flat[flat]
            if original and path in table.swapped:
                first, second = up.chunk(2, dim=0)
                up = torch.cat([second, first], dim=0)
            _put(out, path, down, up)
        else:
            raise ConversionError(f"the model has no layer `{flat}`")
    return out


def _put(out: dict[str, torch.Tensor], path: str, down: torch.Tensor, up: torch.Tensor) -> None:
    key = f"transformer.{path}"
    if f"{key}.lora_A.weight" in out:
        raise ConversionError(f"the layer `{path}` is changed twice (under two names)")
    out[f"{key}.lora_A.weight"] = down.contiguous()
    out[f"{key}.lora_B.weight"] = up.contiguous()
