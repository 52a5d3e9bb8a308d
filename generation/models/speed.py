"""Speed options for a loaded pipeline (SDBOT_ATTENTION, SDBOT_CHANNELS_LAST, SDBOT_TORCH_COMPILE,
SDBOT_COMPILE_BLOCKS: regional compile, `compile_blocks`),
applied once when a model is loaded (generation.models.loader) and measured by bench/gpu.py.

Everything here changes the UNet and VAE *modules in place*, never swaps them for wrappers: the
img2img, inpaint and ControlNet pipelines are made with `from_pipe` and share those very module
objects, the LoRA cache (generation.assets.adapters) keys its adapters on `id(pipe.unet)`, and
regional prompting wraps `pipe.unet.forward` for a job. A `torch.compile(unet)` OptimizedModule
put into `pipe.unet` would break all three; an option set on the module holds for every
pipeline that shares it.

- attention: `sdpa` is diffusers' default `AttnProcessor2_0` (PyTorch's
  scaled_dot_product_attention: flash / memory-efficient kernels); `classic` is `AttnProcessor`
  (explicit softmax(QK^T)V: a baseline, and a fallback where an SDPA kernel misbehaves).
- channels_last: UNet and VAE weights in NHWC; cuDNN's convolutions are faster in it on tensor
  core GPUs, and a conv whose weight is channels_last gives a channels_last output.
- torch_compile: the UNet's forward and the VAE decoder's, compiled with inductor. `dynamic=None`
  (PyTorch's automatic dynamic shapes): the first size is compiled for exactly that shape, and
  the first job of another size recompiles once with symbolic sizes that then serve every size,
  instead of one compile per size (the bot's sizes vary per job; a static compile per size would
  soon hit dynamo's recompile limit and fall back to eager). Default mode, no CUDA graphs
  (`reduce-overhead` records a graph per shape and holds its memory; the engine runs in a
  worker thread). The first job of each new shape is slow (tens of seconds on a GPU, minutes on a
  CPU); the jobs after it are faster.

LoRAs and torch_compile: a job whose LoRAs (peft adapters) are active runs the UNet *eagerly*;
compile speeds up jobs without LoRAs only. Why: the adapters' set and weights change per job,
and dynamo guards on them (adapter names, scaling floats, layer types), so each new LoRA
combination would recompile the whole UNet (a minute on a GPU) until the recompile limit, after
which dynamo silently runs eager anyway. diffusers' way of compiling with LoRAs
(`enable_lora_hotswap` + `load_lora_weights(hotswap=True)`) overwrites the weights of one adapter
slot of a fixed maximum rank, which does not fit the bot's cache of many named adapters active
together with per-job weights. Training (grad enabled, or the UNet in train mode) also runs
eagerly. Jobs without LoRAs on a model that has LoRAs loaded (all disabled) stay compiled, after
one recompile for the new layer structure.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

Attention = Literal["sdpa", "classic"]
# torch.compile's arguments (module docstring says why). A test or a bench may change them.
COMPILE_KWARGS: dict[str, Any] = {"backend": "inductor", "mode": None, "dynamic": None, "fullgraph": False}
# Dynamo recompiles a compiled function for a new shape, a new layer structure (LoRA layers
# loaded, seamless padding): its default limit of 8 per function is soon reached by a bot
# serving many sizes and LoRAs, after which it runs eager with only a log line.
RECOMPILE_LIMIT = 32
_MARK = "_sdbot_compiled"


@dataclass(frozen=True)
class SpeedOptions:
    """How a loaded model's UNet and VAE run (module docstring)."""

    attention: Attention = "sdpa"
    channels_last: bool = False
    torch_compile: bool = False
    compile_blocks: bool = False  # regional compile of the denoiser's repeated blocks (generation.models.caches)

    @classmethod
    def from_settings(cls, settings: Any) -> SpeedOptions:
        return cls(
            attention=settings.attention,
            channels_last=settings.channels_last,
            torch_compile=settings.torch_compile,
            compile_blocks=getattr(settings, "compile_blocks", False),
        )

    def describe(self) -> str:
        parts = [f"attention {self.attention}"]
        if self.channels_last:
            parts.append("channels_last")
        if self.torch_compile:
            parts.append("torch.compile")
        elif self.compile_blocks:
            parts.append("compiled blocks")
        return ", ".join(parts)


def apply_speed_options(pipe: Any, options: SpeedOptions, denoiser: str = "unet") -> None:
    """Set the options on the pipeline's denoiser (its family's: `unet` or `transformer`) and VAE,
    in place (so they hold for every pipeline made from it with `from_pipe`). Called once per
    loaded model. A transformer keeps its own attention processors (diffusers' FLUX-style ones
    call SDPA already) and its layout (channels_last is for convolutions)."""
    model, vae = getattr(pipe, denoiser), pipe.vae
    if denoiser == "unet":
        set_attention(model, options.attention)
        if options.channels_last:
            model.to(memory_format=torch.channels_last)
    if options.torch_compile:
        _warn_if_slow_to_compile(model)
        compile_forward(model, eager_when=_needs_eager_unet)
    elif options.compile_blocks:  # regional: each repeated block class compiled once, in place
        from generation.models.families import FAMILIES

        family = next((f for f in FAMILIES if f.denoiser_class == type(model).__name__), None)
        _warn_if_slow_to_compile(model)
        compile_blocks(model, family.repeated_blocks if family is not None else ())
    apply_vae_options(vae, options)
    log.info("speed options for %s: %s", type(pipe).__name__, options.describe())


def apply_vae_options(vae: Any, options: SpeedOptions) -> None:
    """The options on a VAE: the model's own, or a VAE override loaded beside it."""
    set_attention(vae, options.attention)
    if options.channels_last and not any(p.dim() == 5 for p in vae.parameters()):  # a video VAE's 3D convolutions have no NHWC
        vae.to(memory_format=torch.channels_last)
    if options.torch_compile:
        compile_forward(vae.decoder, eager_when=_needs_eager)


def set_attention(model: torch.nn.Module, attention: Attention) -> None:
    """`classic` -> AttnProcessor, `sdpa` -> AttnProcessor2_0 on every attention layer, where the
    layers have diffusers' standard processors; custom ones (IP-Adapter, ...) are left alone."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    processors = getattr(model, "attn_processors", None)
    if not processors:
        return
    wanted = AttnProcessor if attention == "classic" else AttnProcessor2_0
    kinds = {type(p) for p in processors.values()}
    if kinds == {wanted}:
        return
    if not kinds <= {AttnProcessor, AttnProcessor2_0}:
        log.warning(
            "attention %s not set on %s: it has custom attention processors (%s)",
            attention,
            type(model).__name__,
            ", ".join(sorted(k.__name__ for k in kinds)),
        )
        return
    model.set_attn_processor(wanted())  # stateless: one instance serves every layer


def attention_kinds(model: torch.nn.Module) -> set[str]:
    """The class names of the model's attention processors (for logs and tests)."""
    return {type(p).__name__ for p in getattr(model, "attn_processors", {}).values()}


# --- torch.compile, in place ---------------------------------------------------------------------


def compile_forward(module: torch.nn.Module, eager_when: Callable[[torch.nn.Module], bool]) -> None:
    """Make `module.forward` run its class's forward through torch.compile, except for calls where
    `eager_when(module)` holds. Set as an instance attribute, so the module object stays what it
    is (shared by pipelines, keyed on by the LoRA cache). The wrapper holds the module only
    weakly: a strong reference from the module to itself would keep an unloaded model's memory
    alive until the garbage collector ran."""
    if is_compiled(module):
        return
    if "forward" in vars(module):
        log.warning("torch_compile: %s already has its own forward (a hook); left uncompiled", type(module).__name__)
        return
    _raise_recompile_limit()
    function = type(module).forward
    compiled = torch.compile(function, **COMPILE_KWARGS)
    ref = weakref.ref(module)

    def forward(*args: Any, **kwargs: Any) -> Any:
        target = ref()
        if target is None:
            raise RuntimeError("the compiled module was freed")
        if eager_when(target):
            return function(target, *args, **kwargs)
        return compiled(target, *args, **kwargs)

    forward.__name__ = "forward"
    setattr(forward, _MARK, True)
    module.forward = forward  # type: ignore[method-assign]


def compile_blocks(model: torch.nn.Module, declared: tuple[str, ...] = ()) -> int:
    """torch.compile each of the denoiser's repeated blocks in place (diffusers'
    `compile_repeated_blocks`: the model's `_repeated_blocks` classes, else `declared`, its family's
    `repeated_blocks`): one compile serves every block of a class, so it takes seconds where a
    whole-model compile takes a minute. Returns the blocks compiled."""
    names = set(getattr(model, "_repeated_blocks", None) or ()) or set(declared)
    _raise_recompile_limit()
    options = {key: value for key, value in COMPILE_KWARGS.items() if key != "fullgraph"}
    count = 0
    for module in model.modules():
        if type(module).__name__ in names and not getattr(module, "_compiled_call_impl", None):
            module.compile(**options)
            count += 1
    if not count:
        log.warning("compile_blocks: %s has no repeated blocks to compile", type(model).__name__)
    return count


def is_compiled(module: torch.nn.Module) -> bool:
    """Whether `compile_forward` compiled this module (the instance's forward is its wrapper)."""
    return getattr(vars(module).get("forward"), _MARK, False)


def adapters_active(module: torch.nn.Module) -> bool:
    """Whether any peft adapter (LoRA, LoHa, LoKr) in the module is enabled and active."""
    if not getattr(module, "_hf_peft_config_loaded", False) and not getattr(module, "peft_config", None):
        return False  # never had an adapter: the cheap answer, every step of every job
    return any(not layer.disable_adapters and bool(layer.active_adapters) for layer in _tuner_layers(module))


# The peft layers of a module, found again when its adapters change (a scan of an SDXL UNet's
# modules per step would cost milliseconds).
_layers: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[str, ...], list[Any]]] = weakref.WeakKeyDictionary()


def _tuner_layers(module: torch.nn.Module) -> list[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    key = tuple(sorted(getattr(module, "peft_config", None) or ()))
    cached = _layers.get(module)
    if cached is None or cached[0] != key:
        cached = (key, [m for m in module.modules() if isinstance(m, BaseTunerLayer)])
        _layers[module] = cached
    return cached[1]


def _needs_eager(module: torch.nn.Module) -> bool:
    return torch.is_grad_enabled() or module.training


_told_eager: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def _needs_eager_unet(module: torch.nn.Module) -> bool:
    if _needs_eager(module):
        return True
    if adapters_active(module):
        if module not in _told_eager:
            _told_eager.add(module)
            log.info("torch_compile: jobs with LoRAs run the UNet uncompiled (see generation.models.speed)")
        return True
    return False


def _raise_recompile_limit() -> None:
    import torch._dynamo.config as dynamo_config

    if getattr(dynamo_config, "recompile_limit", RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
        dynamo_config.recompile_limit = RECOMPILE_LIMIT


def _warn_if_slow_to_compile(module: torch.nn.Module) -> None:
    device = next(module.parameters()).device
    if device.type != "cuda":
        log.warning(
            "torch_compile on %s: with inductor the first job of each size compiles for minutes (C++ code "
            "generation); it pays off on CUDA GPUs",
            device.type,
        )
