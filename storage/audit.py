"""The audit log: admin actions, links and refusals, with who and when (`/admin audit`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import AuditEntry

MAX_DETAIL = 500


async def record(
    session: AsyncSession, *, actor_id: int | None, platform: str, platform_user_id: str, action: str, detail: str = ""
) -> None:
    session.add(
        AuditEntry(actor_id=actor_id, platform=platform, platform_user_id=platform_user_id, action=action, detail=detail[:MAX_DETAIL])
    )
    await session.flush()


async def latest(session: AsyncSession, limit: int, action_prefix: str | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action_prefix:
        query = query.where(AuditEntry.action.startswith(action_prefix))
    return list((await session.execute(query)).scalars())


async def count_since(
    session: AsyncSession, platform: str, platform_user_id: str, action: str, since: datetime
) -> tuple[int, datetime | None]:
    """How often this identity did `action` since then, and the first time it did."""
    query = select(func.count(), func.min(AuditEntry.at)).where(
        AuditEntry.platform == platform,
        AuditEntry.platform_user_id == platform_user_id,
        AuditEntry.action == action,
        AuditEntry.at >= since,
    )
    count, first = (await session.execute(query)).one()  # min() keeps the column's type: `first` is aware
    return int(count), first
