"""A chat's own settings (`/place`), by (platform, chat id)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import Job, JobOutput, Place, utcnow


async def settings_of(session: AsyncSession, platform: str, chat_id: str) -> dict[str, Any]:
    """What this chat's admins set (empty: nothing)."""
    place = await session.get(Place, (platform, chat_id))
    return dict(place.settings) if place is not None else {}


async def save(session: AsyncSession, platform: str, chat_id: str, settings: dict[str, Any], by: int | None) -> None:
    place = await session.get(Place, (platform, chat_id))
    if place is None:
        session.add(Place(platform=platform, chat_id=chat_id, settings=dict(settings), updated_by=by))
    else:
        place.settings, place.updated_by, place.updated_at = dict(settings), by, utcnow()
    await session.flush()


async def withheld_outputs(session: AsyncSession, limit: int) -> list[tuple[JobOutput, Job]]:
    """The latest outputs a place's safety policy blurred or blocked, newest job first."""
    query = (
        select(JobOutput, Job)
        .join(Job, Job.id == JobOutput.job_id)
        .where(JobOutput.safety_action.in_(("blur", "block")))
        .order_by(Job.id.desc(), JobOutput.index)
        .limit(limit)
    )
    return [(output, job) for output, job in (await session.execute(query)).all()]
