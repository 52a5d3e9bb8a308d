"""Seamless textures (`/imagine --tile`): circular padding in every convolution of the UNet and
the VAE, so the picture is computed on a torus and its left edge continues its right edge (and
top continues bottom). Set for one job and restored after it, on the shared modules.

Why this works and what it needs: convolutions are the only layers that see the image border
(attention and group norm are indifferent to where the image starts), so with circular padding
the whole network commutes with rolling the latents by a multiple of its downsampling factor.
`tests/test_postprocess.py` checks exactly that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch


@contextlib.contextmanager
def circular_padding(modules: Iterable[torch.nn.Module], *, enabled: bool = True) -> Iterator[None]:
    """Every padded Conv2d inside `modules` pads circularly until the block ends."""
    if not enabled:
        yield
        return
    changed: list[tuple[torch.nn.Conv2d, str]] = []
    try:
        for module in modules:
            for conv in module.modules():
                if isinstance(conv, torch.nn.Conv2d) and any(conv.padding if isinstance(conv.padding, tuple) else ()):
                    changed.append((conv, conv.padding_mode))
                    conv.padding_mode = "circular"
        yield
    finally:
        for conv, mode in changed:
            conv.padding_mode = mode
