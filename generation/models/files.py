"""Cheap checks of a model source before an admin's `/model add` stores it. Torch-free: it runs in
the command layer (on a bot machine that may have no GPU) and reads only small JSON files and a
safetensors header, never weights.

It catches what would otherwise surface only when a user's job first loads the model: a path
with a typo, a folder that is not a diffusers pipeline, pickle-only weights, a single file without
the configs it needs offline, a LoRA given as a model. It also reads what the registry needs to
know: the architecture (for LoRA and embedding checks) and the native size.

What it cannot see (damaged weights, a Hub model not yet downloaded) is still reported by
`generation.models.loader` when the first job loads it; that job fails with the reason and nothing else
breaks.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from config.models import ARCHITECTURE_NAMES, NATIVE_SIZES, SINGLE_FILE_SUFFIXES, TINY_MODELS, ModelEntry, source_kind
from generation.models import families, tiny_config
from generation.models.hf_source import HUB_ID
from generation.models.shapes import ModelShapes, shapes_from_configs, shapes_of_folder

STANDARD_WIDTHS = (768, 1024, 2048)  # the text features SD 1.x, 2.x and SDXL's UNets read
MAX_HEADER_BYTES = 100 * 1024 * 1024  # a real SDXL checkpoint's header is under 1 MiB
MAX_JSON_BYTES = 1024 * 1024
_CONVERT = (
    "Convert it once on a trusted machine (diffusers' `save_pretrained(..., safe_serialization=True)`, "
    "or `safetensors.torch.save_file`) and add the .safetensors."
)


class ModelSourceError(ValueError):
    """The source cannot be used; the message says why and what to give instead."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnsupportedModel(ModelSourceError):
    """The files are readable and are a model of a family the bot does not run (yet)."""


@dataclass(frozen=True)
class ModelFacts:
    architecture: str | None  # the family id (sd1, sd2, sdxl, sd3, flux, chroma), or None when the files do not say
    size: int | None  # native side in pixels, when the files say
    notes: tuple[str, ...] = field(default=())  # things the admin should know, e.g. "downloads on first use"
    variant: str | None = None  # within the family, where the files say (flux: dev or schnell)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def inspect_model_source(source: str, config: str | None = None) -> ModelFacts:
    """What `source` (with `config`, for single files) is; ModelSourceError if it cannot load."""
    kind = source_kind(source)
    if kind == "tiny":
        tiny_family = TINY_MODELS[source]
        # by its name (tiny-kontext), else FLUX.1's tiny one is dev-like (it has a guidance embedder)
        variant = families.family(tiny_family).variant_from(None, source) or ("dev" if tiny_family == "flux" else None)
        return ModelFacts(tiny_family, 64, variant=variant)
    if kind == "folder":
        return _folder(Path(source).expanduser())
    if kind == "hub":
        return _hub(source)
    return _single_file(Path(source).expanduser(), config)


def _folder(path: Path, shown: str | None = None) -> ModelFacts:
    shown = shown or f"`{path}`"
    if not path.is_dir():
        raise ModelSourceError(
            f"There is no folder {shown} on the bot's machine. Give a diffusers folder (with model_index.json), "
            "a Hub id (org/name), or a .safetensors checkpoint with --config."
        )
    index = _json(path / "model_index.json")
    if index is None:
        raise ModelSourceError(
            f"{shown} is not a diffusers pipeline folder: it has no readable model_index.json. Save the model "
            "with `save_pretrained`, or give a single .safetensors checkpoint with --config."
        )
    class_name = str(index.get("_class_name", "?"))
    denoiser_config = _json(path / "unet" / "config.json") or {}
    family = families.from_pipeline_class(class_name, denoiser_config.get("cross_attention_dim"))
    if family is None:
        known = families.known_elsewhere(class_name=class_name)
        what = f"a {known} model ({class_name})" if known else f"a {class_name}"
        raise UnsupportedModel(f"{shown} is {what}; sdbot runs {families.on_the_layer()} models.")
    weights_dir = path / family.denoiser
    if (weights_dir.is_dir() or family.denoiser != "unet") and not any(weights_dir.glob("*.safetensors")):
        if any(weights_dir.glob("*.bin")) or any(weights_dir.glob("*.ckpt")):
            raise ModelSourceError(
                f"{shown} has only pickle weights (.bin); sdbot loads .safetensors only, because a pickle can run code. {_CONVERT}"
            )
        raise ModelSourceError(f"{shown} has no {family.denoiser} weights (no .safetensors in {family.denoiser}/).")
    if family.denoiser != "unet":
        variant = family.variant_from(_json(weights_dir / "config.json"), str(path), index)
        return ModelFacts(family.id, family.native_size, variant=variant)
    vae = _json(path / "vae" / "config.json") or {}
    sample = denoiser_config.get("sample_size")
    scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    size = sample * scale if isinstance(sample, int) and sample > 0 else None
    # A UNet of a non-standard width (a custom or test model) is of no family people know by name.
    standard = denoiser_config.get("cross_attention_dim") in STANDARD_WIDTHS
    return ModelFacts(family.id if standard else None, size or family.native_size)


def _hub(repo_id: str) -> ModelFacts:
    if not HUB_ID.match(repo_id):
        raise ModelSourceError(f"`{repo_id}` is neither a folder on the bot's machine nor a Hub id (org/name).")
    cached = _cached_hub_folder(repo_id)
    if cached is not None:
        facts = _folder(cached, f"the cached Hub model `{repo_id}`")
        return ModelFacts(facts.architecture, facts.size, ("It is in this machine's Hugging Face cache.",), facts.variant)
    if hub_offline():
        raise ModelSourceError(
            f"`{repo_id}` is not in this machine's Hugging Face cache, and HF_HUB_OFFLINE is set, so it cannot be "
            "downloaded. Download it once (`hf download REPO --local-dir FOLDER`) and add the folder instead."
        )
    return ModelFacts(
        None,
        None,
        (
            f"`{repo_id}` is not in this machine's Hugging Face cache: each worker downloads it (several GB) when "
            "a job first uses it, and that job waits.",
        ),
    )


def _single_file(path: Path, config: str | None) -> ModelFacts:
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".gguf"):
        what = "a pickle checkpoint" if suffix in SINGLE_FILE_SUFFIXES else f"a `{suffix}` file"
        raise ModelSourceError(
            f"`{path.name}` is {what}; loading a pickle can run code hidden in it, so sdbot only loads .safetensors "
            f"(and .gguf transformers). {_CONVERT}"
        )
    if not path.is_file():
        raise ModelSourceError(f"There is no file `{path}` on the bot's machine.")
    keys = _gguf_keys(path) if suffix == ".gguf" else _safetensors_keys(path)
    family, variant = families.from_keys(keys)
    if family is None:
        lora = any(".lora_" in key or key.startswith(("lora_", "lycoris_")) or ".lora_A." in key for key in keys)
        if lora:
            raise ModelSourceError(f"`{path.name}` is a LoRA: upload it with `/lora upload`.")
        known = families.known_elsewhere(keys=keys)
        what = f"a {known} file" if known else "not a model of any family sdbot knows (its tensor names match none)"
        raise UnsupportedModel(f"`{path.name}` is {what}; sdbot runs {families.on_the_layer()} models.")
    if family.denoiser == "unet" and (suffix == ".gguf" or not any(key.startswith("model.diffusion_model.") for key in keys)):
        raise ModelSourceError(f"`{path.name}` is part of {_name(family.id)} without its UNet; give the whole checkpoint.")
    architecture = family.id
    notes: tuple[str, ...] = ()
    config_facts: ModelFacts | None = None
    if config:
        config_facts = _config(config)
        if config_facts.architecture and config_facts.architecture != architecture:
            raise ModelSourceError(
                f"`{path.name}` is {_name(architecture)} but the --config `{config}` is {_name(config_facts.architecture)}; "
                "give the configs of a model of the same kind."
            )
    elif family.denoiser != "unet":
        raise ModelSourceError(
            f"`{path.name}` holds only {family.label}'s transformer. Add `--config FOLDER`: a diffusers folder or Hub id of "
            f"{family.label}, from which its text encoders, VAE and configs are loaded."
        )
    elif hub_offline():
        raise ModelSourceError(
            f"A single file needs its components' configs, and HF_HUB_OFFLINE is set, so they cannot be fetched. "
            f"Add `--config FOLDER`: a diffusers folder of {_name(architecture)} (its weights are not used)."
        )
    else:
        notes = ("Without --config, its component configs are fetched from the Hugging Face Hub when it first loads.",)
    size = config_facts.size if config_facts and family.denoiser == "unet" else None
    return ModelFacts(architecture, size or NATIVE_SIZES.get(architecture), notes, variant)


def _config(config: str) -> ModelFacts:
    path = Path(config).expanduser()
    if path.is_dir() or source_kind(config) == "folder":
        return _folder(path, f"the --config folder `{path}`")
    if source_kind(config) == "hub":
        cached = _cached_hub_folder(config)
        if cached is not None:
            return _folder(cached, f"the cached Hub model `{config}`")
        if hub_offline():
            raise ModelSourceError(f"The --config `{config}` is not in this machine's Hugging Face cache, and HF_HUB_OFFLINE is set.")
        return ModelFacts(None, None)
    raise ModelSourceError(f"--config must be a diffusers folder or a Hub id, not `{config}`.")


def _cached_hub_folder(repo_id: str) -> Path | None:
    """The snapshot folder of `repo_id` in the local Hugging Face cache, if its model_index.json is there."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "model_index.json")
    return Path(cached).parent if isinstance(cached, str) else None


def _safetensors_keys(path: Path) -> list[str]:
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ModelSourceError(f"`{path.name}` is too short to be a safetensors file.")
        if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":
            raise ModelSourceError(f"`{path.name}` is a PyTorch pickle renamed to .safetensors; sdbot never opens pickles. {_CONVERT}")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or 8 + length > path.stat().st_size:
            raise ModelSourceError(f"`{path.name}` is damaged or not a safetensors file (its header length is wrong).")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ModelSourceError(f"`{path.name}` is damaged: its safetensors header is not valid JSON.") from None
    if not isinstance(header, dict):
        raise ModelSourceError(f"`{path.name}` is damaged: its safetensors header is not a JSON object.")
    return [key for key in header if key != "__metadata__"]


def _gguf_keys(path: Path) -> list[str]:
    from generation.models.quantized import read_gguf

    try:
        return list(read_gguf(path).tensors)
    except ValueError as error:
        raise ModelSourceError(str(error)) from None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _name(architecture: str | None) -> str:
    if not families.is_family(architecture):
        return "a model"
    label = families.family(architecture or "").label
    return f"an {label} model" if label[0] in "S" else f"a {label} model"


# --- the layers of a registered model ---------------------------------------------------------------


def model_shapes(entry: ModelEntry) -> ModelShapes | None:
    """The layer shapes of a model in the registry, from its component configs (no weights
    read): what uploaded LoRAs and embeddings are checked against. None when this machine has
    no configs for it (a Hub model not downloaded yet, a single file without --config). The
    transformer families (FLUX.1, Chroma, ..., Wan, LTX-Video) get `dit_shapes.DiTShapes`: their
    transformer's layers (and FLUX.1's CLIP), from transformer/config.json (and
    text_encoder/config.json)."""
    family = families.family(entry.family)
    if family.denoiser != "unet":
        from generation.models import dit_shapes

        if entry.kind == "tiny":
            return dit_shapes.tiny_shapes(entry.source)
        folder = _config_folder(entry)
        return dit_shapes.shapes_of_dit_folder(folder, family.id) if folder is not None else None
    if entry.kind == "tiny":
        return _tiny_shapes()
    folder = _config_folder(entry)
    return shapes_of_folder(folder) if folder is not None else None


def describe_model(entry: ModelEntry) -> str:
    """ "SDXL" for a standard model, "FLUX.1-schnell (GGUF)" for a variant; else its dimensions,
    with the layout it was set up as (the tiny model is SD 1.x's layout at a tiny size)."""
    family = families.family(entry.family)
    if family.denoiser != "unet":
        label = family.variant(entry.guessed_variant).label or family.label
        stored = {"fp8": "fp8 weights", "nf4": "nf4 weights"}.get(entry.quantization)
        if entry.source.lower().endswith(".gguf"):
            stored = "GGUF"
        label += f" ({stored})" if stored else ""
        return f"{label}, random weights" if entry.kind == "tiny" else label
    shapes = model_shapes(entry)
    if shapes is None:
        return ARCHITECTURE_NAMES[entry.family]
    layout = entry.architecture or ("sd1" if entry.kind == "tiny" else None)
    return shapes.describe(layout)


def weights_bytes(entry: ModelEntry) -> int | None:
    """What the model's weight files take on disk (about what it needs in memory at that
    precision); None when its files are not on this machine."""
    if entry.kind == "tiny":
        return None
    source = Path(entry.source).expanduser()
    if entry.kind == "file":
        if not source.is_file():
            return None
        total = source.stat().st_size
        if families.family(entry.family).denoiser != "unet" and entry.config:
            folder = _config_folder(entry)
            if folder is None:
                return None
            total += sum(f.stat().st_size for f in folder.rglob("*.safetensors") if f.parent.name != "transformer")
        return total
    folder = _config_folder(entry)
    if folder is None or not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.rglob("*.safetensors"))


def with_facts(entry: ModelEntry) -> ModelEntry:
    """`entry` with its family, variant and size read from its files where it does not say them
    (a settings entry names only its source). UnsupportedModel when the files are a family the bot
    does not run; other unreadable sources are left as they are (the first job that loads one
    reports it, as before)."""
    if entry.architecture and entry.size and (entry.variant or entry.architecture != "flux"):
        return entry
    try:
        facts = inspect_model_source(entry.source, entry.config)
    except UnsupportedModel:
        raise
    except ModelSourceError:
        return entry
    update: dict[str, Any] = {}
    if facts.architecture and not entry.architecture:
        update["architecture"] = facts.architecture
    if facts.size and not entry.size:
        update["size"] = facts.size
    if facts.variant and not entry.variant:
        update["variant"] = facts.variant
    return entry.model_copy(update=update) if update else entry


@lru_cache(maxsize=1)
def _tiny_shapes() -> ModelShapes:
    return shapes_from_configs(tiny_config.UNET, [tiny_config.TEXT_ENCODER])


def _config_folder(entry: ModelEntry) -> Path | None:
    source = entry.config if entry.kind == "file" else entry.source
    if source is None:
        return None
    if source_kind(source) == "hub" and not Path(source).expanduser().is_dir():
        return _cached_hub_folder(source)
    return Path(source).expanduser()
