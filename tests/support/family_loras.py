"""LoRA files for the SD 3.5, Qwen-Image, Z-Image and FLUX.2 tests, built from a transformer of any
size: a diffusers/peft file (tests.support.flux_loras.make_flux_lora works on any transformer), and
the same LoRA written as the other formats people publish, so that each must give the same pixels:

- kohya (`lora_unet_<module, `_` for `.`>.lora_down.weight`, `.alpha`): for Qwen-Image and Z-Image
  diffusers' module names flattened, for FLUX.2 BFL's, for SD 3.5 SAI's; alpha is half the rank and the up weights
  doubled, so a loader that ignores alpha draws something else;
- ComfyUI/ai-toolkit (`diffusion_model.<module>.lora_A.weight`): diffusers' names (Z-Image's
  `to_out.0` written as its original `out`), BFL's for FLUX.2 and SAI's for SD 3.5, where q, k and
  v of a block are one fused layer whose down weight stacks theirs and whose up weight holds theirs
  on its diagonal (the conversions split it back exactly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from generation.assets.files import AssetInfo, inspect_asset
from generation.models.dit_layers import family_layers


def pairs(lora: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The transformer's layers of a diffusers file: module path -> (down [r, in], up [out, r])."""
    return {
        key[len("transformer.") : -len(".lora_A.weight")]: (lora[key], lora[key.replace("lora_A", "lora_B")])
        for key in lora
        if key.startswith("transformer.") and key.endswith(".lora_A.weight")
    }


def to_original(lora: dict[str, torch.Tensor], family: str, transformer: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A LoRA by the original model's module paths (SAI's for SD 3.5, BFL's for FLUX.2), from the
    family's layer table: a fused layer's parts stacked (down) and on the diagonal (up), every part
    of it in the LoRA; a modulation stored the other way round with its up halves swapped back."""
    table = family_layers(family, dict(transformer.config))
    found = pairs(lora)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for flat, members in table.members.items():
        if not any(member in found for member in members):
            continue
        assert all(member in found for member in members), f"fused {flat} needs all of {members}"
        downs, ups = zip(*(found.pop(member) for member in members), strict=True)
        out[table.fused[flat][0]] = (torch.cat(downs), torch.block_diag(*ups))
    for path, (down, up) in found.items():
        if path in table.swapped:
            first, second = up.chunk(2, dim=0)
            up = torch.cat([second, first], dim=0)
        out[table.layers[path].sgm or path] = (down, up)
    return out


def to_kohya(modules: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """kohya's layout: flat names, lora_down/lora_up, alpha = rank / 2 (the up weights doubled to match)."""
    out = {}
    for path, (down, up) in modules.items():
        name = "lora_unet_" + path.replace(".", "_")
        out[f"{name}.lora_down.weight"] = down.contiguous()
        out[f"{name}.lora_up.weight"] = (up * 2).contiguous()
        out[f"{name}.alpha"] = torch.tensor(down.shape[0] / 2)
    return out


def to_comfyui(modules: dict[str, tuple[torch.Tensor, torch.Tensor]], renames: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """ComfyUI/ai-toolkit's layout: `diffusion_model.` and lora_A/lora_B, with module renames (suffixes)."""
    out = {}
    for path, (down, up) in modules.items():
        for old, new in (renames or {}).items():
            if path.endswith(old):
                path = path[: -len(old)] + new
        out[f"diffusion_model.{path}.lora_A.weight"] = down.contiguous()
        out[f"diffusion_model.{path}.lora_B.weight"] = up.contiguous()
    return out


def save_loras(folder: Path, made: dict[str, dict[str, torch.Tensor]]) -> dict[str, Path]:
    """Each LoRA of `made` saved as `<folder>/<name>.safetensors`, by name."""
    paths = {}
    for name, tensors in made.items():
        paths[name] = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, paths[name])
    return paths


def info_of(path: Path) -> AssetInfo:
    """What the upload check makes of a LoRA file."""
    return inspect_asset(path.read_bytes(), path.name, kind="lora", max_bytes=2**30)


def layer_tables_match(class_name: str, family: str, config: dict[str, Any]) -> None:
    """The family's layer table (generation.models.dit_layers) is the diffusers class's Linear
    layers, built with `config` on the meta device: every path, with its inputs and outputs."""
    import diffusers

    with torch.device("meta"):
        model = getattr(diffusers, class_name)(**config)
    real = {path: (m.in_features, m.out_features) for path, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    table = {path: (layer.inputs, layer.outputs) for path, layer in family_layers(family, config).layers.items()}
    assert table == real
