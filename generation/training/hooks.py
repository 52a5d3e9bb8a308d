"""How a run talks to the worker: the callbacks the training loop (engine thread) calls. Each
may block on a database write on the event loop (generation.training.run) and may raise
LeaseLost, which ends the attempt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

# What `stopping` says: "" go on; "cancel" the person asked (end early, keep what was learned);
# "shutdown" our own stop (checkpoint, hand the job back); "lost" the lease is gone (write nothing).
Stopping = Literal["", "cancel", "shutdown", "lost"]


@dataclass
class Hooks:
    """How the run talks to the worker (each call may block on the database; raises LeaseLost)."""

    progress: Callable[[int, int, str], None] = lambda step, total, note: None
    stopping: Callable[[], Stopping] = lambda: ""
    should_yield: Callable[[], bool] = lambda: False
    checkpoint: Callable[[int, bytes, list[list[float]]], None] = lambda step, data, losses: None
    sample: Callable[[int, Image.Image, bool], None] = lambda step, picture, last: None  # the worker writes its PNG
    captions: Callable[[list[str]], None] = lambda captions: None
    class_images: Callable[[str], list[bytes] | None] = lambda key: None
    save_class_images: Callable[[str, list[bytes]], None] = lambda key, pngs: None
