"""Regional prompting in a running job (`spec.regions`): a different prompt for each part of the
picture, Regional Prompter's "Latent mode" / MultiDiffusion style. Layout and prompt syntax are in
`generation.prompts.region_layout` (torch-free); user docs in docs/regions.md.

How: for the job only, `pipe.unet.forward` is wrapped (restored afterwards, also after an error).
At every UNet call the wrapper runs the real UNet once per region with that region's
conditioning, once with the base prompt (if any, and its ratio is above 0) and once with the
shared negative prompt (when the pipeline does CFG), all on the same latents and timestep, and
blends the noise predictions with feathered masks at latent resolution:

    eps_regions = sum_r w_r(x, y) * eps_r          (w_r >= 0, sum_r w_r = 1 at every pixel)
    eps_pos     = base_ratio * eps_base + (1 - base_ratio) * eps_regions

and hands `[eps_negative, eps_pos]` back to the pipeline, whose CFG and scheduler run unchanged
(blending is linear and the weights sum to 1, so blending before or after CFG is the same).

Cost: R + 2 UNet calls per sampling step with a base and CFG (R + 1 without a base, one fewer
without CFG) against 1 batched call of 2 for a plain job, each of batch n: about (R + 2) / 2
times the time of a plain job. Memory stays that of a plain job (each call is batch n, not 2n).

The pipeline itself is called with the first region's (or base's) embeddings, so all
conditionings are padded to the same number of chunks; the step index comes from the pipeline's
step callback (`switch`), exactly as for prompt editing, so `[a:b:5]` and `[a|b]` inside a
region switch at the same steps as A1111's.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from generation.errors import EngineUserError
from generation.prompts.conditions import PromptConditions
from generation.prompts.encoder import Conditioning, encode_texts
from generation.prompts.region_layout import DEFAULT_BASE_RATIO, Layout, check_regions, parse_layout, split_regions
from generation.prompts.schedule import has_schedule, prompt_schedule
from generation.spec import GenerationSpec

FEATHER_FRACTION = 1 / 32  # half-width of the blend band at a border, of the shorter latent side
MIN_FEATHER = 1.0  # ... but at least one latent pixel (8 image pixels)


def region_weights(layout: Layout, height: int, width: int, *, feather: float | None = None) -> torch.Tensor:
    """[R, height, width] blend weights at latent resolution: 1 inside a region, linear ramps
    across each border between regions (none at the picture's edges), summing to 1 everywhere.
    The ramp's half-width is `feather` latent pixels (default: 1/32 of the shorter side, at least
    1), cut to half of the smaller neighbour so every region keeps a core of its own."""
    if feather is None:
        feather = max(MIN_FEATHER, min(height, width) * FEATHER_FRACTION)
    assert layout.groups is not None, "resolve the layout first"
    outer_len, inner_len = (height, width) if layout.mode == "cols" else (width, height)
    outer = _ramps([g.size for g in layout.groups], outer_len, feather)
    weights = []
    for group, outer_ramp in zip(layout.groups, outer, strict=True):
        for inner_ramp in _ramps(list(group.cells), inner_len, feather):
            if layout.mode == "cols":  # outer runs down (y), inner across (x)
                weights.append(outer_ramp[:, None] * inner_ramp[None, :])
            else:
                weights.append(inner_ramp[:, None] * outer_ramp[None, :])
    stacked = torch.stack(weights)
    return stacked / stacked.sum(dim=0, keepdim=True)


def _ramps(sizes: list[float], length: int, feather: float) -> list[torch.Tensor]:
    """1-D weights of consecutive spans of `length` pixels in the ratio `sizes`."""
    total = sum(sizes)
    edges = [0.0]
    for size in sizes:
        edges.append(edges[-1] + size / total * length)
    edges[-1] = float(length)
    centres = torch.arange(length, dtype=torch.float64) + 0.5
    ramps = []
    for i in range(len(sizes)):
        ramp = torch.ones(length, dtype=torch.float64)
        if i > 0:  # the border with the previous span
            f = min(feather, (edges[i] - edges[i - 1]) / 2, (edges[i + 1] - edges[i]) / 2)
            ramp *= ((centres - (edges[i] - f)) / (2 * f)).clamp(0, 1)
        if i < len(sizes) - 1:
            f = min(feather, (edges[i + 1] - edges[i]) / 2, (edges[i + 2] - edges[i + 1]) / 2)
            ramp *= (((edges[i + 1] + f) - centres) / (2 * f)).clamp(0, 1)
        ramps.append(ramp)
    return ramps


class RegionalConditions:
    """The conditionings of a regional job, per region and per step, with the interface of
    `PromptConditions` that `Engine.diffuse` uses (first, tensor_inputs, switch)."""

    def __init__(
        self,
        layout: Layout,
        regions: list[tuple[Conditioning, ...]],
        base: tuple[Conditioning, ...] | None,
        base_ratio: float,
        images: int,
        sdxl: bool,
    ):
        self.layout = layout
        self.regions = regions  # regions[r][step]
        self.base = base if base_ratio > 0 else None  # a base with ratio 0 costs a UNet call for nothing
        self.base_ratio = base_ratio if self.base is not None else 0.0
        self.images = images
        self.sdxl = sdxl
        self.step = 0  # the step running now (set by `switch`, reset by `applied`)

    @classmethod
    def build(cls, pipe: Any, spec: GenerationSpec, steps_run: int, *, images: int) -> RegionalConditions:
        assert spec.regions is not None
        problems = check_regions(spec.regions, spec.prompt, spec.base_ratio)
        if problems:
            raise EngineUserError(" ".join(problems))
        parts = split_regions(spec.prompt)
        layout = parse_layout(spec.regions).resolved(len(parts.regions))
        texts = parts.region_prompts()
        base_text = parts.base_prompt()
        if base_text is not None:
            texts.append(base_text)
        steps = max(steps_run, 1)
        schedules = [prompt_schedule(text, steps_run) if steps_run >= 1 and has_schedule(text) else [(steps, text)] for text in texts]
        # One encode_texts call for every text of every region: all padded to the same chunks.
        unique = list(dict.fromkeys(text for schedule in schedules for _, text in schedule))
        encoded = dict(zip(unique, encode_texts(pipe, unique, spec.negative_prompt, clip_skip=spec.clip_skip or 1), strict=True))
        per_text = [tuple(encoded[next(t for end, t in schedule if i <= end)] for i in range(steps)) for schedule in schedules]
        base = per_text.pop() if base_text is not None else None
        ratio = spec.base_ratio if spec.base_ratio is not None else DEFAULT_BASE_RATIO
        sdxl = getattr(pipe, "text_encoder_2", None) is not None
        return cls(layout, per_text, base, ratio if base is not None else 0.0, images, sdxl)

    # --- the PromptConditions interface -------------------------------------------------------

    def first(self) -> Conditioning:
        return (self.base or self.regions[0])[0]

    def tensor_inputs(self) -> list[str]:
        return ["latents"]  # the wrapper substitutes every conditioning itself

    def switch(self, pipeline: Any, next_step: int) -> dict[str, torch.Tensor]:
        self.step = next_step
        return {}

    # --- at a step ----------------------------------------------------------------------------

    def at(self, per_step: tuple[Conditioning, ...]) -> Conditioning:
        return per_step[min(self.step, len(per_step) - 1)]


def conditions_for(pipe: Any, spec: GenerationSpec, steps_run: int, *, images: int) -> PromptConditions | RegionalConditions:
    """The job's conditions: regional when `spec.regions` is set. The tiles of a hires upscale
    each see only part of the picture, so there the regions' prompts are joined into one."""
    if not spec.regions:
        return PromptConditions.build(pipe, spec, steps_run, images=images)
    if spec.kind == "upscale" and spec.upscale_method == "hires":
        try:
            plain = split_regions(spec.prompt).plain()
        except ValueError as error:
            raise EngineUserError(str(error)) from None
        flat = spec.evolve(prompt=plain, regions=None, base_ratio=None)
        return PromptConditions.build(pipe, flat, steps_run, images=images)
    return RegionalConditions.build(pipe, spec, steps_run, images=images)


@contextlib.contextmanager
def applied(pipe: Any, conditions: Any) -> Iterator[None]:
    """For a regional job, `pipe.unet.forward` blends per-region predictions until the block
    ends (and is restored, also after an error); for any other job, nothing."""
    if not isinstance(conditions, RegionalConditions):
        yield
        return
    unet = pipe.unet
    had_own = "forward" in vars(unet)  # e.g. accelerate's offload hook
    original = unet.forward
    signature = inspect.signature(type(unet).forward)  # the real one: a hook's may be (*args, **kwargs)
    masks: dict[tuple[Any, ...], torch.Tensor] = {}
    conditions.step = 0

    def weights(sample: torch.Tensor) -> torch.Tensor:
        key = (sample.shape[-2], sample.shape[-1], sample.device, sample.dtype)
        if key not in masks:
            w = region_weights(conditions.layout, sample.shape[-2], sample.shape[-1])
            masks[key] = w[:, None, None].to(sample.device, sample.dtype)  # [R, 1, 1, H, W]
        return masks[key]

    def forward(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(unet, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        return_dict = arguments.pop("return_dict", True)
        sample = arguments["sample"]
        batch, n = sample.shape[0], conditions.images
        if batch not in (n, 2 * n):
            raise RuntimeError(f"regional prompting: the UNet got a batch of {batch} for {n} image(s)")
        guided = batch == 2 * n

        def run(rows: slice, conditioning: Conditioning, negative: bool) -> torch.Tensor:
            call = {name: _rows(value, rows, batch) for name, value in arguments.items()}
            embeds = conditioning.negative_prompt_embeds if negative else conditioning.prompt_embeds
            call["encoder_hidden_states"] = _repeat(embeds, n, sample)
            added = call.get("added_cond_kwargs")
            if added and "text_embeds" in added:  # SDXL: the pooled text embedding, per region
                pooled = conditioning.negative_pooled_prompt_embeds if negative else conditioning.pooled_prompt_embeds
                assert pooled is not None
                call["added_cond_kwargs"] = {**added, "text_embeds": _repeat(pooled, n, sample)}
            return original(**call, return_dict=False)[0]

        positive = slice(n, 2 * n) if guided else slice(0, n)
        mask = weights(sample)
        blended = None
        for r, per_step in enumerate(conditions.regions):
            eps = run(positive, conditions.at(per_step), negative=False)
            blended = eps * mask[r] if blended is None else blended.addcmul_(eps, mask[r])
        assert blended is not None
        if conditions.base is not None:
            eps_base = run(positive, conditions.at(conditions.base), negative=False)
            blended = blended.mul_(1 - conditions.base_ratio).add_(eps_base, alpha=conditions.base_ratio)
        if guided:
            eps_negative = run(slice(0, n), conditions.at(conditions.regions[0]), negative=True)
            blended = torch.cat([eps_negative, blended])
        if not return_dict:
            return (blended,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=blended)

    unet.forward = forward
    try:
        yield
    finally:
        if had_own:
            unet.forward = original
        else:
            del unet.forward


def _repeat(tensor: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    tensor = tensor.to(like.device)
    return tensor.repeat(n, *([1] * (tensor.dim() - 1)))


def _rows(value: Any, rows: slice, batch: int) -> Any:
    """`value` cut to the batch rows `rows` where it is batched (tensors, also inside dicts,
    lists and tuples); anything else as is."""
    if isinstance(value, torch.Tensor):
        return value[rows] if value.dim() > 0 and value.shape[0] == batch else value
    if isinstance(value, dict):
        return {key: _rows(item, rows, batch) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_rows(item, rows, batch) for item in value)
    return value
