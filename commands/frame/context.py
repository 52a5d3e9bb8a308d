"""What command handlers need: the database, the blob store, the settings and the model registry,
and a way to wake a local worker. Built once in `run_bot.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from commands.frame.types import Request
from config import ModelRegistry, Settings
from config.roles import Role, RoleLimits
from storage.blobs import BlobStore
from storage.db import Database


class RoleCache:
    """Who asked, resolved lately: the role and the account's row id, per (platform, user,
    platform roles), for SDBOT_ROLE_CACHE_SECONDS: resolving is a transaction, which on SQLite
    takes the writer lock and made a /queue 1.7x slower (bench/people_cost.py). What changes a
    role or a link in this process clears it."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._roles: dict[tuple[str, str, tuple[str, ...]], tuple[float, Role, int]] = {}

    def get(self, key: tuple[str, str, tuple[str, ...]], now: float) -> tuple[Role, int] | None:
        found = self._roles.get(key)
        return (found[1], found[2]) if found is not None and found[0] > now else None

    def put(self, key: tuple[str, str, tuple[str, ...]], role: Role, account_id: int, until: float) -> None:
        if len(self._roles) >= self.MAX_ENTRIES:
            self._roles.clear()
        self._roles[key] = (until, role, account_id)

    def clear(self) -> None:
        self._roles.clear()


@dataclass
class Context:
    db: Database
    blobs: BlobStore
    settings: Settings
    registry: ModelRegistry
    on_enqueue: Callable[[], None] = field(default=lambda: None)
    roles: RoleCache = field(default_factory=RoleCache)  # commands.jobs.admission.resolve fills it

    def is_admin(self, request: Request) -> bool:
        """Whether the person asking is an admin: by the role CommandService resolved (an
        `/admin role`, a linked identity), else by SDBOT_ADMIN_IDS alone."""
        if request.role is not None:
            return request.role == "admin"
        return self.settings.is_admin(request.platform, request.user_id)

    def roles_changed(self) -> None:
        """A role or a link changed: resolve everyone's role afresh."""
        self.roles.clear()

    def limits(self, request: Request) -> RoleLimits:
        return self.settings.limits(request.role or "default")
