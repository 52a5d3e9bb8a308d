"""Models admins added in chat (`/model add`), and copying them into a process's registry.

Every process keeps its own `ModelRegistry`; the database is where they agree. The command
service syncs before each request and the worker before each job, so a model added or removed
on one machine is known to every bot and worker at their next request or job, without a restart.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.models import ModelEntry, ModelRegistry
from storage.tables import AddedModel, Job, JobStatus

log = logging.getLogger(__name__)


async def added_models(session: AsyncSession) -> list[ModelEntry]:
    """The chat-added models, oldest first. A row this version cannot read is skipped (logged)."""
    entries = []
    for row in (await session.execute(select(AddedModel).order_by(AddedModel.id))).scalars():
        try:
            entries.append(ModelEntry.model_validate(row.entry))
        except ValidationError as error:
            log.error("the added model %r cannot be read and is skipped: %s", row.name, error)
    return entries


async def sync(session: AsyncSession, registry: ModelRegistry) -> None:
    registry.set_added(await added_models(session))


async def add_model(session: AsyncSession, entry: ModelEntry, added_by: int | None) -> None:
    """Store `entry` (its `name` set). The caller checked that the name is free."""
    assert entry.name, "an added model needs a name"
    session.add(AddedModel(name=entry.name.lower(), entry=entry.model_dump(exclude_none=True), added_by=added_by))
    await session.flush()


async def remove_model(session: AsyncSession, name: str) -> bool:
    result = await session.execute(delete(AddedModel).where(AddedModel.name == name.strip().lower()))
    return result.rowcount > 0


async def active_jobs_using(session: AsyncSession, name: str) -> int:
    """Jobs queued or running on the model `name` (they would fail if it were removed)."""
    query = select(func.count()).select_from(Job).where(func.lower(Job.model) == name.strip().lower(), Job.status.in_(JobStatus.ACTIVE))
    return int((await session.execute(query)).scalar_one())
