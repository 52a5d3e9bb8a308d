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

from config.models import ARCHITECTURE_NAMES, NATIVE_SIZES, SINGLE_FILE_SUFFIXES, ModelEntry, source_kind
from generation.models import tiny_config
from generation.models.hf_source import HUB_ID
from generation.models.shapes import ModelShapes, shapes_from_configs, shapes_of_folder

SUPPORTED_PIPELINES = {"StableDiffusionPipeline": None, "StableDiffusionXLPipeline": "sdxl"}
CROSS_ATTENTION_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
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


@dataclass(frozen=True)
class ModelFacts:
    architecture: str | None  # sd1 | sd2 | sdxl, or None when the files do not say (a tiny test model)
    size: int | None  # native side in pixels, when the files say
    notes: tuple[str, ...] = field(default=())  # things the admin should know, e.g. "downloads on first use"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def inspect_model_source(source: str, config: str | None = None) -> ModelFacts:
    """What `source` (with `config`, for single files) is; ModelSourceError if it cannot load."""
    kind = source_kind(source)
    if kind == "tiny":
        return ModelFacts("sd1", 64)
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
    if class_name not in SUPPORTED_PIPELINES:
        raise ModelSourceError(
            f"{shown} is a {class_name}; sdbot runs Stable Diffusion 1.x/2.x and SDXL pipelines ({', '.join(SUPPORTED_PIPELINES)})."
        )
    unet_dir = path / "unet"
    if unet_dir.is_dir() and not any(unet_dir.glob("*.safetensors")):
        if any(unet_dir.glob("*.bin")) or any(unet_dir.glob("*.ckpt")):
            raise ModelSourceError(
                f"{shown} has only pickle weights (.bin); sdbot loads .safetensors only, because a pickle can run code. {_CONVERT}"
            )
        raise ModelSourceError(f"{shown} has no UNet weights (no .safetensors in unet/).")
    unet = _json(unet_dir / "config.json") or {}
    vae = _json(path / "vae" / "config.json") or {}
    architecture = SUPPORTED_PIPELINES[class_name] or _width_architecture(unet.get("cross_attention_dim"))
    sample = unet.get("sample_size")
    scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    size = sample * scale if isinstance(sample, int) and sample > 0 else None
    return ModelFacts(architecture, size or NATIVE_SIZES.get(architecture or ""))


def _hub(repo_id: str) -> ModelFacts:
    if not HUB_ID.match(repo_id):
        raise ModelSourceError(f"`{repo_id}` is neither a folder on the bot's machine nor a Hub id (org/name).")
    cached = _cached_hub_folder(repo_id)
    if cached is not None:
        facts = _folder(cached, f"the cached Hub model `{repo_id}`")
        return ModelFacts(facts.architecture, facts.size, ("It is in this machine's Hugging Face cache.",))
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
    if suffix != ".safetensors":
        what = "a pickle checkpoint" if suffix in SINGLE_FILE_SUFFIXES else f"a `{suffix}` file"
        raise ModelSourceError(
            f"`{path.name}` is {what}; loading a pickle can run code hidden in it, so sdbot only loads .safetensors. {_CONVERT}"
        )
    if not path.is_file():
        raise ModelSourceError(f"There is no file `{path}` on the bot's machine.")
    keys = _safetensors_keys(path)
    if not any(key.startswith("model.diffusion_model.") for key in keys):
        lora = any(".lora_" in key or key.startswith(("lora_", "lycoris_")) for key in keys)
        what = "a LoRA: upload it with `/lora upload`" if lora else "not a Stable Diffusion checkpoint (no UNet)"
        raise ModelSourceError(f"`{path.name}` is {what}.")
    architecture = _checkpoint_architecture(keys)
    notes: tuple[str, ...] = ()
    config_facts: ModelFacts | None = None
    if config:
        config_facts = _config(config)
        if architecture and config_facts.architecture and config_facts.architecture != architecture:
            raise ModelSourceError(
                f"`{path.name}` is {_name(architecture)} but the --config `{config}` is {_name(config_facts.architecture)}; "
                "give the configs of a model of the same kind."
            )
    elif hub_offline():
        raise ModelSourceError(
            f"A single file needs its components' configs, and HF_HUB_OFFLINE is set, so they cannot be fetched. "
            f"Add `--config FOLDER`: a diffusers folder of {_name(architecture)} (its weights are not used)."
        )
    else:
        notes = ("Without --config, its component configs are fetched from the Hugging Face Hub when it first loads.",)
    size = config_facts.size if config_facts else None
    return ModelFacts(
        architecture or (config_facts.architecture if config_facts else None), size or NATIVE_SIZES.get(architecture or ""), notes
    )


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


def _checkpoint_architecture(keys: list[str]) -> str | None:
    """LDM checkpoints say what they are by their text encoders' key prefixes."""
    if any(key.startswith("conditioner.embedders.1.") for key in keys):
        return "sdxl"
    if any(key.startswith("cond_stage_model.model.") for key in keys):  # OpenCLIP: SD 2.x
        return "sd2"
    if any(key.startswith("cond_stage_model.transformer.") for key in keys):  # CLIP ViT-L: SD 1.x
        return "sd1"
    return None


def _width_architecture(width: Any) -> str | None:
    return CROSS_ATTENTION_WIDTHS.get(width) if isinstance(width, int) else None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _name(architecture: str | None) -> str:
    return {"sd1": "an SD 1.x model", "sd2": "an SD 2.x model", "sdxl": "an SDXL model"}.get(architecture or "", "a model")


# --- the layers of a registered model ---------------------------------------------------------------


def model_shapes(entry: ModelEntry) -> ModelShapes | None:
    """The layer shapes of a model in the registry, from its component configs (no weights
    read): what uploaded LoRAs and embeddings are checked against. None when this machine has
    no configs for it (a Hub model not downloaded yet, a single file without --config)."""
    if entry.kind == "tiny":
        return _tiny_shapes()
    folder = _config_folder(entry)
    return shapes_of_folder(folder) if folder is not None else None


def describe_model(entry: ModelEntry) -> str:
    """ "SDXL" for a standard model; else its dimensions, with the layout it was set up as (the
    tiny model is SD 1.x's layout at a tiny size)."""
    shapes = model_shapes(entry)
    if shapes is None:
        return ARCHITECTURE_NAMES[entry.family]
    layout = entry.architecture or ("sd1" if entry.kind == "tiny" else None)
    return shapes.describe(layout)


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
