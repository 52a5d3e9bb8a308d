"""Loading models into pipelines, and keeping the loaded ones (an LRU of `max_loaded_models`).

Sources (config.models): `tiny` (built, saved, then loaded like any folder), a diffusers folder,
a Hub id, or a single-file `.safetensors` checkpoint. Weights load with `use_safetensors=True`;
pickle checkpoints (.ckpt/.pt/.bin) are refused, because loading one can run arbitrary code.
A single file needs its components' configs: from `config` in its registry entry (a local folder
or Hub id), else diffusers fetches them from the Hub, which fails offline; the error says so.

img2img shares the txt2img pipeline's weights through `AutoPipelineForImage2Image.from_pipe`,
which keeps their dtype. Beware the pipeline classes' own `from_pipe` (e.g.
`StableDiffusionImg2ImgPipeline.from_pipe`): in diffusers 0.42 it casts the shared weights to
float32 unless given `dtype=`, silently doubling an fp16 model's memory.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from config.models import ModelEntry, ModelRegistry
from generation.errors import PICKLE_SUFFIXES, ModelLoadError
from generation.models.speed import SpeedOptions, apply_speed_options, apply_vae_options
from generation.models.tiny import ensure_tiny

log = logging.getLogger(__name__)

SUPPORTED = {"StableDiffusionPipeline": "sd1/sd2", "StableDiffusionXLPipeline": "sdxl"}
OFFLINE_HINT = "If this machine has no network, download the model once elsewhere and point SDBOT_MODEL at the folder or file."
TINY_HINT = "To try the bot without a real model, set SDBOT_MODEL=tiny (random weights: it draws noise, offline)."


def resolve_device(setting: str) -> torch.device:
    if setting != "auto":
        return torch.device(setting)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting != "auto":
        return getattr(torch, setting)
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


@dataclass
class LoadedModel:
    name: str
    entry: ModelEntry
    txt2img: Any
    scheduler_config: dict[str, Any]  # the model's own, before any per-job scheduler
    speed: SpeedOptions = field(default_factory=SpeedOptions)  # set on its modules; VAE overrides get them too
    _pipes: dict[str, Any] = field(default_factory=dict, repr=False)
    _vaes: dict[str, Any] = field(default_factory=dict, repr=False)  # VAE overrides, by source
    # AnimateDiff pipelines by "kind:motion adapter" (generation.models.motion builds them)
    clip_pipes: dict[str, Any] = field(default_factory=dict, repr=False)

    def pipeline(self, kind: str) -> Any:
        """The pipeline for `kind` ("txt2img", "img2img", "inpaint"), sharing the loaded weights."""
        if kind == "txt2img":
            return self.txt2img
        if kind not in ("img2img", "inpaint"):
            raise ValueError(f"no pipeline for job kind {kind!r}")
        if kind not in self._pipes:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = AutoPipelineForImage2Image if kind == "img2img" else AutoPipelineForInpainting
            pipe = auto.from_pipe(self.txt2img)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[kind] = pipe
        return self._pipes[kind]

    def control_pipeline(self, kind: str, controlnets: tuple[Any, ...]) -> Any:
        """The ControlNet pipeline for `kind` with these ControlNets (several: multi-ControlNet),
        sharing the loaded weights. Built per pass: `from_pipe` only wires existing modules."""
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

        auto = {"txt2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting}.get(kind)
        if auto is None:
            raise ValueError(f"no ControlNet pipeline for job kind {kind!r}")
        pipe = auto.from_pipe(self.txt2img, controlnet=controlnets[0] if len(controlnets) == 1 else list(controlnets))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def vae(self, source: str, device: torch.device, dtype: torch.dtype) -> Any:
        """A VAE other than the model's own (loaded once, kept with the model)."""
        if source not in self._vaes:
            self._vaes[source] = load_vae(source, self.txt2img.vae.config, device, dtype)
            apply_vae_options(self._vaes[source], self.speed)
        return self._vaes[source]


class ModelCache:
    """Loaded models by name, least recently used dropped first. Used from the engine thread only.
    `speed` (attention, channels_last, torch_compile) is set on each model as it loads."""

    def __init__(
        self,
        registry: ModelRegistry,
        models_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
        max_loaded: int = 1,
        speed: SpeedOptions | None = None,
    ):
        self.registry = registry
        self.models_dir = Path(models_dir)
        self.device = device
        self.dtype = dtype
        self.max_loaded = max_loaded
        self.speed = speed or SpeedOptions()
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        # The most recently used model's name. Read from the event loop while the engine thread
        # works, so it is one attribute (assigned atomically), not a view of the OrderedDict.
        self.current: str | None = None

    def get(self, name: str) -> LoadedModel:
        self._drop_stale()
        entry = self.registry.get(name)
        if entry is None:
            raise ModelLoadError(
                f"the model `{name}` is not available any more (an admin removed it). Models: {', '.join(self.registry.names())}."
            )
        key = entry.display_name
        if key in self._loaded:
            self._loaded.move_to_end(key)
            self.current = key
            return self._loaded[key]
        while len(self._loaded) >= self.max_loaded:
            self._unload(next(iter(self._loaded)))
        pipe = load_pipeline(entry, self.models_dir, self.device, self.dtype, self.speed)
        loaded = LoadedModel(key, entry, pipe, dict(pipe.scheduler.config), self.speed)
        self._loaded[key] = loaded
        self.current = key
        return loaded

    def _drop_stale(self) -> None:
        """Unload models an admin removed, or replaced with another source under the same name."""
        for key, loaded in list(self._loaded.items()):
            if self.registry.get(key) != loaded.entry:
                self._unload(key)

    def _unload(self, key: str) -> None:
        self._loaded.pop(key)
        log.info("unloading model %s", key)
        if self.current == key:
            self.current = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def load_vae(source: str, base_config: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """A VAE from a diffusers folder (its own, or a model folder's `vae/`), a Hub id, or a single
    `.safetensors` file in the original (LDM) layout, whose architecture is taken from the model's
    own VAE config so that nothing is fetched from the Hub."""
    import json
    import tempfile

    from diffusers import AutoencoderKL

    path = Path(source).expanduser()
    try:
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelLoadError(f"the VAE `{path.name}` is a pickle file; sdbot only loads .safetensors (a pickle can run code).")
        if path.suffix.lower() == ".safetensors":
            if not path.is_file():
                raise ModelLoadError(f"the VAE file `{path}` does not exist. Check the `vaes` config.")
            with tempfile.TemporaryDirectory() as config_dir:
                (Path(config_dir) / "config.json").write_text(json.dumps(dict(base_config)))
                vae = AutoencoderKL.from_single_file(str(path), config=config_dir, dtype=dtype)
        elif path.is_dir():
            subfolder = "vae" if (path / "vae" / "config.json").exists() else None
            vae = AutoencoderKL.from_pretrained(str(path), subfolder=subfolder, dtype=dtype, use_safetensors=True)
        else:
            vae = AutoencoderKL.from_pretrained(source, dtype=dtype, use_safetensors=True)
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(
            f"I could not load the VAE `{source}` ({type(error).__name__}: {error}). Check the `vaes` config; {OFFLINE_HINT}"
        ) from error
    return vae.to(device).eval()


def load_pipeline(entry: ModelEntry, models_dir: Path, device: torch.device, dtype: torch.dtype, speed: SpeedOptions | None = None) -> Any:
    """The model's txt2img pipeline on `device`, with the speed options (if given) set on it."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # progress bars on stderr are noise in a bot's log
    transformers_logging.disable_progress_bar()
    name = entry.display_name
    log.info("loading model %s from %s (%s, %s)", name, entry.source, device, dtype)
    try:
        if entry.kind == "file":
            pipe = _load_single_file(entry, dtype)
        else:
            source = str(ensure_tiny(models_dir)) if entry.kind == "tiny" else _folder_or_hub(entry)
            pipe = _load_pretrained(source, dtype)
        pipe.to(device)
    except ModelLoadError as error:
        raise ModelLoadError(f"{error.message} {TINY_HINT}") from None
    except Exception as error:  # turn library errors into advice
        raise ModelLoadError(f"{_explain(entry, error)} {TINY_HINT}") from error
    pipe.set_progress_bar_config(disable=True)
    if speed is not None:
        apply_speed_options(pipe, speed)
    return pipe


def _folder_or_hub(entry: ModelEntry) -> str:
    if entry.kind == "hub":
        return entry.source
    path = Path(entry.source).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"the model folder `{path}` does not exist. Check SDBOT_MODEL (or the model's `source`).")
    if not (path / "model_index.json").exists():
        raise ModelLoadError(
            f"`{path}` is not a diffusers folder (it has no model_index.json). Point SDBOT_MODEL at a folder "
            "saved with `save_pretrained`, a Hub id, or a single .safetensors checkpoint."
        )
    return str(path)


def _load_pretrained(source: str, dtype: torch.dtype) -> Any:
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    index = DiffusionPipeline.load_config(source)
    class_name = index.get("_class_name", "?")
    if class_name not in SUPPORTED:
        raise ModelLoadError(f"`{source}` is a {class_name}; sdbot runs Stable Diffusion 1.x/2.x and SDXL models ({', '.join(SUPPORTED)}).")
    extra: dict[str, Any] = {}
    if "safety_checker" in index:
        # Content policy belongs to the bot's safety settings, not to a checker that blacks out images.
        extra = {"safety_checker": None, "requires_safety_checker": False}
    return AutoPipelineForText2Image.from_pretrained(source, dtype=dtype, use_safetensors=True, **extra)


def _load_single_file(entry: ModelEntry, dtype: torch.dtype) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from safetensors import safe_open

    path = Path(entry.source).expanduser()
    if path.suffix.lower() != ".safetensors":
        raise ModelLoadError(
            f"`{path.name}` is a pickle checkpoint ({path.suffix}); loading one can run code hidden in it, so sdbot "
            "only loads .safetensors. Convert it once on a trusted machine (for example with diffusers' "
            "convert scripts or `safetensors.torch.save_file(torch.load(...)['state_dict'], ...)`)."
        )
    if not path.is_file():
        raise ModelLoadError(f"the checkpoint `{path}` does not exist. Check SDBOT_MODEL (or the model's `source`).")
    with safe_open(str(path), framework="pt") as handle:
        is_xl = any(key.startswith("conditioner.embedders.1.") for key in handle.keys())  # noqa: SIM118 - safe_open is not iterable
    pipeline_class = StableDiffusionXLPipeline if is_xl else StableDiffusionPipeline
    kwargs: dict[str, Any] = {"dtype": dtype}
    if entry.config:
        kwargs["config"] = entry.config
    if not is_xl:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    return pipeline_class.from_single_file(str(path), **kwargs)


def _explain(entry: ModelEntry, error: Exception) -> str:
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    name = entry.display_name
    chain = [error, *_causes(error)]
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if any(isinstance(e, GatedRepoError) for e in chain):
        return f"the model `{entry.source}` is gated on the Hub: accept its licence there and set HF_TOKEN."
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return f"there is no model `{entry.source}` on the Hugging Face Hub. Check the id (org/name) in SDBOT_MODEL."
    if offline or any(isinstance(e, LocalEntryNotFoundError | ConnectionError | OSError) for e in chain):
        where = "HF_HUB_OFFLINE is set" if offline else "it is not in the local cache and could not be downloaded"
        config_hint = (
            " A single-file checkpoint needs its component configs: set `config` for it to a local diffusers folder."
            if entry.kind == "file"
            else ""
        )
        return (
            f"I could not load the model `{name}` ({entry.source}): {where}.{config_hint} {OFFLINE_HINT} ({type(error).__name__}: {error})"
        )
    return f"I could not load the model `{name}` ({entry.source}): {type(error).__name__}: {error}. {OFFLINE_HINT}"


def _causes(error: BaseException) -> list[BaseException]:
    found = []
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
        found.append(error)
    return found
