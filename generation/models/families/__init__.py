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

from generation.models.families.base import (
    CACHE_CHOICES,
    CACHES,
    FEATURES,
    VIDEO_MODES,
    ControlNetSupport,
    EditSupport,
    Family,
    MotionRule,
    Variant,
    VideoDefaults,
    VideoSupport,
)
from generation.models.families.chroma import CHROMA
from generation.models.families.flux import FLUX
from generation.models.families.flux2 import FLUX2_KLEIN
from generation.models.families.ltx import LTX
from generation.models.families.qwen_image import QWEN_IMAGE
from generation.models.families.sd3 import SD3
from generation.models.families.stable_diffusion import SD1, SD2, SDXL
from generation.models.families.wan import WAN
from generation.models.families.z_image import Z_IMAGE

__all__ = [
    "CACHES",
    "CACHE_CHOICES",
    "FAMILIES",
    "FEATURES",
    "VIDEO_MODES",
    "ControlNetSupport",
    "EditSupport",
    "Family",
    "MotionRule",
    "Variant",
    "VideoDefaults",
    "VideoSupport",
    "family",
    "from_keys",
    "from_pipeline_class",
    "known_elsewhere",
]

FAMILIES: tuple[Family, ...] = (SD1, SD2, SDXL, SD3, FLUX, CHROMA, FLUX2_KLEIN, QWEN_IMAGE, Z_IMAGE, WAN, LTX)
_BY_ID = {f.id: f for f in FAMILIES}

# The order single files are recognised in (`from_keys`): Chroma's files also have FLUX.1's blocks.
_RECOGNITION_ORDER: tuple[Family, ...] = (WAN, LTX, FLUX2_KLEIN, CHROMA, FLUX, QWEN_IMAGE, Z_IMAGE, SD3, SDXL, SD2, SD1)

# Families people run that are not on this layer yet: by pipeline class and by tensor names.
_ELSEWHERE_PIPELINES = {
    "Flux2Pipeline": "FLUX.2",
    "FluxFillPipeline": "FLUX.1 Fill",
    "WanVACEPipeline": "Wan VACE (all-in-one video editing: not supported here; Wan T2V, I2V and FLF2V models are)",
    "WanAnimatePipeline": "Wan Animate (character animation: not supported here; Wan T2V, I2V and FLF2V models are)",
    "LTX2Pipeline": "LTX-2 (video with audio: not supported here yet; LTX-Video 0.9.x models are)",
    "LTX2ImageToVideoPipeline": "LTX-2 (video with audio: not supported here yet; LTX-Video 0.9.x models are)",
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
    ("txt_in.text_norm.", "Qwen-Image 2"),
    ("vace_blocks.", "Wan VACE (all-in-one video editing: not supported here)"),
    ("motion_encoder.", "Wan Animate (not supported here)"),
    ("av_ca_", "LTX-2 (video with audio: not supported here yet)"),
    ("double_stream_blocks.", "HiDream-I1"),
)


_LOOKALIKES = ("FLUX.2", "HunyuanVideo")


def family(family_id: str) -> Family:
    """The family `family_id` (sd1, sd2, sdxl, sd3, flux, chroma); KeyError for others."""
    return _BY_ID[family_id]


def video_families() -> tuple[Family, ...]:
    """The families that draw clips (`Family.video()` is not None): Wan, LTX-Video."""
    return tuple(f for f in FAMILIES if f.video_support is not None)


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
    for found in _RECOGNITION_ORDER:
        if found.marks(names):
            return found, found.variant_from_keys(names) if found.variant_from_keys else None
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
