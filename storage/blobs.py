"""Content-addressed files (generated images, uploads) on disk.

A key is the sha256 of the content plus its extension (`<sha256>.png`), so the same bytes are
stored once and a key never changes meaning. `BlobStore` is the interface; multi-machine mode can
put a shared location behind it. Writes are atomic (temp file, fsync, rename): a crash leaves
either the whole file or none, and a job is only marked done after its blobs are on disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,8}$")


def key_of(data: bytes, extension: str) -> str:
    """The key `put` stores `data` under, known before the write (a training run records the
    checkpoint it is about to write, so a crash mid-write leaves no file nobody knows of)."""
    return f"{hashlib.sha256(data).hexdigest()}.{extension.lstrip('.').lower()}"


class BlobStore(Protocol):
    def put(self, data: bytes, extension: str) -> str: ...
    def path(self, key: str) -> Path: ...
    def read(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


class LocalBlobStore:
    """Blobs under `root/<first two hex digits>/<key>`."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, extension: str) -> str:
        key = key_of(data, extension)
        target = self.path(key)
        if target.exists() and target.stat().st_size == len(data):
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        """Remove a blob nothing refers to any more (a training run's superseded checkpoint)."""
        self.path(key).unlink(missing_ok=True)
