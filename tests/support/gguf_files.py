"""GGUF transformer files for tests, written the way the published FLUX.1 / Chroma quantizations are
(city96's: original BFL key names, `general.architecture` = "flux", Q8_0 for the big 2-D weights and
float32 for the rest), from a diffusers model's state dict.

`key_layout="bfl"` inverts diffusers' `convert_flux_transformer_checkpoint_to_diffusers` and
`convert_chroma_transformer_checkpoint_to_diffusers` (diffusers 0.42.1): q/k/v are concatenated
into `qkv`, the single blocks' q/k/v/mlp into `linear1`, and the final AdaLN's scale/shift halves
are swapped back."""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import numpy as np
import torch

# diffusers name -> BFL name, for keys outside the blocks (`.weight`/`.bias` follow)
_TOP = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
    "distilled_guidance_layer.in_proj": "distilled_guidance_layer.in_proj",
    "distilled_guidance_layer.out_proj": "distilled_guidance_layer.out_proj",
}
# inside transformer_blocks.N. -> double_blocks.N.
_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
}
# inside single_transformer_blocks.N. -> single_blocks.N.
_SINGLE = {"norm.linear": "modulation.lin", "attn.norm_q": "norm.query_norm", "attn.norm_k": "norm.key_norm", "proj_out": "linear2"}
# concatenated along dim 0: BFL name -> the diffusers names, in order
_DOUBLE_CAT = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_SINGLE_CAT = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_bfl_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers FluxTransformer2DModel / ChromaTransformer2DModel state dict under the original BFL names."""
    sd = dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    for group, blocks, renames, cats in (
        ("transformer_blocks", "double_blocks", _DOUBLE, _DOUBLE_CAT),
        ("single_transformer_blocks", "single_blocks", _SINGLE, _SINGLE_CAT),
    ):
        indices = sorted({int(k.split(".")[1]) for k in sd if k.startswith(group + ".")})
        for i in indices:
            src, dst = f"{group}.{i}.", f"{blocks}.{i}."
            for bfl, parts in cats.items():
                for kind in ("weight", "bias"):
                    out[f"{dst}{bfl}.{kind}"] = torch.cat([sd.pop(f"{src}{p}.{kind}") for p in parts], dim=0)
            for name in [k for k in sd if k.startswith(src)]:
                stem, kind = name[len(src) :].rsplit(".", 1)
                bfl = renames[stem]
                out[f"{dst}{bfl}.{'scale' if bfl.endswith('_norm') else kind}"] = sd.pop(name)
    for name in list(sd):
        stem, kind = name.rsplit(".", 1)
        if m := re.fullmatch(r"distilled_guidance_layer\.layers\.(\d+)\.linear_([12])", stem):
            out[f"distilled_guidance_layer.layers.{m[1]}.{'in_layer' if m[2] == '1' else 'out_layer'}.{kind}"] = sd.pop(name)
        elif m := re.fullmatch(r"distilled_guidance_layer\.norms\.(\d+)", stem):
            out[f"distilled_guidance_layer.norms.{m[1]}.scale"] = sd.pop(name)
        else:
            tensor = sd.pop(name)
            out[f"{_TOP[stem]}.{kind}"] = _swap_halves(tensor) if stem == "norm_out.linear" else tensor
    return out


def write_gguf(
    state_dict: dict[str, torch.Tensor], path: Path, quant: str = "Q8_0", key_layout: str = "diffusers", architecture: str = "flux"
) -> Path:
    """Write `state_dict` as a GGUF file: 2-D weights whose rows are a multiple of 32 long as `quant`
    (Q8_0, or F16/F32), the rest as float32. `key_layout` "bfl" renames to the original BFL keys."""
    if key_layout not in ("diffusers", "bfl"):
        raise ValueError(f"key_layout must be 'diffusers' or 'bfl', not {key_layout!r}")
    tensors = to_bfl_keys(state_dict) if key_layout == "bfl" else state_dict
    qtype = gguf.GGMLQuantizationType[quant]
    writer = gguf.GGUFWriter(str(path), arch=architecture)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, tensor in tensors.items():
        array = tensor.detach().float().cpu().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0 and qtype != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, gguf.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_bfl_widths(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """diffusers' BFL converters split single_blocks.N.linear1 at FLUX's width (3072, hard-coded);
    scale that split to a tiny model's width (for BFL-named files of the tiny models). Everything
    else in the conversion runs as is."""
    import torch
    from diffusers.loaders import single_file_utils

    class Torch:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(torch, name)

        @staticmethod
        def split(tensor, sizes, dim: int = 0):  # type: ignore[no-untyped-def]
            if tuple(sizes) == (3072, 3072, 3072, 12288):
                width = tensor.shape[0] // 7
                sizes = (width, width, width, 4 * width)
            return torch.split(tensor, sizes, dim=dim)

    monkeypatch.setattr(single_file_utils, "torch", Torch())
