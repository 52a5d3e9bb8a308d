"""The model families: one module per family says what the family is and can do (`base.Family`);
this package names them and recognises a model's family from its files. Torch-free and free of
the project's other modules, so `config` (the model registry) and the chat side can ask it.

The engine, the worker, the job kinds and the command layer ask a model's family (`family_of`)
for pipelines, sizes, defaults, samplers and features; nothing else tests a family by name.
ComfyUI's `supported_models` and InvokeAI's per-base backends are the models for this.

Recognition (`generation.models.files` reads the files, this package says what they mean):
- a diffusers folder or Hub id: model_index.json's `_class_name` (`from_pipeline_class`); SD 1.x
  and 2.x share a class and are told apart by the text encoder's width;
- a single `.safetensors` checkpoint or a GGUF transformer: its tensor names (`from_keys`), as
  diffusers' `infer_diffusers_model_type` and ComfyUI's model detection do.
A model of a family not on this layer yet is named (`known_elsewhere`) so the refusal says what it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from generation.models.families.base import FEATURES, Family, Variant
from generation.models.families.chroma import CHROMA
from generation.models.families.flux import FLUX
from generation.models.families.stable_diffusion import SD1, SD2, SDXL

__all__ = ["FAMILIES", "FEATURES", "Family", "Variant", "family", "from_keys", "from_pipeline_class", "known_elsewhere"]

FAMILIES: tuple[Family, ...] = (SD1, SD2, SDXL, FLUX, CHROMA)
_BY_ID = {f.id: f for f in FAMILIES}

# Tensor-name prefixes that mark a family in a single file (with or without ComfyUI's
# `model.diffusion_model.` prefix), checked in this order: Chroma's files also have FLUX's blocks.
_CHECKPOINT_MARKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("chroma", ("distilled_guidance_layer.",)),
    # BFL's names, and diffusers' (GGUF and fp8 files are published in both)
    ("flux", ("double_blocks.", "single_transformer_blocks.")),
    ("sdxl", ("conditioner.embedders.1.",)),
    ("sd2", ("cond_stage_model.model.",)),  # OpenCLIP
    ("sd1", ("cond_stage_model.transformer.",)),  # CLIP ViT-L
)
_FLUX_GUIDANCE = ("guidance_in.", "time_text_embed.guidance_embedder.")  # FLUX.1-dev's guidance embedder; schnell has none

# Families people run that are not on this layer yet: by pipeline class and by tensor names.
_ELSEWHERE_PIPELINES = {
    "StableDiffusion3Pipeline": "Stable Diffusion 3.x",
    "QwenImagePipeline": "Qwen-Image",
    "QwenImageEditPipeline": "Qwen-Image-Edit",
    "ZImagePipeline": "Z-Image",
    "Flux2KleinPipeline": "FLUX.2 Klein",
    "Flux2Pipeline": "FLUX.2",
    "FluxKontextPipeline": "FLUX.1 Kontext",
    "FluxFillPipeline": "FLUX.1 Fill",
    "WanPipeline": "Wan",
    "WanImageToVideoPipeline": "Wan image-to-video",
    "LTXPipeline": "LTX-Video",
    "HunyuanVideoPipeline": "HunyuanVideo",
    "StableDiffusionInstructPix2PixPipeline": "Instruct Pix2Pix (set it as SDBOT_INSTRUCT_MODEL for /edit)",
    "KandinskyV22Pipeline": "Kandinsky 2.2",
    "PixArtSigmaPipeline": "PixArt-Σ",
    "SanaPipeline": "Sana",
    "AuraFlowPipeline": "AuraFlow",
    "HiDreamImagePipeline": "HiDream-I1",
}
_ELSEWHERE_KEYS = (
    ("single_stream_modulation.", "FLUX.2"),
    ("double_stream_modulation_img.", "FLUX.2"),
    ("txt_in.individual_token_refiner.", "HunyuanVideo"),
    ("context_embedder.token_refiner.", "HunyuanVideo"),
    ("joint_blocks.", "Stable Diffusion 3.x"),
    ("layers.0.adaLN_modulation.", "Z-Image"),
    ("txt_in.text_norm.", "Qwen-Image 2"),
    ("img_mod.", "Qwen-Image"),
    ("head.modulation", "Wan"),
    ("patchify_proj.", "LTX-Video"),
    ("double_stream_blocks.", "HiDream-I1"),
)


_LOOKALIKES = ("FLUX.2", "HunyuanVideo")


def family(family_id: str) -> Family:
    """The family `family_id` (sd1, sd2, sdxl, flux, chroma); KeyError for others."""
    return _BY_ID[family_id]


def is_family(family_id: str | None) -> bool:
    return family_id in _BY_ID


def from_pipeline_class(class_name: str, text_width: int | None = None) -> Family | None:
    """The family of a diffusers pipeline class (`model_index.json`'s `_class_name`); SD 1.x and
    2.x share theirs and are told by the text encoder's width (1024: 2.x). None: not on the layer."""
    matches = [f for f in FAMILIES if class_name in f.pipeline_classes]
    if len(matches) > 1:
        return SD2 if text_width == 1024 else SD1
    return matches[0] if matches else None


def from_keys(keys: Iterable[str]) -> tuple[Family | None, str | None]:
    """The family and variant of a single file by its tensor names; (None, None) when unknown."""
    names = [key.removeprefix("model.diffusion_model.") for key in keys]
    if known_elsewhere(keys=names) in _LOOKALIKES:  # their block names are FLUX.1's too
        return None, None
    for family_id, marks in _CHECKPOINT_MARKS:
        if any(name.startswith(marks) for name in names):
            found = _BY_ID[family_id]
            if found is FLUX:
                return found, "dev" if any(name.startswith(_FLUX_GUIDANCE) for name in names) else "schnell"
            return found, None
    return None, None


def known_elsewhere(*, class_name: str | None = None, keys: Iterable[str] = ()) -> str | None:
    """What a model not on the layer is, when people would know it by a name (for the refusal)."""
    if class_name is not None:
        return _ELSEWHERE_PIPELINES.get(class_name)
    names = [key.removeprefix("model.diffusion_model.") for key in keys]
    for mark, label in _ELSEWHERE_KEYS:
        if any(name.startswith(mark) for name in names):
            return label
    return None


def on_the_layer() -> str:
    """The families the bot runs, for messages: "SD 1.x, SD 2.x, SDXL, FLUX.1 and Chroma"."""
    labels = [f.label for f in FAMILIES]
    return f"{', '.join(labels[:-1])} and {labels[-1]}"
