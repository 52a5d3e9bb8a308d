"""Blocking work of the command layer (decoding uploads, reading videos, zipping frames) runs
here, off the event loop, so one person's upload never stalls the answers to everyone else.

A pool of its own rather than `asyncio.to_thread`: the loop's default executor has
min(32, cores + 4) threads and is shared with the adapters' image work, so it would let up to 32
uploads decode at once, and each can take hundreds of MiB while it does (a 40 MP picture is
120 MiB as RGB, before its copies). Here at most `MAX_AT_ONCE` run; the rest wait in the pool's
queue holding only the bytes that already arrived, and one whose request is cancelled while it
waits never starts. The pool does not belong to an event loop, so one serves the whole process.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from config.logs import run_in_context

P = ParamSpec("P")
R = TypeVar("R")

MAX_AT_ONCE = 2  # CPU-bound work: more threads than a small machine's cores only add memory
_pool = ThreadPoolExecutor(max_workers=MAX_AT_ONCE, thread_name_prefix="sdbot-offload")


async def offload(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` on the pool, awaited; log records inside keep the caller's job scope."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(run_in_context(fn), *args, **kwargs))
