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
from generation.errors import PICKLE_SUFFIXES, EngineUserError, ModelLoadError
from generation.models import families, tiny_flux2, tiny_qwen, tiny_sd3, tiny_video, tiny_zimage
from generation.models.families import Family
from generation.models.speed import SpeedOptions, apply_speed_options, apply_vae_options
from generation.models.tiny import ensure_tiny
from generation.models.tiny_dit import ensure_tiny_chroma, ensure_tiny_flux, ensure_tiny_kontext

log = logging.getLogger(__name__)

OFFLINE_HINT = "If this machine has no network, download the model once elsewhere and point SDBOT_MODEL at the folder or file."
TINY_HINT = "To try the bot without a real model, set SDBOT_MODEL=tiny (random weights: it draws noise, offline)."
TINY_BUILDERS = {
    "tiny": ensure_tiny,
    "tiny-flux": ensure_tiny_flux,
    "tiny-chroma": ensure_tiny_chroma,
    "tiny-sd3": tiny_sd3.ensure,
    "tiny-qwen": tiny_qwen.ensure,
    "tiny-zimage": tiny_zimage.ensure,
    "tiny-flux2": tiny_flux2.ensure,
    "tiny-kontext": ensure_tiny_kontext,
    "tiny-qwen-edit-plus": tiny_qwen.ensure_edit_plus,
    "tiny-wan": tiny_video.ensure_wan,
    "tiny-wan-i2v": tiny_video.ensure_wan_i2v,
    "tiny-ltx": tiny_video.ensure_ltx,
}
# Free GPU memory asked beyond a pipeline's weights before `memory: auto` keeps it all on the GPU
# (activations, the VAE decode at 1024², the CUDA context).
AUTO_MEMORY_MARGIN = 1.25
AUTO_MEMORY_SPARE_BYTES = 3 * 1024**3


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
    family: Family = families.SD1  # what the loaded files are (the loader reads it from them)
    speed: SpeedOptions = field(default_factory=SpeedOptions)  # set on its modules; VAE overrides get them too
    _pipes: dict[str, Any] = field(default_factory=dict, repr=False)
    _vaes: dict[str, Any] = field(default_factory=dict, repr=False)  # VAE overrides, by source
    # AnimateDiff pipelines by "kind:motion adapter" (generation.models.motion builds them)
    clip_pipes: dict[str, Any] = field(default_factory=dict, repr=False)
    # A video family's pipelines by mode (t2v, i2v, flf2v), made of the loaded modules (`video_pipeline`)
    video_pipes: dict[str, Any] = field(default_factory=dict, repr=False)
    # Where its components' folders are (a diffusers folder or Hub id; a single file's `config`): an
    # edit pipeline's components that the txt2img pipeline has not (Qwen-Image-Edit's processor) load from it.
    components_source: str | None = None

    def pipeline(self, kind: str) -> Any:
        """The pipeline for `kind` ("txt2img", "img2img", "inpaint", "edit", "edit-inpaint": a
        masked edit), sharing the loaded weights."""
        if kind == "txt2img":
            return self.txt2img
        if kind in ("edit", "edit-inpaint"):
            return self._edit_pipeline(kind)
        if kind not in ("img2img", "inpaint"):
            raise ValueError(f"no pipeline for job kind {kind!r}")
        if kind not in self._pipes:
            self._pipes[kind] = share_weights(self.family, kind, self.txt2img)
        return self._pipes[kind]

    def _edit_pipeline(self, kind: str = "edit") -> Any:
        """The family's instruction-edit pipeline for this model's variant (FLUX.1 Kontext's,
        FLUX.2 Klein's with references), or its masked one ("edit-inpaint": Kontext's, Qwen-Image-
        Edit's, Klein's inpaint pipeline), made of the loaded modules. A component the txt2img
        pipeline lacks (Qwen-Image-Edit's processor) is loaded once and shared by both."""
        variant = self.entry.guessed_variant
        masked = kind == "edit-inpaint"
        class_name = self.family.edit_inpaint_pipeline(variant) if masked else self.family.edit_pipeline(variant)
        if class_name is None:
            label = self.family.variant(variant).label or self.family.label
            what = "edit inside a mask" if masked and self.family.edit_pipeline(variant) else "edit pictures by instruction"
            raise EngineUserError(f"the model `{self.name}` ({label}) doesn't {what}.")
        if kind not in self._pipes:
            import diffusers

            pipeline_class = getattr(diffusers, class_name)
            built = [pipe.components for key, pipe in self._pipes.items() if key.startswith("edit")]
            extra = {
                name: next((components[name] for components in built if components.get(name) is not None), None)
                or _load_component(self.components_source, name)
                for name in _missing_components(pipeline_class, self.txt2img)
            }
            self._pipes[kind] = _from_components(pipeline_class, self.txt2img, **extra)
            self._pipes[kind].set_progress_bar_config(disable=True)
        return self._pipes[kind]

    def video_pipeline(self, mode: str) -> Any:
        """A video model's pipeline for `mode` (t2v, i2v, flf2v: `Family.video()`'s), sharing the
        loaded weights: the loaded pipeline itself where it is that class, else one made of its
        modules and its settings (Wan 2.2's `boundary_ratio` between its two experts, TI2V's
        `expand_timesteps`), which are pipeline config, not components."""
        support = self.family.video()
        if support is None or mode not in support.pipelines:
            raise EngineUserError(f"the model `{self.name}` ({self.family.label}) draws no clips of that kind.")
        class_name = support.pipelines[mode]
        if type(self.txt2img).__name__ == class_name:
            return self.txt2img
        if mode not in self.video_pipes:
            import inspect

            import diffusers

            pipeline_class = getattr(diffusers, class_name)
            accepted = inspect.signature(pipeline_class.__init__).parameters
            settings = {
                key: value
                for key, value in self.txt2img.config.items()
                if key in accepted and not key.startswith("_") and key not in self.txt2img.components
            }
            self.video_pipes[mode] = _from_components(pipeline_class, self.txt2img, **settings)
            self.video_pipes[mode].set_progress_bar_config(disable=True)
        return self.video_pipes[mode]

    @property
    def denoiser(self) -> Any:
        """The UNet or transformer."""
        return getattr(self.txt2img, self.family.denoiser)

    def control_pipeline(self, kind: str, controlnets: tuple[Any, ...]) -> Any:
        """The family's ControlNet pipeline for `kind` with these ControlNets (several: its
        multi-ControlNet), sharing the loaded weights. Built per pass: it only wires existing
        modules. UNet families go through AutoPipeline's `from_pipe` (which keeps dtypes); others
        are built from the components as they are (`share_weights`)."""
        import diffusers

        support = self.family.controlnet
        if support is None or kind not in support.pipelines:
            why = self.family.why_not("controlnet") or (support.missing.get(kind) if support else None) or "it has no such pipeline"
            raise EngineUserError(f"ControlNet can't steer this {kind} pass on {self.family.label}: {why}.")
        several = len(controlnets) > 1
        if several and support.multi_class is None:
            raise EngineUserError(f"several controls can't be used on {self.family.label}: {support.single_only}.")
        if self.family.denoiser == "unet":
            auto = {"txt2img": "AutoPipelineForText2Image", "img2img": "AutoPipelineForImage2Image", "inpaint": "AutoPipelineForInpainting"}
            pipe = getattr(diffusers, auto[kind]).from_pipe(self.txt2img, controlnet=list(controlnets) if several else controlnets[0])
        else:
            net = getattr(diffusers, support.multi_class)(list(controlnets)) if several else controlnets[0]  # type: ignore[arg-type]
            pipe = _from_components(getattr(diffusers, support.pipelines[kind]), self.txt2img, controlnet=net)
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
        pipe, family = load_pipeline(entry, self.models_dir, self.device, self.dtype, self.speed)
        loaded = LoadedModel(key, entry, pipe, dict(pipe.scheduler.config), family, self.speed)
        loaded.components_source = components_source(entry, self.models_dir)
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


def share_weights(family: Family, kind: str, txt2img: Any) -> Any:
    """The family's pipeline for `kind` made of `txt2img`'s modules, as they are (same weights,
    dtype, quantization and offload hooks). UNet families go through AutoPipeline's `from_pipe`
    (which keeps dtypes); others are built from the components directly, because a pipeline
    class's own `from_pipe` casts every module to one dtype (float32 unless told), which would
    undo an fp8 or GGUF transformer's storage."""
    import diffusers

    if kind not in family.pipelines:
        raise ValueError(f"{family.label} has no pipeline for job kind {kind!r}")
    if family.denoiser == "unet":
        auto = diffusers.AutoPipelineForImage2Image if kind == "img2img" else diffusers.AutoPipelineForInpainting
        pipe = auto.from_pipe(txt2img)
    else:
        pipe = _from_components(getattr(diffusers, family.pipelines[kind]), txt2img)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _from_components(pipeline_class: Any, txt2img: Any, **extra: Any) -> Any:
    """`pipeline_class` made of `txt2img`'s modules as they are (and `extra` ones: a ControlNet)."""
    import inspect

    accepted = inspect.signature(pipeline_class.__init__).parameters
    return pipeline_class(**{name: module for name, module in txt2img.components.items() if name in accepted}, **extra)


def _missing_components(pipeline_class: Any, txt2img: Any) -> list[str]:
    """The components `pipeline_class` requires that `txt2img` has not (Qwen-Image-Edit's processor)."""
    import inspect

    accepted = inspect.signature(pipeline_class.__init__).parameters
    return [
        name
        for name, parameter in accepted.items()
        if name not in ("self", "args", "kwargs") and parameter.default is inspect.Parameter.empty and name not in txt2img.components
    ]


def _load_component(source: str | None, name: str) -> Any:
    """The component `name` of the model at `source`, by the class its model_index.json names."""
    import importlib

    import diffusers

    if source is None:
        raise EngineUserError(
            f"this model's files have no `{name}`, which its edit pipeline needs; point the model at its diffusers folder."
        )
    index = diffusers.DiffusionPipeline.load_config(source)
    if name not in index:
        raise EngineUserError(f"the model at `{source}` has no `{name}` (model_index.json), which its edit pipeline needs.")
    library, class_name = index[name]
    return getattr(importlib.import_module(library), class_name).from_pretrained(source, subfolder=name)


def components_source(entry: ModelEntry, models_dir: Path) -> str | None:
    """Where a model's components' folders are: its diffusers folder or Hub id, a single file's `config`."""
    if entry.kind == "tiny":
        return str(TINY_BUILDERS[entry.source](models_dir))
    if entry.kind == "file":
        return entry.config
    return str(Path(entry.source).expanduser()) if entry.kind == "folder" else entry.source


def load_pipeline(
    entry: ModelEntry, models_dir: Path, device: torch.device, dtype: torch.dtype, speed: SpeedOptions | None = None
) -> tuple[Any, Family]:
    """The model's txt2img pipeline on `device` (or offloaded to it, by the entry's memory mode),
    with the speed options (if given) set on it, and the family its files are."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # progress bars on stderr are noise in a bot's log
    transformers_logging.disable_progress_bar()
    name = entry.display_name
    log.info("loading model %s from %s (%s, %s)", name, entry.source, device, dtype)
    try:
        nf4 = _nf4_wanted(entry, device)
        if entry.kind == "file":
            pipe, family = _load_single_file(entry, dtype, nf4)
        else:
            source = str(TINY_BUILDERS[entry.source](models_dir)) if entry.kind == "tiny" else _folder_or_hub(entry)
            pipe, family = _load_pretrained(source, dtype, nf4)
        _check_declared_family(entry, family)
        _mend_config(pipe, family)
        _store_weights(entry, pipe, family, device, dtype)
        _place(entry, pipe, family, device)
    except ModelLoadError as error:
        raise ModelLoadError(f"{error.message} {TINY_HINT}") from None
    except Exception as error:  # turn library errors into advice
        raise ModelLoadError(f"{_explain(entry, error)} {TINY_HINT}") from error
    pipe.set_progress_bar_config(disable=True)
    if speed is not None:
        apply_speed_options(pipe, speed, family.denoiser)
    return pipe, family


def _check_declared_family(entry: ModelEntry, family: Family) -> None:
    """A model set up as one family whose files are another would draw with the wrong defaults
    and options. Within the UNet families the declared one stands, as before (a custom UNet may be
    declared SD 1.x-like for its LoRAs)."""
    declared = families.family(entry.architecture) if families.is_family(entry.architecture) else None
    if declared is not None and declared is not family and "transformer" in (declared.denoiser, family.denoiser):
        raise ModelLoadError(
            f"the model `{entry.display_name}` is set up as {declared.label}, but its files are {family.label}. "
            "Fix its `architecture` in the config (or leave it out: it is read from the files)."
        )


def _mend_config(pipe: Any, family: Family) -> None:
    """diffusers 0.42.1's ChromaInpaintPipeline reads `transformer.config.guidance_embeds`, which a
    transformer without a guidance embedding (Chroma's) does not have: say False, what it means."""
    transformer = getattr(pipe, "transformer", None)
    if family.denoiser == "transformer" and transformer is not None and "guidance_embeds" not in transformer.config:
        transformer.register_to_config(guidance_embeds=False)


def _store_weights(entry: ModelEntry, pipe: Any, family: Family, device: torch.device, dtype: torch.dtype) -> None:
    """The entry's fp8 storage of the denoiser (nf4 and GGUF are quantized as they load); Wan 2.2
    A14B's second expert (`transformer_2`, the low-noise steps') too."""
    if entry.quantization == "fp8":
        from generation.models.quantized import store_in_fp8

        store_in_fp8(getattr(pipe, family.denoiser), compute_dtype=dtype)
        second = getattr(pipe, f"{family.denoiser}_2", None) if family.video_support is not None else None
        if second is not None and not any(hasattr(p, "quant_type") for p in second.parameters()):
            store_in_fp8(second, compute_dtype=dtype)


def _nf4_wanted(entry: ModelEntry, device: torch.device) -> bool:
    """Whether to load the denoiser in bitsandbytes nf4; ModelLoadError where it can't be."""
    if entry.quantization != "nf4":
        return False
    if device.type != "cuda":
        raise ModelLoadError(
            f"the model `{entry.display_name}` asks for nf4 (bitsandbytes 4-bit), which needs a CUDA GPU; this worker "
            f"draws on {device.type}. Use `quantization: fp8` or a GGUF file instead."
        )
    if entry.source.lower().endswith(".gguf"):
        raise ModelLoadError(f"the model `{entry.display_name}` is a GGUF file, quantized already; leave out `quantization: nf4`.")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            f"the model `{entry.display_name}` asks for nf4, which needs the bitsandbytes package on this worker "
            "(`pip install bitsandbytes`; it is not installed by default). Or use `quantization: fp8`."
        )
    return True


def _nf4_config(family: Family, dtype: torch.dtype, *, pipeline: bool) -> Any:
    """diffusers' bitsandbytes nf4 config for the family's denoiser (compute in `dtype`)."""
    import diffusers

    options = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype}
    if not pipeline:
        return diffusers.BitsAndBytesConfig(**options)
    return diffusers.PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit", quant_kwargs=options, components_to_quantize=[family.denoiser]
    )


def _place(entry: ModelEntry, pipe: Any, family: Family, device: torch.device) -> None:
    """On the device, or offloaded to it (CUDA only): the entry's `memory` mode, or for `auto`
    whatever fits the free GPU memory; the VAE in tiles where the entry asks."""
    if entry.vae_tiling:
        pipe.vae.enable_tiling()
    mode = entry.memory
    if device.type != "cuda":
        pipe.to(device)
        return
    if mode == "auto":
        mode = auto_memory_mode(pipe, device)
        log.info("model %s: memory mode %s (auto)", entry.display_name, mode)
    if mode == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential_offload":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def pipeline_bytes(pipe: Any) -> dict[str, int]:
    """Bytes of each module's weights, as stored."""
    sizes = {}
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            sizes[name] = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    return sizes


def auto_memory_mode(pipe: Any, device: torch.device) -> str:
    """gpu when the whole pipeline fits the free memory with room to draw; model_offload when its
    largest module does; else sequential_offload."""
    free, _ = torch.cuda.mem_get_info(device)
    sizes = pipeline_bytes(pipe)
    if sum(sizes.values()) * AUTO_MEMORY_MARGIN + AUTO_MEMORY_SPARE_BYTES <= free:
        return "gpu"
    if max(sizes.values(), default=0) * AUTO_MEMORY_MARGIN + AUTO_MEMORY_SPARE_BYTES <= free:
        return "model_offload"
    return "sequential_offload"


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


def pipeline_family(index: dict[str, Any], source: str) -> Family:
    """The family of a diffusers pipeline from its model_index.json; ModelLoadError for one that
    is not on the family layer, naming what it is."""
    import json

    class_name = str(index.get("_class_name", "?"))
    width = None
    if class_name == "StableDiffusionPipeline" and Path(source, "unet", "config.json").is_file():
        width = json.loads(Path(source, "unet", "config.json").read_text()).get("cross_attention_dim")
    family = families.from_pipeline_class(class_name, width)
    if family is None:
        known = families.known_elsewhere(class_name=class_name)
        what = f"{known} model ({class_name})" if known else f"{class_name}"
        raise ModelLoadError(f"`{source}` is a {what}; sdbot runs {families.on_the_layer()} models.")
    return family


def _load_pretrained(source: str, dtype: torch.dtype, nf4: bool = False) -> tuple[Any, Family]:
    import diffusers

    index = diffusers.DiffusionPipeline.load_config(source)
    family = pipeline_family(index, source)
    extra: dict[str, Any] = {}
    if "safety_checker" in index:
        # Content policy belongs to the bot's safety settings, not to a checker that blacks out images.
        extra = {"safety_checker": None, "requires_safety_checker": False}
    if nf4:
        extra["quantization_config"] = _nf4_config(family, dtype, pipeline=True)
    if family.denoiser == "unet":
        pipe = diffusers.AutoPipelineForText2Image.from_pretrained(source, dtype=dtype, use_safetensors=True, **extra)
    else:
        pipeline_class = _pipeline_class(family, index)
        pipe = pipeline_class.from_pretrained(source, dtype=dtype, use_safetensors=True, **extra)
    return pipe, family


def _pipeline_class(family: Family, index: dict[str, Any]) -> Any:
    """The class a transformer family's folder is loaded with: its txt2img pipeline; for a video
    family the folder's own (Wan's I2V, LTX-Video's condition pipeline: what its components are
    for), the other modes' pipelines being built from it (`LoadedModel.video_pipeline`)."""
    import diffusers

    own = str(index.get("_class_name", ""))
    if family.video_support is not None and own in family.pipeline_classes:
        return getattr(diffusers, own)
    return getattr(diffusers, family.pipelines["txt2img"])


def _load_single_file(entry: ModelEntry, dtype: torch.dtype, nf4: bool = False) -> tuple[Any, Family]:
    """A single file: an SD checkpoint (UNet, VAE and text encoders in one file), or a DiT
    family's transformer alone (`.safetensors` or `.gguf`) whose other components come from the
    entry's `config` folder or Hub id."""
    import diffusers

    path = Path(entry.source).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".gguf"):
        raise ModelLoadError(
            f"`{path.name}` is a pickle checkpoint ({path.suffix}); loading one can run code hidden in it, so sdbot "
            "only loads .safetensors and .gguf. Convert it once on a trusted machine (for example with diffusers' "
            "convert scripts or `safetensors.torch.save_file(torch.load(...)['state_dict'], ...)`)."
        )
    if not path.is_file():
        raise ModelLoadError(f"the checkpoint `{path}` does not exist. Check SDBOT_MODEL (or the model's `source`).")
    keys = _file_keys(path)
    family, _variant = families.from_keys(keys)
    if family is None:
        known = families.known_elsewhere(keys=keys)
        what = f"a {known} file" if known else "a file of no model family sdbot knows"
        raise ModelLoadError(f"`{path.name}` is {what}; sdbot runs {families.on_the_layer()} models.")
    if family.denoiser == "unet":
        if suffix == ".gguf":
            raise ModelLoadError(f"`{path.name}` is a GGUF file of {family.label}; sdbot loads GGUF files of transformer families only.")
        if nf4:
            raise ModelLoadError(
                f"nf4 loads diffusers folders and transformer files; `{path.name}` is a whole {family.label} checkpoint. Use fp8."
            )
        pipeline_class = getattr(diffusers, family.pipelines["txt2img"])
        kwargs: dict[str, Any] = {"dtype": dtype}
        if entry.config:
            kwargs["config"] = entry.config
        if "safety_checker" in pipeline_class.__init__.__code__.co_varnames:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        return pipeline_class.from_single_file(str(path), **kwargs), family
    if not entry.config:
        raise ModelLoadError(
            f"`{path.name}` holds only {family.label}'s transformer; set `config` for it to a diffusers folder or Hub id "
            f"of {family.label} (its text encoders, VAE and configs come from there)."
        )
    transformer_class = getattr(diffusers, family.denoiser_class)
    if suffix == ".gguf":
        from generation.models.quantized import load_gguf_transformer

        transformer = load_gguf_transformer(path, transformer_class, entry.config, compute_dtype=dtype)
    else:
        quantization = {"quantization_config": _nf4_config(family, dtype, pipeline=False)} if nf4 else {}
        transformer = transformer_class.from_single_file(
            str(path), config=entry.config, subfolder="transformer", dtype=dtype, **quantization
        )
    pipeline_class = _pipeline_class(family, diffusers.DiffusionPipeline.load_config(entry.config))
    return pipeline_class.from_pretrained(entry.config, transformer=transformer, dtype=dtype, use_safetensors=True), family


def _file_keys(path: Path) -> list[str]:
    if path.suffix.lower() == ".gguf":
        from generation.models.quantized import read_gguf

        try:
            return list(read_gguf(path).tensors)
        except ValueError as error:
            raise ModelLoadError(str(error)) from None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())  # noqa: SIM118 - safe_open is not iterable


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
