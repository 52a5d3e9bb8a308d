"""What command handlers need: the database, the blob store, the settings and the model registry,
and a way to wake a local worker. Built once in `run_bot.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from config import ModelRegistry, Settings
from storage.blobs import BlobStore
from storage.db import Database


@dataclass
class Context:
    db: Database
    blobs: BlobStore
    settings: Settings
    registry: ModelRegistry
    on_enqueue: Callable[[], None] = field(default=lambda: None)

    def is_admin(self, platform: str, user_id: str) -> bool:
        return self.settings.is_admin(platform, user_id)
