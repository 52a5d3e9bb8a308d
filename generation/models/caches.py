"""Cache accelerators for one job (`GenerationSpec.cache`: `--fast`, SDBOT_CACHE, a model's `cache`).
Regional torch.compile of a denoiser's repeated blocks (SDBOT_COMPILE_BLOCKS) is a speed option of
the loaded model: `generation.models.speed.compile_blocks`.

A cache reuses work of earlier denoising steps instead of running the whole denoiser at every step.
Which caches a family takes, and their thresholds, are declared torch-free
(`generation.models.families.base.CACHES`, `Family.caches`); this module puts them on a pipeline's
denoiser for one pass and takes them off again (`applied`), so a job without a cache on the same
model draws exactly as before (the hooks are gone, not switched off), and a pass never sees the
cached residuals of another pass (each pass gets fresh hooks).

- DiTs: diffusers 0.42.1's hooks (`diffusers.hooks`): First Block Cache (`fbc`), TaylorSeer
  (`taylorseer`), MagCache (`magcache`, FLUX.1's published magnitude ratios), Pyramid Attention
  Broadcast (`pab`). They are applied with diffusers' `apply_*` functions rather than
  `CacheMixin.enable_cache`, because SD 3.5's and Z-Image's transformers are not CacheMixins in
  0.42.1 while their blocks are in diffusers' block registry. Which family takes which hook was
  tried on every tiny model; each family module says why it leaves out the others.
- The hooks keep their state per "cache context" (cond / uncond), which only some pipelines set
  (`with transformer.cache_context("cond")`: FLUX.1's txt2img, Qwen-Image, FLUX.2, Wan, LTX-Video;
  not SD 3.5, Z-Image, Chroma or FLUX.1's img2img). Where a call comes without one, `_Contexts` names it
  by its place within the step (the k-th denoiser call at a timestep is context `call<k>`), so the
  conditional and unconditional calls of a step each compare against their own last step.
- PAB needs the current timestep: read from the pass's scheduler (`timesteps[step_index]`), in the
  scheduler's own units (0-1000), whatever the pipeline passes its transformer (FLUX.1 divides by 1000).
- UNets (SD 1.x, 2.x, SDXL): diffusers has no UNet cache, so `deepcache` is DeepCache's uniform
  schedule (Ma et al. 2023) as the smallest hook that does it: every `interval`-th UNet call runs the
  whole UNet and keeps the input of its last up block (the deep features); the calls between run
  only the shallow path (time embedding, conv_in, the first down block, the last up block, conv_out)
  with those kept features. The deep blocks are skipped by a hook that returns placeholders of the
  right count (the UNet slices its skip connections by count, and the placeholders go only to the
  skipped up blocks), so the UNet's own forward runs unchanged. A UNet ControlNet's residuals are
  added inside the skipped blocks, so DeepCache is refused beside a ControlNet.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch

from generation.errors import EngineUserError
from generation.models.families.base import CACHES, Family

log = logging.getLogger(__name__)

_DEEPCACHE_SKIP = "sdbot_deepcache_skip"
_DEEPCACHE_LAST = "sdbot_deepcache_last"


# --- applying a cache for one pass ----------------------------------------------------------------


@contextlib.contextmanager
def applied(pipe: Any, family: Family, name: str | None, steps: int, *, controlled: bool = False) -> Iterator[None]:
    """The cache `name` (None: none) on `pipe`'s denoiser(s) for one pipeline call of `steps` steps,
    removed afterwards however the call ends."""
    if name is None:
        yield
        return
    why = family.cache_refusal(name)
    if why is not None:  # the command layer refuses it before queueing; a job made elsewhere stops here
        raise EngineUserError(why)
    kind = CACHES[name]
    models = [m for m in (getattr(pipe, family.denoiser, None), getattr(pipe, "transformer_2", None)) if m is not None]
    undo: list[Any] = []
    try:
        for model in models:
            if name == "deepcache":
                if controlled:
                    raise EngineUserError("`--fast` (DeepCache) skips the UNet blocks a ControlNet steers; draw this without --fast.")
                undo.append(_DeepCache(model, int(kind.knobs["interval"])))
            else:
                undo.append(_DiffusersCache(model, _config(name, kind.knobs, steps, pipe)))
        yield
    finally:
        for each in reversed(undo):
            each.remove()


def _config(name: str, knobs: Any, steps: int, pipe: Any) -> Any:
    """diffusers' config for cache `name` with its declared knobs."""
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, PyramidAttentionBroadcastConfig, TaylorSeerCacheConfig

    if name == "fbc":
        return FirstBlockCacheConfig(threshold=knobs["threshold"])
    if name == "taylorseer":
        return TaylorSeerCacheConfig(
            cache_interval=int(knobs["interval"]),
            disable_cache_before_step=int(knobs["warmup"]),
            max_order=int(knobs["order"]),
            taylor_factors_dtype=torch.float32,
            use_lite_mode=True,
        )
    if name == "magcache":
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        return MagCacheConfig(
            threshold=knobs["threshold"],
            max_skip_steps=int(knobs["max_skip"]),
            retention_ratio=knobs["retention"],
            num_inference_steps=steps,
            mag_ratios=FLUX_MAG_RATIOS,
        )
    if name == "pab":
        low, high = int(knobs["from"]), int(knobs["to"])
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=int(knobs["skip"]),
            spatial_attention_timestep_skip_range=(low, high),
            current_timestep_callback=lambda: _timestep(pipe),
        )
    raise ValueError(f"no diffusers cache {name!r}")


def _timestep(pipe: Any) -> float:
    """The pass's current timestep in its scheduler's units (0-1000), for PAB's timestep range."""
    scheduler = pipe.scheduler
    index = getattr(scheduler, "step_index", None)
    if index is None:
        index = getattr(scheduler, "begin_index", None) or 0
    timesteps = scheduler.timesteps
    return float(timesteps[min(index, len(timesteps) - 1)])


class _DiffusersCache:
    """One of diffusers' cache hooks on a transformer, with the contexts its pipeline may not set."""

    def __init__(self, model: torch.nn.Module, config: Any, *, contexts: bool = True):
        from diffusers.hooks import (
            FirstBlockCacheConfig,
            HookRegistry,
            MagCacheConfig,
            PyramidAttentionBroadcastConfig,
            TaylorSeerCacheConfig,
            apply_first_block_cache,
            apply_mag_cache,
            apply_pyramid_attention_broadcast,
            apply_taylorseer_cache,
        )

        self.model = model
        self.config = config
        apply = {
            FirstBlockCacheConfig: apply_first_block_cache,
            MagCacheConfig: apply_mag_cache,
            PyramidAttentionBroadcastConfig: apply_pyramid_attention_broadcast,
            TaylorSeerCacheConfig: apply_taylorseer_cache,
        }[type(config)]
        apply(model, config)
        # as CacheMixin.enable_cache does: the registry's list of child registries predates the hooks
        HookRegistry.check_if_exists_or_initialize(model).invalidate_child_registries_cache()
        self.contexts = _Contexts(model) if contexts else None  # bare diffusers (bench/gpu_sweep.py): the pipeline's own only

    def remove(self) -> None:
        from diffusers.hooks import HookRegistry

        if self.contexts is not None:
            self.contexts.remove()
        registry = HookRegistry.check_if_exists_or_initialize(self.model)
        for hook in _hook_names(self.config):
            registry.remove_hook(hook, recurse=True)
        registry.invalidate_child_registries_cache()


def _hook_names(config: Any) -> tuple[str, ...]:
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, PyramidAttentionBroadcastConfig
    from diffusers.hooks.first_block_cache import _FBC_BLOCK_HOOK, _FBC_LEADER_BLOCK_HOOK
    from diffusers.hooks.mag_cache import _MAG_CACHE_BLOCK_HOOK, _MAG_CACHE_LEADER_BLOCK_HOOK
    from diffusers.hooks.pyramid_attention_broadcast import _PYRAMID_ATTENTION_BROADCAST_HOOK
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

    if isinstance(config, FirstBlockCacheConfig):
        return (_FBC_LEADER_BLOCK_HOOK, _FBC_BLOCK_HOOK)
    if isinstance(config, MagCacheConfig):
        return (_MAG_CACHE_LEADER_BLOCK_HOOK, _MAG_CACHE_BLOCK_HOOK)
    if isinstance(config, PyramidAttentionBroadcastConfig):
        return (_PYRAMID_ATTENTION_BROADCAST_HOOK,)
    return (_TAYLORSEER_CACHE_HOOK,)


class _Contexts:
    """Names the denoiser's calls that come without a cache context (module docstring): the k-th
    call at one timestep is `call<k>`. A context the pipeline set itself is left alone."""

    def __init__(self, model: torch.nn.Module):
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.hooks import StateManager

        registry = HookRegistry.check_if_exists_or_initialize(model)
        self.managers = [
            value
            for child in (registry, *registry._get_child_registries())
            for hook in child.hooks.values()
            for value in vars(hook).values()
            if isinstance(value, StateManager)
        ]
        self.managers = list({id(m): m for m in self.managers}.values())
        self.timestep: float | None = None
        self.call = 0
        self.ours = False
        self.handles = [
            model.register_forward_pre_hook(self._before, with_kwargs=True),
            model.register_forward_hook(self._after, always_call=True),
        ]

    def _before(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self.managers or self.managers[0]._context is not None:
            return
        from diffusers.hooks.hooks import CacheContext

        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        value = float(timestep.flatten()[0]) if torch.is_tensor(timestep) else timestep
        self.call = self.call + 1 if value == self.timestep else 0
        self.timestep = value
        context = CacheContext(f"call{self.call}")
        for manager in self.managers:
            manager.set_context(context)
        self.ours = True

    def _after(self, module: Any, args: Any, output: Any) -> None:
        if self.ours:
            for manager in self.managers:
                manager.set_context(None)
            self.ours = False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        for manager in self.managers:
            manager.reset()


# --- DeepCache for UNets --------------------------------------------------------------------------


class _DeepCache:
    """DeepCache's uniform schedule on a UNet2DConditionModel (module docstring): the whole UNet at
    calls 0, interval, 2*interval, ...; the shallow path with the kept deep features between."""

    def __init__(self, unet: torch.nn.Module, interval: int):
        if type(unet).__name__ != "UNet2DConditionModel":
            raise EngineUserError(f"`--fast` (DeepCache) works on SD's picture UNet, not {type(unet).__name__}; draw this without --fast.")
        self.unet = unet
        self.interval = interval
        self.calls = 0
        self.skipping = False
        self.kept: torch.Tensor | None = None
        deep = [*unet.down_blocks[1:], unet.mid_block, *unet.up_blocks[:-1]]
        self.handles = [unet.register_forward_pre_hook(self._start)]
        self.handles += [block.register_forward_pre_hook(self._last_up, with_kwargs=True) for block in unet.up_blocks[-1:]]
        self.originals = []
        for block in deep:
            self.originals.append((block, vars(block).get("forward")))
            block.forward = self._skipping(block)  # type: ignore[method-assign]

    def _start(self, module: Any, args: Any) -> None:
        self.skipping = self.kept is not None and self.calls % self.interval != 0
        self.calls += 1

    def _last_up(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
        if self.skipping:
            return args, {**kwargs, "hidden_states": self.kept}
        self.kept = kwargs["hidden_states"]
        return None

    def _skipping(self, block: torch.nn.Module) -> Any:
        forward = type(block).forward
        count = len(block.resnets) + (1 if getattr(block, "downsamplers", None) else 0) if block in self.unet.down_blocks else None

        def run(*args: Any, **kwargs: Any) -> Any:
            if not self.skipping:
                return forward(block, *args, **kwargs)
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            return (hidden, (hidden,) * count) if count is not None else hidden  # placeholders for skipped blocks only

        return run

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        for block, own in self.originals:
            if own is None:
                del block.forward
            else:
                block.forward = own
        self.kept = None
