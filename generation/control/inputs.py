"""A job's controls, ready to steer its diffusion passes (made by `generation.control.preprocess`).

Every pass takes the part of the maps it draws (`pass_arguments`), so an inpaint crop or an
upscale tile is steered by the same part of the map as the picture it repaints.

Control modes (A1111's, per job here): balanced; prompt ("My prompt is more important"): each of
the 13 ControlNet residuals scaled by 0.825^(12 - i), A1111's soft injection; control
("ControlNet is more important"): diffusers' guess mode, the ControlNet on the conditional half
only, its residuals scaled from 0.1 to 1 (A1111's soft injection with the ControlNet kept out
of the unconditional half).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from generation.models.families import ControlNetSupport
from generation.spec import ControlRef

PROMPT_MODE_DECAY = 0.825  # A1111's soft injection ("My prompt is more important")


@dataclass
class ControlInputs:
    """A job's controls, ready to steer its passes: the loaded ControlNets and the maps at the
    job's canvas size, in the order of `spec.controls`."""

    refs: tuple[ControlRef, ...]
    nets: tuple[Any, ...]
    maps: list[Image.Image]
    mode: str

    def pass_arguments(
        self, pipeline_kind: str, size: tuple[int, int], region: tuple[int, int, int, int] | None, support: ControlNetSupport
    ) -> dict[str, Any]:
        """The pipeline arguments of one pass drawing `region` of the canvas (all of it: None) at
        `size`, as the family's ControlNet pipelines (`support`) take them."""
        maps = []
        for picture in self.maps:
            part = picture.crop(region) if region else picture
            maps.append(part if part.size == size else part.resize(size, Image.Resampling.LANCZOS))
        single = len(maps) == 1
        arguments: dict[str, Any] = {
            (support.txt2img_map_argument if pipeline_kind == "txt2img" else "control_image"): maps[0] if single else maps,
            "controlnet_conditioning_scale": self.refs[0].weight if single else [r.weight for r in self.refs],
        }
        if support.guidance_window:  # Z-Image's pipeline has none: such jobs are refused before queueing
            arguments["control_guidance_start"] = self.refs[0].start if single else [r.start for r in self.refs]
            arguments["control_guidance_end"] = self.refs[0].end if single else [r.end for r in self.refs]
        if self.mode == "control":
            arguments["guess_mode"] = True
        return arguments

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The control mode's residual scaling on the ControlNets, for the pass only."""
        if self.mode != "prompt":
            yield
            return
        handles = [net.register_forward_hook(_soft_injection) for net in self.nets]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _soft_injection(module: Any, inputs: Any, output: Any) -> Any:
    """Scale the 12 down residuals and the mid residual by 0.825^(12 - i) (A1111's soft injection)."""
    down, mid = (output.down_block_res_samples, output.mid_block_res_sample) if hasattr(output, "mid_block_res_sample") else output
    count = len(down) + 1
    scaled_down = [sample * PROMPT_MODE_DECAY ** float(count - 1 - i) for i, sample in enumerate(down)]
    if hasattr(output, "mid_block_res_sample"):
        return type(output)(down_block_res_samples=tuple(scaled_down), mid_block_res_sample=mid)
    return (tuple(scaled_down), mid)
