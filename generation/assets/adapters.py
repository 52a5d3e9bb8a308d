"""Users' LoRAs (kohya, diffusers, LoCon, LyCORIS LoHa and LoKr) and textual-inversion embeddings
on a loaded pipeline, per job.

LoRAs are peft adapters on the model's denoiser (the UNet; a DiT family's transformer, both experts
of Wan 2.2 A14B) and text encoder(s), named after the file's sha256 (`a_<sha[:16]>`), loaded ONCE per (model, file)
and kept across jobs; an LRU by memory (`budget_bytes`, the adapters' parameter bytes over all
loaded models) deletes the least recently used with `delete_adapters`. The base model is never reloaded. Per job (`Adapters.applied`):
exactly the job's adapters are active, each with its weight on UNet and text encoders as A1111
applies `<lora:name:w>`; a job without LoRAs runs with every adapter disabled, so no job sees
another's LoRA. The prompt must be encoded inside that block: our encoder runs the text encoder
itself, and the text-encoder adapters (and the embeddings) must already be set.

Formats:
- kohya (`lora_unet_*` / `lora_te_*`, with `.alpha`), LoCon (kohya with conv layers) and
  diffusers/peft: diffusers' `load_lora_weights(state_dict, adapter_name=...)`, which converts
  kohya names (and SDXL's `input_blocks` names) itself.
- FLUX.1 LoRAs (diffusers/peft, kohya, ComfyUI/BFL names) on FLUX.1 and Chroma: diffusers'
  `load_lora_weights` through its FLUX conversion, with the checks and repairs around it in
  `generation.assets.dit_adapters`; their CLIP layers go on FLUX.1's CLIP, not on Chroma (T5 only).
- LyCORIS LoHa (`hada_w1_a`, ...) and LoKr (`lokr_w1`, ...), which diffusers refuses: peft's
  LoHa/LoKr layers, placed on the module each kohya-style name means (the name is the module's
  path with `.` written `_`, found against the model's own modules), holding the file's tensors
  as they are. peft's layer math is LyCORIS's (its code is copied from LyCORIS and checked in
  tests/test_adapters.py): LoHa dW = (w1a @ w1b) * (w2a @ w2b) * scale (Tucker form with
  hada_t1/t2 for convolutions); LoKr dW = kron(w1, w2) * scale, with w1 = w1a @ w1b and
  w2 = w2a @ w2b where factored (w2 from lokr_t2 in Tucker form). The scale is A1111's
  (`network.NetworkModule.calc_scale`): the file's `scale` if any, else alpha / rank where the
  file has an alpha and factored weights (rank = w1b's rows for LoHa, w1b's or w2b's rows for
  LoKr), else 1 — so a LoKr of full matrices ignores alpha, as in A1111.
Files are safetensors (checked at upload), read with `safetensors.torch.load_file`: never pickle.

Embeddings (SD families only: the command layer refuses them for FLUX.1 and Chroma): A1111/kohya
`emb_params` [n, dim]; kohya SDXL `clip_l` [n, 768] + `clip_g` [n, 1280]; diffusers
`{token: [dim] or [n, dim]}`. They reach the prompt encoder through
`generation.prompts.encoder.textual_inversions`, whose token loop puts their vectors where the
name stands (A1111's way; nothing is added to the tokenizer or the embedding matrix).

A file made for another architecture (SDXL on SD 1.x, ...) or whose layers do not fit the model's
is refused with an EngineUserError that names both.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file

from config.models import ARCHITECTURE_NAMES
from generation.assets.dit_adapters import family_state_dict, flux_state_dict
from generation.assets.dit_loras import is_clip_only, is_flux_lora
from generation.assets.family_loras import transformer_family
from generation.assets.hypernetworks import Hypernetworks
from generation.errors import EngineUserError
from generation.models import families
from generation.prompts.encoder import TextualInversion, textual_inversions
from generation.spec import AssetRef, GenerationSpec

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 1024**3  # 1 GiB of adapter parameters: ~28 SD 1.5 LoRAs of rank 32 in fp16
LABELS = {**ARCHITECTURE_NAMES, "sd1/sd2": "SD 1.x/2.x"}
COMPONENTS = (
    ("unet", ("lora_unet_",)),
    ("transformer", ()),  # FLUX.1, Chroma: diffusers converts their names (generation.assets.dit_adapters)
    ("transformer_2", ()),  # Wan 2.2 A14B's low-noise expert: a LoRA goes on both experts (_load_lora)
    ("text_encoder", ("lora_te_", "lora_te1_")),
    ("text_encoder_2", ("lora_te2_",)),
)
LOHA_KEYS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
LOKR_KEYS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")


def adapter_name(sha256: str) -> str:
    """The peft adapter name of a file: the same file is the same adapter, whatever users call it."""
    return f"a_{sha256[:16]}"


# --- architectures ----------------------------------------------------------------------------


def denoiser_of(pipe: Any, name: str | None = None) -> Any:
    """The pipeline's denoiser: `name` ("unet", "transformer": the family's `denoiser`) where the
    caller knows it, else the UNet if it has one, else its transformer."""
    if name is not None:
        return getattr(pipe, name)
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else pipe.transformer


def model_architecture(pipe: Any) -> str:
    """sd1, sd2, sdxl, flux or chroma, from the pipeline's own modules."""
    if getattr(pipe, "unet", None) is None:
        name = type(pipe.transformer).__name__
        return next((f.id for f in families.FAMILIES if f.denoiser_class == name), "flux")
    if getattr(pipe, "text_encoder_2", None) is not None:
        return "sdxl"
    return "sd2" if pipe.unet.config.cross_attention_dim == 1024 else "sd1"


def lora_architecture(state_dict: dict[str, torch.Tensor]) -> str | None:
    """What a LoRA file was made for, where its keys or shapes say so (None: they don't)."""
    keys = list(state_dict)
    family = transformer_family({key: tuple(tensor.shape) for key, tensor in state_dict.items()})
    if family is not None:
        return None if family == "open" else family  # "open": joint-block layers several DiT families share
    if is_flux_lora(keys):
        return "flux"  # FLUX.1's block names, which Chroma keeps
    if any(k.startswith(("lora_te2_", "text_encoder_2.", "te2.")) for k in keys):
        return "sdxl"
    if any(k.startswith("lora_unet_") and ("input_blocks" in k or "output_blocks" in k) for k in keys):
        return "sdxl"  # kohya's SDXL LoRAs use the original (SGM) block names
    for key, tensor in state_dict.items():  # cross-attention keys: the text encoders' width
        if "attn2" in key and "to_k" in key and key.endswith(("lora_down.weight", "lora_A.weight", "hada_w1_b")):
            width = tensor.shape[1]
            if width in (768, 1024, 2048):
                return {768: "sd1", 1024: "sd2", 2048: "sdxl"}[width]
    if any(k.startswith(("lora_te_", "lora_te1_", "text_encoder.")) for k in keys):
        return "sd1/sd2"  # one text encoder
    return None


def _fits(model_arch: str, file_arch: str | None) -> bool:
    if file_arch is None:
        return True
    if file_arch == "sd1/sd2":
        return model_arch in ("sd1", "sd2")
    if file_arch == "flux":
        return model_arch in ("flux", "chroma")
    return file_arch == model_arch


def _refuse_architecture(kind: str, ref: AssetRef, model: str, model_arch: str, file_arch: str | None, detail: str = "") -> EngineUserError:
    made_for = LABELS.get(file_arch or "", "another architecture")
    return EngineUserError(
        f"the {kind} `{ref.name}` is made for {made_for}, and the model `{model}` is {LABELS[model_arch]}: "
        f"they don't fit together{detail}. Use a {LABELS[model_arch]} {kind} with this model, or pick a "
        f"{made_for} model with --model."
    )


# --- modules by their kohya-style name ---------------------------------------------------------


def _layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Linear and conv layers by path, a peft-wrapped layer under its own path (not base_layer's)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found: dict[str, torch.nn.Module] = {}
    tuners: list[str] = []
    for path, module in model.named_modules():
        if any(path.startswith(t + ".") for t in tuners):
            continue
        if isinstance(module, BaseTunerLayer):
            tuners.append(path)
            found[path] = module
        elif isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            found[path] = module
    return found


def _weight_shape(module: torch.nn.Module) -> tuple[int, ...]:
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    return tuple(base.weight.shape)


def kohya_targets(pipe: Any, module_keys: list[str]) -> dict[str, tuple[str, str]]:
    """kohya/LyCORIS module names (`lora_unet_down_blocks_0_..._to_q`) -> (component, module
    path). SDXL's original block names (`input_blocks_4_1_...`) go through diffusers' own map."""
    targets: dict[str, tuple[str, str]] = {}
    for component, prefixes in COMPONENTS:
        model = getattr(pipe, component, None)
        if model is None:
            continue
        by_flat = {path.replace(".", "_"): path for path in _layers(model)}
        for key in module_keys:
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is None:
                continue
            flat = key[len(prefix) :]
            if flat in by_flat:
                targets[key] = (component, by_flat[flat])
    sgm = [
        k
        for k in module_keys
        if k not in targets and k.startswith("lora_unet_") and any(p in k for p in ("input_blocks", "middle_block", "output_blocks"))
    ]
    if sgm:
        from diffusers.loaders.lora_conversion_utils import _maybe_map_sgm_blocks_to_diffusers

        try:
            mapped = _maybe_map_sgm_blocks_to_diffusers({f"{k}.w": k for k in sgm}, pipe.unet.config)
        except Exception:  # noqa: BLE001 - names it cannot map stay unmatched
            mapped = {}
        by_flat = {path.replace(".", "_"): path for path in _layers(pipe.unet)}
        for new, old in mapped.items():
            flat = new[: -len(".w")][len("lora_unet_") :]
            for sgm_name, ours in (("input_blocks", "down_blocks"), ("middle_block", "mid_block"), ("output_blocks", "up_blocks")):
                flat = flat.replace(sgm_name, ours)
            if flat in by_flat:
                targets[old] = ("unet", by_flat[flat])
    return targets


# --- the cache of loaded adapters ---------------------------------------------------------------


@dataclass
class _Entry:
    denoiser: weakref.ref  # the model's UNet or transformer: the entry dies with its model
    pipe: weakref.ref
    name: str
    nbytes: int


def _components(pipe: Any) -> list[Any]:
    return [m for m in (getattr(pipe, c, None) for c, _ in COMPONENTS) if m is not None]


def adapter_bytes(pipe: Any, name: str) -> int:
    """Memory the adapter's parameters take on the pipeline."""
    total = 0
    for model in _components(pipe):
        for param_name, param in model.named_parameters():
            if f".{name}." in f"{param_name}.":
                total += param.numel() * param.element_size()
    return total


class Adapters:
    """The LoRAs loaded onto each loaded model (an LRU by bytes), and a job's LoRAs and
    embeddings applied around its prompt encoding and sampling. Engine thread only."""

    def __init__(self, blobs: Any, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.blobs = blobs
        self.budget_bytes = budget_bytes
        self.hypernetworks = Hypernetworks(blobs)  # A1111 hypernetworks, on the UNet for a job
        self._entries: OrderedDict[tuple[int, str], _Entry] = OrderedDict()  # (id(denoiser), name), oldest first
        self.loads = 0
        self.hits = 0
        self.evictions = 0

    @property
    def used_bytes(self) -> int:
        self._forget_dead()
        return sum(entry.nbytes for entry in self._entries.values())

    def loaded(self, pipe: Any, denoiser: str | None = None) -> list[str]:
        """Adapter names loaded on this pipeline's model, oldest use first."""
        self._forget_dead()
        model = denoiser_of(pipe, denoiser)
        return [e.name for e in self._entries.values() if e.denoiser() is model]

    @contextlib.contextmanager
    def applied(
        self,
        pipe: Any,
        spec: GenerationSpec,
        model: str | None = None,
        *,
        extra: dict[str, float] | None = None,
        denoiser: str | None = None,
    ) -> Iterator[None]:
        """The job's LoRAs active with their weights (and no other), its embeddings known to
        the prompt encoder and its hypernetworks on the UNet, for the block; every adapter disabled after it. `extra`: adapters
        already on the pipeline that the job uses too, by name and weight (a clip's camera moves,
        generation.models.motion); they are not counted against the budget or evicted here.
        `denoiser`: the model family's denoiser component ("unet", "transformer"), where known."""
        model = model or spec.model
        key = id(denoiser_of(pipe, denoiser))
        weights: dict[str, float] = dict(extra or {})
        for ref in spec.drawn_loras:  # the same file twice adds up, as A1111 applies it twice (a draft's LoRA last)
            name = self._ensure(pipe, model, ref, keep={(key, n) for n in weights}, denoiser=denoiser)
            weights[name] = weights.get(name, 0.0) + ref.weight
        self._evict(self.budget_bytes, keep={(key, n) for n in weights})
        embeddings = [load_embedding(self.blobs.path(ref.blob), ref, pipe, model) for ref in spec.embeddings]
        if weights:
            pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))
        self._enable(pipe, bool(weights))
        try:
            with textual_inversions(embeddings), self.hypernetworks.applied(pipe, spec.hypernetworks):
                yield
        finally:
            self._enable(pipe, False)

    def _ensure(self, pipe: Any, model: str, ref: AssetRef, keep: set[tuple[int, str]], denoiser: str | None = None) -> str:
        name = adapter_name(ref.sha256)
        target = denoiser_of(pipe, denoiser)
        key = (id(target), name)
        self._forget_dead()
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return name
        path = self.blobs.path(ref.blob)
        try:
            state_dict = load_file(str(path))
        except Exception as error:  # noqa: BLE001
            raise EngineUserError(f"I could not read the LoRA `{ref.name}` ({type(error).__name__}); upload it again.") from error
        estimate = sum(t.numel() for t in state_dict.values()) * target.dtype.itemsize
        self._evict(self.budget_bytes - estimate, keep=keep)
        load_adapter(pipe, state_dict, name, ref, model)
        self.loads += 1
        nbytes = adapter_bytes(pipe, name)
        self._entries[key] = _Entry(weakref.ref(target), weakref.ref(pipe), name, nbytes)
        log.info(
            "loaded LoRA %s (%s) on %s: %.1f MiB, %.1f MiB of adapters in all",
            ref.name,
            name,
            model,
            nbytes / 2**20,
            self.used_bytes / 2**20,
        )
        self._evict(self.budget_bytes, keep=keep | {key})
        return name

    def unload_all(self) -> None:
        """Delete every loaded adapter (a training run takes the model's UNet and text encoders to
        itself); jobs load theirs again when they next need them."""
        self._evict(-1, keep=set())

    def _evict(self, limit: int, keep: set[tuple[int, str]]) -> None:
        """Delete the least recently used adapters (not the running job's) until `limit` holds."""
        for key, entry in list(self._entries.items()):
            if self.used_bytes <= limit:
                return
            if key in keep:
                continue
            pipe = entry.pipe()
            if pipe is not None:
                with warnings.catch_warnings():  # "adapter ... was active which is now deleted": it is not in use
                    warnings.simplefilter("ignore", UserWarning)
                    pipe.delete_adapters([entry.name])
                log.info("unloaded LoRA %s (%.1f MiB)", entry.name, entry.nbytes / 2**20)
            del self._entries[key]
            self.evictions += 1

    def _forget_dead(self) -> None:
        for key in [k for k, e in self._entries.items() if e.denoiser() is None]:
            del self._entries[key]  # its model was unloaded, and its adapters with it

    @staticmethod
    def _enable(pipe: Any, enabled: bool) -> None:
        from diffusers.utils.peft_utils import set_adapter_layers

        for model in _components(pipe):
            set_adapter_layers(model, enabled=enabled)


# --- loading one LoRA file ----------------------------------------------------------------------


def lora_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """loha, lokr, or lora (kohya, LoCon, diffusers/peft): from the keys, whatever the label says."""
    suffixes = {key.rsplit(".", 1)[-1] for key in state_dict}
    if suffixes & set(LOHA_KEYS):
        return "loha"
    if suffixes & set(LOKR_KEYS):
        return "lokr"
    return "lora"


def load_adapter(pipe: Any, state_dict: dict[str, torch.Tensor], name: str, ref: AssetRef, model: str) -> None:
    """Load one LoRA file onto the pipeline as adapter `name`, or refuse it (EngineUserError)."""
    model_arch = model_architecture(pipe)
    file_arch = lora_architecture(state_dict)
    dit = getattr(pipe, "unet", None) is None  # FLUX.1, Chroma
    if not _fits(model_arch, file_arch) and not (dit and is_clip_only(state_dict)):  # CLIP-L alone: SD 1.x's is FLUX.1's
        raise _refuse_architecture("LoRA", ref, model, model_arch, file_arch)
    kind = lora_kind(state_dict)
    try:
        with warnings.catch_warnings():  # peft warns that a model holds several adapters: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            if dit:
                if kind != "lora":
                    raise EngineUserError(
                        f"the LoRA `{ref.name}` is a LyCORIS ({kind}) file; on {LABELS[model_arch]} sdbot loads plain LoRAs."
                    )
                if model_arch in ("flux", "chroma"):
                    layers, left_out = flux_state_dict(pipe, state_dict, ref, model)
                else:
                    layers, left_out = family_state_dict(pipe, state_dict, ref, model, model_arch)
                if left_out:
                    log.info("LoRA %s on %s: %d layers the model lacks by design left out", ref.name, model, left_out)
                _load_lora(pipe, layers, name)
            elif kind == "lora":
                _check_kohya_shapes(pipe, state_dict, ref, model, model_arch, file_arch)
                _load_lora(pipe, state_dict, name)
            else:
                _load_lycoris(pipe, state_dict, name, kind, ref, model, model_arch, file_arch)
    except EngineUserError:
        _delete_partial(pipe, name)
        raise
    except Exception as error:  # noqa: BLE001 - diffusers/peft refusing the file
        _delete_partial(pipe, name)
        raise EngineUserError(
            f"I could not load the LoRA `{ref.name}` onto the model `{model}` ({LABELS[model_arch]}; the file looks "
            f"made for {LABELS.get(file_arch or '', 'an unknown architecture')}): {type(error).__name__}: {error}"
        ) from error
    if adapter_bytes(pipe, name) == 0:
        _delete_partial(pipe, name)
        raise _refuse_architecture("LoRA", ref, model, model_arch, file_arch, ": none of its layers is in the model")


def _delete_partial(pipe: Any, name: str) -> None:
    with contextlib.suppress(Exception):
        pipe.delete_adapters([name])


def _load_lora(pipe: Any, state_dict: dict[str, torch.Tensor], name: str) -> None:
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its load report lists the other adapters as "missing"
    try:
        pipe.load_lora_weights(dict(state_dict), adapter_name=name)
        if getattr(pipe, "transformer_2", None) is not None:
            # Wan 2.2 A14B draws the high-noise steps with `transformer` and the rest with
            # `transformer_2` (the same architecture): the LoRA goes on both, as people load a Wan
            # LoRA on both experts in ComfyUI. diffusers loads one at a time.
            pipe.load_lora_weights(dict(state_dict), adapter_name=name, load_into_transformer_2=True)
    finally:
        transformers_logging.set_verbosity(verbosity)


def _check_kohya_shapes(
    pipe: Any, state_dict: dict[str, torch.Tensor], ref: AssetRef, model: str, model_arch: str, file_arch: str | None
) -> None:
    """kohya/LoCon keys: the layers found in the model must have the file's sizes, and some must
    be found (diffusers would skip unknown layers with a warning). Names this map does not know
    (SDXL's time_embed, ...) are left to diffusers' own conversion."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        if key.startswith("lora_") and "." in key:
            module_key, _, suffix = key.partition(".")
            modules.setdefault(module_key, {})[suffix] = tensor
    if not modules:
        return  # diffusers/peft naming: diffusers checks those itself (size mismatches raise)
    targets = kohya_targets(pipe, list(modules))
    if not targets:
        raise _refuse_architecture("LoRA", ref, model, model_arch, file_arch, f" (the model has no layer `{next(iter(modules))}`)")
    for module_key, tensors in modules.items():
        if module_key not in targets:
            continue
        component, path = targets[module_key]
        shape = _weight_shape(getattr(pipe, component).get_submodule(path))
        down, up = tensors.get("lora_down.weight"), tensors.get("lora_up.weight")
        if down is not None and up is not None and (down.shape[1] != shape[1] or up.shape[0] != shape[0]):
            raise _refuse_architecture(
                "LoRA",
                ref,
                model,
                model_arch,
                file_arch,
                f" (layer `{module_key}`: the file has {down.shape[1]} inputs and {up.shape[0]} outputs, the model "
                f"{shape[1]} and {shape[0]})",
            )


def lycoris_scale(tensors: dict[str, torch.Tensor], kind: str) -> float:
    """A1111's scale for one LyCORIS module (network.NetworkModule.calc_scale)."""
    if "scale" in tensors:
        return float(tensors["scale"])
    if kind == "loha":
        rank = tensors["hada_w1_b"].shape[0] if "hada_w1_b" in tensors else None
    else:  # A1111 takes w1b's rows, then w2b's where it has one; full w1 and w2 have no rank
        rank = next((tensors[k].shape[0] for k in ("lokr_w2_b", "lokr_w1_b") if k in tensors), None)
    if "alpha" in tensors and rank:
        return float(tensors["alpha"]) / rank
    return 1.0


def _load_lycoris(
    pipe: Any,
    state_dict: dict[str, torch.Tensor],
    name: str,
    kind: str,
    ref: AssetRef,
    model: str,
    model_arch: str,
    file_arch: str | None,
) -> None:
    """LoHa / LoKr: peft's layers on the modules the kohya-style names mean, holding the file's
    tensors as they are, with A1111's scale."""
    from peft import LoHaConfig, LoKrConfig, inject_adapter_in_model

    weight_keys = LOHA_KEYS if kind == "loha" else LOKR_KEYS
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        module_key, _, suffix = key.partition(".")
        if suffix not in (*weight_keys, "alpha", "scale"):
            what = "DoRA weights (dora_scale)" if suffix == "dora_scale" else f"`{key}`"
            raise EngineUserError(
                f"the {kind} `{ref.name}` holds {what}, which sdbot does not load yet; use a plain LoRA, LoHa or LoKr file."
            )
        modules.setdefault(module_key, {})[suffix] = tensor
    targets = kohya_targets(pipe, list(modules))
    missing = [key for key in modules if key not in targets]
    if missing:
        raise _refuse_architecture("LoRA", ref, model, model_arch, file_arch, f" (the model has no layer `{missing[0]}`)")
    by_component: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for module_key, tensors in modules.items():
        component, path = targets[module_key]
        by_component.setdefault(component, {})[path] = tensors
    config_class = LoHaConfig if kind == "loha" else LoKrConfig
    for component, layers in by_component.items():
        target = getattr(pipe, component)
        config = config_class(r=1, alpha=1, target_modules=sorted(layers))
        inject_adapter_in_model(config, target, adapter_name=name)
        target._hf_peft_config_loaded = True  # so that diffusers/transformers manage it like a LoRA
        for path, tensors in layers.items():
            layer = target.get_submodule(path)
            base = layer.get_base_layer()
            device, dtype = base.weight.device, base.weight.dtype
            for attribute in weight_keys:  # peft's own parameters out; the file's in
                if name in getattr(layer, attribute):
                    del getattr(layer, attribute)[name]
            for attribute in weight_keys:
                if attribute in tensors:
                    getattr(layer, attribute)[name] = torch.nn.Parameter(tensors[attribute].to(device, dtype), requires_grad=False)
            try:
                delta_shape = layer.get_delta_weight(name).shape
            except RuntimeError as error:
                raise _refuse_architecture("LoRA", ref, model, model_arch, file_arch, f" (layer `{path}`: {error})") from None
            if delta_shape != base.weight.shape:
                raise _refuse_architecture("LoRA", ref, model, model_arch, file_arch, f" (layer `{path}`)")
            scale = lycoris_scale(tensors, kind)
            layer.r[name], layer.alpha[name], layer.scaling[name] = 1, scale, scale


# --- embeddings ---------------------------------------------------------------------------------


def load_embedding(path: Any, ref: AssetRef, pipe: Any, model: str) -> TextualInversion:
    """A textual-inversion file as the prompt encoder uses it, checked against the model's text
    encoders (one set of vectors for SD 1.x/2.x, clip_l and clip_g for SDXL, of their widths)."""
    try:
        state_dict = load_file(str(path))
    except Exception as error:  # noqa: BLE001
        raise EngineUserError(f"I could not read the embedding `{ref.name}` ({type(error).__name__}); upload it again.") from error
    if "clip_l" in state_dict or "clip_g" in state_dict:
        vectors = {key: state_dict[key] for key in ("clip_l", "clip_g") if key in state_dict}
        file_arch = "sdxl"
    elif "emb_params" in state_dict:
        vectors, file_arch = {"clip_l": state_dict["emb_params"]}, None
    elif len(state_dict) == 1:
        vectors, file_arch = {"clip_l": next(iter(state_dict.values()))}, None
    else:
        raise EngineUserError(f"the embedding `{ref.name}` is in a layout I don't know (keys: {', '.join(sorted(state_dict)[:5])}).")
    vectors = {key: (v.unsqueeze(0) if v.dim() == 1 else v) for key, v in vectors.items()}
    encoders = {"clip_l": pipe.text_encoder}
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders["clip_g"] = pipe.text_encoder_2
    model_arch = model_architecture(pipe)
    widths = {key: encoder.get_input_embeddings().weight.shape[1] for key, encoder in encoders.items()}
    if file_arch is None:
        file_arch = {768: "sd1", 1024: "sd2"}.get(vectors["clip_l"].shape[-1], "sd1/sd2")
    if set(vectors) != set(encoders) or any(v.dim() != 2 or v.shape[1] != widths[k] for k, v in vectors.items()):
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in vectors.items())
        wanted = ", ".join(f"{k} [n, {w}]" for k, w in widths.items())
        raise _refuse_architecture("embedding", ref, model, model_arch, file_arch, f" (the file has {shapes}; the model takes {wanted})")
    placed = {}
    for key, v in vectors.items():
        weight = encoders[key].get_input_embeddings().weight
        placed[key] = v.to(weight.device, weight.dtype)
    return TextualInversion(ref.name, placed)
