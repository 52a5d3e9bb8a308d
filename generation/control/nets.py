"""ControlNet models and the Instruct Pix2Pix model, loaded once and kept beside the base models.

ControlNets are small beside their base model (an SD 1.5 ControlNet is 361M parameters, 0.7 GB
in fp16), and people switch between them often, so they are kept loaded in an LRU by parameter
bytes (`SDBOT_CONTROLNET_CACHE_BYTES`); a job never reloads the base model to use one (its
pipeline is built from the base model's modules, sharing its weights). Weights load from
`.safetensors` only. Engine thread only.

Each is loaded as the class its config.json names, which must be the ControlNet class of the
job's model family (`Family.controlnet`; the command layer checks the fit before queueing, this is
the worker's backstop). The built-in `tiny-<type>` ControlNets are built for the family of the
model in use, and kept per family.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from config.models import ControlNetEntry
from generation.control.catalog import TINY_PREFIX, controlnet_class, made_for
from generation.control.tiny import ensure_tiny_controlnet, ensure_tiny_pix2pix
from generation.errors import ModelLoadError
from generation.models import families
from generation.spec import CONTROL_TYPES

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 4 * 1024**3


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


class ControlNets:
    def __init__(
        self,
        entries: dict[str, ControlNetEntry],
        models_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ):
        self.entries = entries
        self.models_dir = Path(models_dir)
        self.device = device
        self.dtype = dtype
        self.budget_bytes = budget_bytes
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        # Bytes of each as loaded: Z-Image's pipeline later links the transformer's embedders and
        # refiners into its ControlNet (`from_transformer`), which are the model's, not the ControlNet's.
        self._bytes: dict[str, int] = {}
        self.loads = 0

    def entry(self, name: str) -> ControlNetEntry:
        if name.startswith(TINY_PREFIX) and name[len(TINY_PREFIX) :] in CONTROL_TYPES:
            return ControlNetEntry(source="tiny", type=name[len(TINY_PREFIX) :])  # type: ignore[arg-type]
        entry = self.entries.get(name)
        if entry is None:
            raise ModelLoadError(f"the ControlNet `{name}` is not configured any more (SDBOT_CONTROLNETS).")
        return entry

    def get(self, name: str, family: str = "sd1") -> Any:
        """The ControlNet `name` for a model of `family` (a family id), loaded once and kept."""
        entry = self.entry(name)
        key = f"{name} ({family})" if entry.source == "tiny" else name  # the tiny ones are built per family
        return self.keep(key, lambda: self._load(name, entry, families.family(family)))

    def keep(self, key: str, load: Callable[[], Any], size: Callable[[Any], int] = parameter_bytes) -> Any:
        """`load()` once under `key`, kept in this LRU by bytes: the ControlNets, and the
        IP-Adapters of image references (generation.control.ip_adapters), share one budget."""
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        model = load()
        self.loads += 1
        self._loaded[key] = model
        self._bytes[key] = size(model)
        while len(self._loaded) > 1 and sum(self._bytes[k] for k in self._loaded) > self.budget_bytes:
            dropped, _ = self._loaded.popitem(last=False)  # the least recently used; never the one just loaded
            self._bytes.pop(dropped)
            log.info("unloading %s", dropped)
        return model

    def _load(self, name: str, entry: ControlNetEntry, family: families.Family) -> Any:
        import diffusers

        if family.controlnet is None:
            raise ModelLoadError(f"ControlNet on {family.label} isn't supported here; pick a model of another family.")
        if entry.source == "tiny":
            source = str(ensure_tiny_controlnet(self.models_dir, entry.type, family.id))
        else:
            source = entry.source
            made = made_for(entry)
            class_name = controlnet_class(source)
            if made is not None and class_name not in (None, family.controlnet.model_class):
                raise ModelLoadError(
                    f"the ControlNet `{name}` is for {made.label} ({class_name}); this model is {family.label}, whose "
                    f"ControlNets are {family.controlnet.model_class}s. Pick one made for it (SDBOT_CONTROLNETS)."
                )
        log.info("loading ControlNet %s from %s (%s)", name, source, family.controlnet.model_class)
        try:
            model = getattr(diffusers, family.controlnet.model_class).from_pretrained(source, dtype=self.dtype, use_safetensors=True)
        except Exception as error:  # turn library errors into advice
            raise ModelLoadError(
                f"I could not load the ControlNet `{name}` ({source}) as a {family.label} ControlNet: {type(error).__name__}: {error}. "
                "It must be a diffusers folder (config.json and .safetensors weights), or a Hub id already downloaded; check "
                "SDBOT_CONTROLNETS."
            ) from error
        return model.to(self.device).eval()


def load_instruct_pipeline(source: str, models_dir: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """An Instruct Pix2Pix pipeline (SD 1.x or SDXL form) from a diffusers folder or cached Hub id;
    `tiny`: the built-in tiny one."""
    from diffusers import DiffusionPipeline

    folder = str(ensure_tiny_pix2pix(models_dir)) if source == "tiny" else source
    try:
        index = DiffusionPipeline.load_config(folder)
        class_name = index.get("_class_name")
        if class_name not in ("StableDiffusionInstructPix2PixPipeline", "StableDiffusionXLInstructPix2PixPipeline"):
            raise ModelLoadError(
                f"`{source}` is a {class_name}, not an Instruct Pix2Pix model; set SDBOT_INSTRUCT_MODEL to one "
                "(e.g. timbrooks/instruct-pix2pix, downloaded once)."
            )
        extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True, **extra)
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(
            f"I could not load the instruct model `{source}`: {type(error).__name__}: {error}. Check SDBOT_INSTRUCT_MODEL."
        ) from error
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
