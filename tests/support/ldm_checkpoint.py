"""Write a diffusers SD 1.x pipeline as one original-layout (LDM) `.safetensors` checkpoint, the
format Civitai ships, so the single-file loading path can be tested offline with the tiny model.

The key mapping is the inverse of diffusers' own `convert_ldm_*` functions
(diffusers/loaders/single_file_utils.py); the test that loads the file back and compares pixels
with the folder is what proves it right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(rest: str, table: dict[str, str]) -> str:
    head, _, tail = rest.rpartition(".")  # tail is weight / bias
    return f"{table.get(head, head)}.{tail}"


def unet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int, attention_blocks: set[int]) -> dict[str, torch.Tensor]:
    per = layers_per_block + 1
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        top = key.rsplit(".", 1)[0]
        if top in _UNET_TOP:
            ldm = f"{_UNET_TOP[top]}.{parts[-1]}"
        elif parts[0] == "down_blocks":
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                ldm = f"input_blocks.{1 + block * per + index}.0.{_rename(rest, _RESNET)}"
            elif kind == "attentions":
                ldm = f"input_blocks.{1 + block * per + index}.1.{rest}"
            else:  # downsamplers.0.conv.*
                ldm = f"input_blocks.{1 + block * per + layers_per_block}.0.op.{parts[-1]}"
        elif parts[0] == "mid_block":
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                ldm = f"middle_block.{0 if index == 0 else 2}.{_rename(rest, _RESNET)}"
            else:
                ldm = f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                ldm = f"output_blocks.{block * per + index}.0.{_rename(rest, _RESNET)}"
            elif kind == "attentions":
                ldm = f"output_blocks.{block * per + index}.1.{rest}"
            else:  # upsamplers.0.conv.*: after the attention when the block has one
                slot = 2 if block in attention_blocks else 1
                ldm = f"output_blocks.{block * per + layers_per_block}.{slot}.conv.{parts[-1]}"
        else:
            raise KeyError(f"no LDM name for UNet key {key}")
        out["model.diffusion_model." + ldm] = value
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        side = parts[0]
        if parts[1] in ("down_blocks", "up_blocks"):
            block = int(parts[2]) if side == "encoder" else blocks - 1 - int(parts[2])
            name = "down" if side == "encoder" else "up"
            if parts[3] == "resnets":
                rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                ldm = f"{side}.{name}.{block}.block.{parts[4]}.{rest}"
            else:  # downsamplers / upsamplers .0.conv.*
                ldm = f"{side}.{name}.{block}.{'downsample' if side == 'encoder' else 'upsample'}.conv.{parts[-1]}"
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
                ldm = f"{side}.mid.block_{int(parts[3]) + 1}.{rest}"
            else:
                ldm = f"{side}.mid.attn_1.{_rename('.'.join(parts[4:]), _VAE_ATTENTION)}"
                if value.ndim == 2:  # LDM keeps these as 1x1 convolutions
                    value = value[:, :, None, None]
        elif parts[1] == "conv_norm_out":
            ldm = f"{side}.norm_out.{parts[-1]}"
        else:  # conv_in, conv_out, quant_conv, post_quant_conv
            ldm = key
        out["first_stage_model." + ldm] = value
    return out


def save_ldm_checkpoint(pipe: Any, path: Path) -> None:
    unet_config = pipe.unet.config
    attention_blocks = {i for i, kind in enumerate(unet_config.up_block_types) if "CrossAttn" in kind}
    state = {
        **unet_to_ldm(pipe.unet.state_dict(), unet_config.layers_per_block, attention_blocks),
        **vae_to_ldm(pipe.vae.state_dict(), len(pipe.vae.config.down_block_types)),
        **{f"cond_stage_model.transformer.{k}": v for k, v in pipe.text_encoder.state_dict().items()},
    }
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
