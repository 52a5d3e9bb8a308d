"""The bench scripts' clock: wall seconds of one call, the GPU's queued work included."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """A function that runs its argument once and returns the seconds it took. On CUDA it waits for
    the GPU before and after: kernels run asynchronously, so the call's return alone times only the
    launching."""

    def timed(function: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return timed
