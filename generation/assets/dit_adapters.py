"""A LoRA file onto a DiT pipeline (generation.assets.adapters calls this for models whose
denoiser is a transformer): FLUX.1's files onto FLUX.1 or Chroma (`flux_state_dict`, most of this
module), and SD 3.5, Qwen-Image, Z-Image, FLUX.2, Wan and LTX-Video files onto their family (`family_state_dict`:
the family's own diffusers loader converts the file (SD 3.5's kohya/ComfyUI names, which it does
not convert, `generation.assets.dit_convert` does); text-encoder layers are taken out, alphas left
by the conversion are folded into the up weights, and every layer is checked as below).

diffusers converts the formats (`FluxLoraLoaderMixin.lora_state_dict`: diffusers/peft, kohya,
ComfyUI/BFL; ChromaPipeline uses the same mixin), and this module only goes around it:
- before: T5 layers are taken out (diffusers has no T5 LoRA loader for FLUX.1, and its kohya
  conversion fails on their alphas); ComfyUI/BFL files that name their weights `lora_A`/`lora_B`
  (diffusers expects ComfyUI's `lora_down`/`lora_up` there) are renamed to it; a kohya/BFL
  single-block `linear1` on a transformer narrower than FLUX.1's 3072 is refused (diffusers'
  conversion splits it at FLUX.1's widths, `_convert_kohya_flux_lora_to_diffusers`).
- after (diffusers 0.42.1): the converted top-level layers (`x_embedder`, `context_embedder`,
  `time_text_embed.*`, `norm_out.linear`, `proj_out`) lack their `transformer.` prefix, and
  diffusers' own loader then drops them without a word; the prefix is put back. Converted CLIP
  layers come in diffusers' old layout (`self_attn.to_q_lora.down.weight`), which its text-encoder
  loader can't infer when a file has no `out_proj`; they are turned into peft's layout with
  diffusers' own `convert_state_dict_to_peft`.
- every layer is checked against the model's module of that name before anything is loaded:
  diffusers would otherwise widen the model's own layers to fit a bigger LoRA
  (`_maybe_expand_transformer_param_shape_or_error_`, for FLUX Control LoRAs), for every later job.
  Layers FLUX.1 has and the model lacks by design (Chroma: modulation, pooled-text and guidance
  embedders, CLIP; FLUX.1-schnell: guidance) are left out, as the fit check at upload said
  (generation.models.dit_shapes); any other missing layer refuses the file.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from config.models import ARCHITECTURE_NAMES
from generation.assets.dit_convert import ConversionError, from_original_names
from generation.assets.dit_loras import is_clip_only, is_flux_lora
from generation.assets.family_loras import FAMILIES, transformer_family
from generation.errors import EngineUserError
from generation.models.dit_layers import family_layers
from generation.models.dit_shapes import FLUX_WIDTH
from generation.spec import AssetRef

_ZIMAGE_OUT = re.compile(r"\.attention\.out\.(?=lora_)")
_LTX_NAMES = {"patchify_proj": "proj_in", "adaln_single": "time_embed"}
_LTX_ORIGINAL = re.compile(r"(?<=^diffusion_model\.)(patchify_proj|adaln_single)(?=\.)")
_TRANSFORMER_PREFIXES = ("transformer.", "diffusion_model.", "lora_unet_")
_T5_PREFIXES = ("lora_te2_", "lora_te3_", "text_encoders.t5xxl.")
_COMFY_PREFIXES = ("diffusion_model.", "text_encoders.clip_l.transformer.")
_FUSED_LINEAR1 = re.compile(r"(?:lora_unet_|diffusion_model\.)single_blocks[._]\d+[._]linear1\.")
# FLUX.1's layers that Chroma (and, for guidance, FLUX.1-schnell) lack by design.
_FLUX_ONLY = re.compile(r"time_text_embed\..+|(?:single_)?transformer_blocks\.\d+\.norm(?:1|1_context)?\.linear|norm_out\.linear")
_SUFFIX = re.compile(r"\.(?:lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_magnitude_vector(?:\.weight)?|alpha)$")
_OLD_TEXT_LAYOUT = ("_lora.down.", "_lora.up.", ".lora_linear_layer.")


def flux_state_dict(pipe: Any, state_dict: dict[str, torch.Tensor], ref: AssetRef, model: str) -> tuple[dict[str, torch.Tensor], int]:
    """The file's layers as diffusers' `load_lora_weights` takes them for this pipeline, checked
    against its modules, and how many were left out (layers the model lacks by design)."""
    label = ARCHITECTURE_NAMES.get(_family(pipe), "FLUX.1")
    if not is_flux_lora(state_dict) and not is_clip_only(state_dict):
        raise EngineUserError(
            f"the LoRA `{ref.name}` is made for a UNet model (SD 1.x, SD 2.x or SDXL), and the model `{model}` is {label}: "
            f"they don't fit together. Use a {label} LoRA with this model, or pick an SD model with --model."
        )
    prepared = {}
    for key, tensor in state_dict.items():
        if key.startswith(_T5_PREFIXES):
            continue
        if key.startswith(_COMFY_PREFIXES):
            key = key.replace(".lora_A.weight", ".lora_down.weight").replace(".lora_B.weight", ".lora_up.weight")
        prepared[key] = tensor
    width = _width(pipe.transformer)
    fused = next((key for key in prepared if _FUSED_LINEAR1.match(key)), None)
    if fused is not None and width != FLUX_WIDTH:
        raise EngineUserError(
            f"the LoRA `{ref.name}` changes `{fused.split('.lora')[0]}`, a fused single-block layer that diffusers converts only "
            f"for FLUX.1's full width ({FLUX_WIDTH}); the model `{model}` is {width} wide."
        )
    converted, alphas = pipe.lora_state_dict(prepared, return_alphas=True)
    converted = _normalise(converted)
    alphas = {(k if k.startswith(("transformer.", "text_encoder.")) else f"transformer.{k}"): v for k, v in (alphas or {}).items()}
    return _checked(pipe, converted, alphas, ref, model, label)


def family_state_dict(
    pipe: Any, state_dict: dict[str, torch.Tensor], ref: AssetRef, model: str, family: str
) -> tuple[dict[str, torch.Tensor], int]:
    """A LoRA for SD 3.5, Qwen-Image, Z-Image or FLUX.2 as the family's diffusers loader takes it
    (converted by its own `lora_state_dict`), checked against the transformer's modules, and how
    many text-encoder layers were left out (these loaders load the transformer alone;
    generation.assets.family_loras)."""
    label = ARCHITECTURE_NAMES.get(family, family)
    found = transformer_family({key: tuple(tensor.shape) for key, tensor in state_dict.items()})
    if found is None or found == "flux" or (found in FAMILIES and found != family):
        made_for = ARCHITECTURE_NAMES.get(found or "", "a UNet model (SD 1.x, SD 2.x or SDXL)")
        raise EngineUserError(
            f"the LoRA `{ref.name}` is made for {made_for}, and the model `{model}` is {label}: they don't fit together. "
            f"Use a {label} LoRA with this model, or pick a {made_for} model with --model."
        )
    transformer_keys = {key: tensor for key, tensor in state_dict.items() if key.startswith(_TRANSFORMER_PREFIXES)}
    left_out = len({key.rsplit(".lora", 1)[0].rsplit(".alpha", 1)[0] for key in state_dict if key not in transformer_keys})
    if family == "zimage":  # ComfyUI's `attention.out`, which diffusers renames only in lora_down/lora_up files
        transformer_keys = {_ZIMAGE_OUT.sub(".attention.to_out.0.", key): tensor for key, tensor in transformer_keys.items()}
    if family == "ltx":  # LTX-Video's own names of two layers, which diffusers renames for LTX-2 files only
        transformer_keys = {_LTX_ORIGINAL.sub(lambda m: _LTX_NAMES[m[1]], key): tensor for key, tensor in transformer_keys.items()}
    if family == "sd3" and not all(key.startswith("transformer.") for key in transformer_keys):
        # kohya/ComfyUI names (SAI's blocks): diffusers converts them for no SD 3.5 loader
        try:
            transformer_keys = from_original_names(transformer_keys, family_layers("sd3", dict(pipe.transformer.config)))
        except ConversionError as error:
            raise EngineUserError(f"the LoRA `{ref.name}` doesn't fit the model `{model}` ({label}): {error}.") from error
    converted = pipe.lora_state_dict(transformer_keys)
    converted = {(k if k.startswith("transformer.") else f"transformer.{k}"): v for k, v in converted.items()}
    kept, lacking = _checked(pipe, _fold_alphas(converted), {}, ref, model, label)
    return _with_zero_biases(kept), left_out + lacking


def _with_zero_biases(layers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Where some layers carry a bias offset (Wan's `diff_b`, loaded as `lora_B.bias`), a zero one
    on the others: peft then gives every layer a bias, and diffusers 0.42.1 (loading LoRAs on the
    meta device) leaves the biases missing from the file on the meta device, where the first step
    fails."""
    if not any(key.endswith(".lora_B.bias") for key in layers):
        return layers
    filled = dict(layers)
    for key, up in layers.items():
        if key.endswith(".lora_B.weight"):
            filled.setdefault(key.replace(".lora_B.weight", ".lora_B.bias"), up.new_zeros(up.shape[0]))
    return filled


def _fold_alphas(converted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Alphas that the family's conversion left (diffusers-format files with `.alpha`), folded into
    the up weights (scale alpha / rank): these loaders refuse keys without `lora` in them."""
    alphas = {k.removesuffix(".alpha"): converted[k] for k in converted if k.endswith(".alpha")}
    folded = {k: v for k, v in converted.items() if not k.endswith(".alpha")}
    for module, alpha in alphas.items():
        down, up = folded.get(f"{module}.lora_A.weight"), folded.get(f"{module}.lora_B.weight")
        if down is not None and up is not None:
            folded[f"{module}.lora_B.weight"] = up * (float(alpha) / down.shape[0])
    return folded


def _checked(
    pipe: Any, converted: dict[str, torch.Tensor], alphas: dict[str, torch.Tensor], ref: AssetRef, model: str, label: str
) -> tuple[dict[str, torch.Tensor], int]:
    """The converted layers that fit the model's modules, and how many it lacks by design; an
    EngineUserError naming the first layer that does not fit (module docstring)."""
    width = _width(pipe.transformer)
    modules: dict[str, list[str]] = {}
    for key in [*converted, *alphas]:
        modules.setdefault(_SUFFIX.sub("", key), []).append(key)
    kept: dict[str, torch.Tensor] = {}
    left_out = 0
    for module_key, keys in modules.items():
        component, _, path = module_key.partition(".")
        layer = _layer(pipe, component, path)
        if layer is None:
            if _lacks_by_design(pipe, component, path):
                left_out += 1
                continue
            raise EngineUserError(
                f"the LoRA `{ref.name}` changes the layer `{path}`, which the model `{model}` ({label}) does not have: "
                "it was made for another model."
            )
        base = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        down, up = converted.get(f"{module_key}.lora_A.weight"), converted.get(f"{module_key}.lora_B.weight")
        if down is None or up is None:
            raise EngineUserError(f"the LoRA `{ref.name}` is damaged: its layer `{path}` lacks its down or up weights.")
        if down.shape[1] != base.in_features or up.shape[0] != base.out_features:
            raise EngineUserError(
                f"the LoRA `{ref.name}` doesn't fit the model `{model}` ({label}, {width} wide): its layer `{path}` has "
                f"{down.shape[1]} inputs and {up.shape[0]} outputs, the model's {base.in_features} and {base.out_features}."
            )
        for key in keys:
            kept[key] = alphas[key] if key in alphas else converted[key]
    if not kept:
        raise EngineUserError(f"the LoRA `{ref.name}` changes none of the layers the model `{model}` ({label}) has.")
    return kept, left_out


def _width(transformer: Any) -> int:
    config = transformer.config
    return int(config.get("dim") or config["num_attention_heads"] * config["attention_head_dim"])


def _normalise(converted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' converted keys in the layout its loader reads (module docstring)."""
    from diffusers.utils.state_dict_utils import StateDictType, convert_state_dict_to_peft

    transformer: dict[str, torch.Tensor] = {}
    old_text: dict[str, torch.Tensor] = {}
    text: dict[str, torch.Tensor] = {}
    for key, tensor in converted.items():
        if key.startswith("text_encoder."):
            (old_text if any(part in key for part in _OLD_TEXT_LAYOUT) else text)[key] = tensor
        else:
            transformer[key if key.startswith("transformer.") else f"transformer.{key}"] = tensor
    if old_text:
        text.update(convert_state_dict_to_peft(old_text, original_type=StateDictType.DIFFUSERS_OLD))
    return {**transformer, **text}


def _family(pipe: Any) -> str:
    return "chroma" if type(pipe.transformer).__name__.startswith("Chroma") else "flux"


def _layer(pipe: Any, component: str, path: str) -> torch.nn.Module | None:
    target = getattr(pipe, component, None) if component in ("transformer", "text_encoder") else None
    if target is None or (component == "text_encoder" and not _is_clip(target)):
        return None
    try:
        layer = target.get_submodule(path)
    except AttributeError:
        return None
    base = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
    return layer if isinstance(base, torch.nn.Linear) else None


def _is_clip(model: Any) -> bool:
    return type(model).__name__.startswith("CLIPTextModel")


def _lacks_by_design(pipe: Any, component: str, path: str) -> bool:
    """A FLUX.1 layer this model lacks by design, in a block the model has (CLIP on Chroma's T5,
    the modulation and embedders on Chroma, guidance on FLUX.1-schnell)."""
    if component == "text_encoder":
        return not _is_clip(getattr(pipe, "text_encoder", None))
    if component != "transformer" or not _FLUX_ONLY.fullmatch(path):
        return False
    block = ".".join(path.split(".")[:2]) if path.split(".")[0].endswith("transformer_blocks") else path.split(".")[0]
    try:
        pipe.transformer.get_submodule(block)
    except AttributeError:
        return False
    return True
