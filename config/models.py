"""The model registry: which models a user may pick with `--model NAME`, and where each comes from.

This module is torch-free: the command layer validates `--model` and picks default sizes from it
without loading anything. The engine (`generation/models/loader.py`) turns an entry into a pipeline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from generation.models.families import CACHE_CHOICES, FAMILIES, family

TINY = "tiny"
# The built-in random-weight models, one per family (generation.models.tiny, tiny_dit): source -> family.
TINY_MODELS = {
    TINY: "sd1",
    "tiny-flux": "flux",
    "tiny-chroma": "chroma",
    "tiny-sd3": "sd3",
    "tiny-qwen": "qwen",
    "tiny-zimage": "zimage",
    "tiny-flux2": "flux2",
    "tiny-kontext": "flux",  # FLUX.1 Kontext: /edit by instruction
    "tiny-qwen-edit-plus": "qwen",  # Qwen-Image-Edit-Plus: /edit with up to 3 pictures
    "tiny-wan": "wan",  # Wan 2.1 text-to-video (generation.models.tiny_video)
    "tiny-wan-i2v": "wan",  # Wan 2.2 I2V A14B: image-to-video and first-last-frame
    "tiny-ltx": "ltx",  # LTX-Video: text-to-video, image-to-video, first-last-frame
}
TINY_STEPS = 8  # the tiny models' default --steps
SourceKind = Literal["tiny", "file", "folder", "hub"]
# .gguf: a quantized transformer (FLUX.1, Chroma, ...), the rest of the pipeline from `config`.
SINGLE_FILE_SUFFIXES = (".safetensors", ".gguf", ".ckpt", ".pt", ".bin")
FamilyId = Literal[
    "sd1", "sd2", "sdxl", "sd3", "flux", "chroma", "qwen", "zimage", "flux2", "wan", "ltx"
]  # generation.models.families (a test keeps them equal)
NATIVE_SIZES = {f.id: f.native_size for f in FAMILIES}  # each family's training resolution
ARCHITECTURE_NAMES = {f.id: f.label for f in FAMILIES}  # how people name them
Quantization = Literal["none", "fp8", "nf4"]
MemoryMode = Literal["auto", "gpu", "model_offload", "sequential_offload"]


class ModelEntry(BaseModel):
    """One model. `source` is a Hub id, a diffusers folder, a single-file checkpoint, or `tiny`."""

    source: str
    name: str | None = None
    config: str | None = Field(
        None,
        description="Single files only: a diffusers folder or Hub id holding the component configs, so that loading needs no network.",
    )
    size: int | None = Field(None, description="Native side in pixels (default: guessed from the source).")
    description: str = ""
    clip_skip: int | None = Field(None, ge=1, le=12, description="Default --clip-skip for this model (A1111's count).")
    steps: int | None = Field(None, ge=1, description="Default --steps for this model (SDBOT_DEFAULT_STEPS, when set, wins; `tiny`: 8).")
    vae: str | None = Field(None, description="This model's VAE: a name from `vaes`, or a folder, Hub id or .safetensors file.")
    architecture: FamilyId | None = Field(
        None,
        description="Its family: sd1, sd2, sdxl, sd3, flux, chroma, flux2, qwen, zimage, or the video families wan and ltx; LoRAs and "
        "embeddings must match it (default: read from "
        "the files at start-up, else guessed from the source's name).",
    )
    variant: str | None = Field(
        None,
        description="Its kind within the family, where defaults differ: flux dev or schnell; wan t2v, ti2v, i2v, flf2v or i2v-a14b "
        "(what it draws: text-to-video, image-to-video, first-last-frame); ltx dev or distilled (default: read from the files).",
    )
    cfg: float | None = Field(None, description="Default --cfg for this model (SDBOT_DEFAULT_CFG, when set, wins; default: its family's).")
    quantization: Quantization = Field(
        "none",
        description="How the denoiser's weights are kept on the GPU: none (the dtype), fp8 (stored in fp8, computed in bf16/fp16; "
        "any GPU), nf4 (bitsandbytes 4-bit, CUDA only). A .gguf source is quantized already.",
    )
    vae_tiling: bool = Field(
        False,
        description="Decode (and encode) in tiles: big pictures (2048² and up) need far less memory, at a slight cost in "
        "speed; seams can show on flat colour.",
    )
    cache: str | None = Field(
        None,
        description="This model's cache accelerator (`off`, `on`, or a cache's name), over SDBOT_CACHE; `--fast` wins.",
    )
    memory: MemoryMode = Field(
        "auto",
        description="gpu (everything on the GPU), model_offload (each component moves to the GPU when used), sequential_offload "
        "(layer by layer: slowest, least memory), auto (by free GPU memory when it loads).",
    )

    @field_validator("cache")
    @classmethod
    def _cache(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in CACHE_CHOICES:
            raise ValueError(f"cache: `{value}` is not one of {', '.join(CACHE_CHOICES)}")
        return value.strip().lower() if value is not None else None

    @property
    def family(self) -> str:
        """The family id (sd1, sd2, sdxl, sd3, flux, chroma, flux2, qwen, zimage; wan, ltx): what uploaded LoRAs and embeddings must be made for."""
        return self.architecture or self._guessed_family()

    @property
    def family_label(self) -> str:
        return family(self.family).label

    def _guessed_family(self) -> str:
        """The family the source's name suggests, when nothing better is known (the files are read
        at start-up and by /model add, and those fill in `architecture`)."""
        if self.kind == "tiny":
            return TINY_MODELS[self.source]
        lowered = self.source.lower()
        if re.search(r"(^|[/_.-])wan[-_.]?2|wan-ai/", lowered):
            return "wan"
        if re.search(r"ltx-?video|(^|[/_.-])ltxv?[-_.]", lowered):
            return "ltx"
        if "chroma" in lowered:
            return "chroma"
        if re.search(r"flux\.?2", lowered):
            return "flux2"
        if re.search(r"(sd3|stable-diffusion-3)", lowered):
            return "sd3"
        if "qwen" in lowered:
            return "qwen"
        if re.search(r"z-?image", lowered):
            return "zimage"
        if "flux" in lowered:
            return "flux"
        if "xl" in lowered:
            return "sdxl"
        if re.search(r"(stable-diffusion-2|sd-?2|v2-)", lowered):
            return "sd2"
        return "sd1"

    @property
    def guessed_variant(self) -> str | None:
        """`variant`, else what the source's name says ("FLUX.1-schnell", "sd3.5_large_turbo")."""
        return self.variant or family(self.family).variant_from(None, self.source)

    @property
    def default_steps(self) -> int | None:
        """This model's own default step count: `steps`, else TINY_STEPS on a tiny model (its
        pictures are noise, so 25 steps would only make trying the bot slow), else its family's."""
        if self.steps:
            return self.steps
        if self.kind == "tiny":
            return TINY_STEPS
        return family(self.family).variant(self.guessed_variant).steps

    @property
    def default_cfg(self) -> float | None:
        """This model's own default --cfg: `cfg`, else its family's (None: the bot's setting)."""
        return self.cfg if self.cfg is not None else family(self.family).variant(self.guessed_variant).cfg

    @property
    def kind(self) -> SourceKind:
        return source_kind(self.source)

    @property
    def display_name(self) -> str:
        return self.name or default_name(self.source)

    @property
    def native_size(self) -> int:
        """`size`, else a guess from the source's name (chat-added models store the size read from their files)."""
        if self.size:
            return self.size
        if self.kind == "tiny":
            return 64
        return NATIVE_SIZES[self.family]


ControlType = Literal["canny", "depth", "openpose", "lineart", "lineart_anime", "softedge", "scribble", "tile", "qr"]


class ControlNetEntry(BaseModel):
    """One ControlNet model: what its maps show, and where it comes from (a diffusers folder with
    `config.json` and `.safetensors` weights, or a Hub id already downloaded; `tiny` for the
    built-in test ones). Its family is read from config.json (`_class_name`, and for SD's the text
    width); it steers only models of that family."""

    type: ControlType
    source: str
    architecture: FamilyId | None = Field(
        None,
        description="The family it is for, where its config.json is not on this machine: sd1, sd2, sdxl, sd3, qwen or zimage "
        "(default: read from it).",
    )
    description: str = ""


# How a job's image references are drawn (generation.spec.ReferenceRef.method): an IP-Adapter on a
# UNet (SD 1.x/2.x, SDXL: generation.control.ip_adapters), FLUX.1's IP-Adapter (XLabs' layout) or
# FLUX.1 Redux (generation.control.flux_references).
ReferenceMethod = Literal["ip-adapter", "flux-ip-adapter", "redux"]


class IPAdapterEntry(BaseModel):
    """One image-reference model for `--sref` / `--oref`, and the family of the base models it fits.
    kind ip-adapter: its weights (a folder and the `.safetensors` file in it, in a layout diffusers'
    `load_ip_adapter` reads: `image_proj.*` and `ip_adapter.*`, or on FLUX.1 XLabs'
    `ip_adapter_proj_model.*` and `double_blocks.*`) and the CLIP image encoder it was trained with
    (a `CLIPVisionModelWithProjection` folder). kind redux (FLUX.1 only): `source` is a
    `FluxPriorReduxPipeline` folder (FLUX.1-Redux-dev: `image_encoder/` SigLIP, `feature_extractor/`,
    `image_embedder/`); `weight_name` and `image_encoder` are not used."""

    source: str
    weight_name: str = "ip-adapter_sd15.safetensors"
    image_encoder: str = ""
    architecture: Literal["sd1", "sd2", "sdxl", "flux"] = "sd1"
    kind: Literal["ip-adapter", "redux"] = "ip-adapter"
    description: str = ""

    @model_validator(mode="after")
    def _complete(self) -> IPAdapterEntry:
        if self.kind == "redux" and self.architecture != "flux":
            raise ValueError("a Redux (kind redux) is FLUX.1's: set architecture = flux")
        if self.kind == "ip-adapter" and not self.image_encoder:
            raise ValueError("an IP-Adapter needs its image_encoder (a CLIPVisionModelWithProjection folder)")
        return self

    @property
    def method(self) -> ReferenceMethod:
        if self.kind == "redux":
            return "redux"
        return "flux-ip-adapter" if self.architecture == "flux" else "ip-adapter"

    @property
    def kinds(self) -> tuple[str, ...]:
        """The reference kinds it draws: Redux is an image variation (what a picture shows), so
        subject only; an IP-Adapter both (generation.spec.REFERENCE_SCALES)."""
        return ("subject",) if self.kind == "redux" else ("style", "subject")


class MotionAdapterEntry(BaseModel):
    """One AnimateDiff motion model for /animate and /video2video: a diffusers `MotionAdapter`
    folder or Hub id already downloaded (`tiny` for the built-in test one), and the architecture it
    was trained for: a motion adapter only moves the base models of that architecture."""

    source: str
    architecture: Literal["sd1", "sdxl"] | None = Field(
        None, description="sd1 or sdxl (default: sdxl when the source's name says xl, else sd1)."
    )
    description: str = ""

    @property
    def family(self) -> str:
        if self.architecture:
            return self.architecture
        return "sdxl" if "xl" in self.source.lower() else "sd1"


def source_kind(source: str) -> SourceKind:
    if source in TINY_MODELS:
        return "tiny"
    if source.lower().endswith(SINGLE_FILE_SUFFIXES):
        return "file"
    looks_like_path = source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()
    if looks_like_path or source.count("/") != 1:
        return "folder"
    return "hub"


def default_name(source: str) -> str:
    """`org/model` -> `model`; `/x/y/model.safetensors` -> `model`; folders -> their last part."""
    if source in TINY_MODELS:
        return source
    stem = Path(source.rstrip("/")).name
    for suffix in SINGLE_FILE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or source


class ModelRegistry:
    """Named models, the first being the default. Names match case-insensitively.

    Two kinds of entry: those in the settings (fixed for the life of the process) and those an
    admin added with `/model add` (kept in the database; `storage.model_library.sync` copies them
    in). Readers may run on the engine thread while the event loop syncs, so a sync builds a new
    dict and swaps it in with one assignment; nobody sees a half-updated registry."""

    def __init__(self, entries: list[ModelEntry]):
        if not entries:
            raise ValueError("the model registry needs at least one model")
        self._configured: dict[str, ModelEntry] = {}
        for entry in entries:
            key = entry.display_name.lower()
            if key in self._configured:
                raise ValueError(f"two models are named {entry.display_name!r}; give one a `name`")
            self._configured[key] = entry
        self._entries: dict[str, ModelEntry] = dict(self._configured)
        self._added: frozenset[str] = frozenset()
        self.default = entries[0]

    @classmethod
    def from_settings(cls, default_source: str, named: dict[str, ModelEntry]) -> ModelRegistry:
        entries = [ModelEntry(source=default_source)]
        for name, entry in named.items():
            if entry.source == default_source:
                continue
            entries.append(entry.model_copy(update={"name": entry.name or name}))
        return cls(entries)

    def get(self, name: str | None) -> ModelEntry | None:
        if name is None:
            return self.default
        return self._entries.get(name.strip().lower())

    def names(self) -> list[str]:
        return [entry.display_name for entry in self._entries.values()]

    def __iter__(self):
        return iter(list(self._entries.values()))

    def is_configured(self, name: str) -> bool:
        """Whether `name` comes from the settings (and so cannot be removed in chat)."""
        return name.strip().lower() in self._configured

    def is_added(self, name: str) -> bool:
        """Whether `name` was added in chat (`/model add`) and may be removed there."""
        return name.strip().lower() in self._added

    def set_added(self, entries: list[ModelEntry]) -> None:
        """Replace the chat-added models with `entries` (the database's list). A name the
        settings already use is skipped: the settings win, and `/model add` refuses such names."""
        merged = dict(self._configured)
        added = set()
        for entry in entries:
            key = entry.display_name.lower()
            if key in merged:
                continue
            merged[key] = entry
            added.add(key)
        self._entries, self._added = merged, frozenset(added)
