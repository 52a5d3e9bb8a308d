"""Users: one row per (platform, platform user id), with their saved /settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import User, utcnow


async def get_or_create(
    session: AsyncSession, platform: str, platform_user_id: str, display_name: str | None = None
) -> User:
    """The user's row, created on first sight. Safe against two processes racing to create it."""
    query = select(User).where(User.platform == platform, User.platform_user_id == platform_user_id)
    user = (await session.execute(query)).scalar_one_or_none()
    if user is None:
        try:
            async with session.begin_nested():
                user = User(platform=platform, platform_user_id=platform_user_id, display_name=display_name, settings={})
                session.add(user)
        except IntegrityError:
            user = (await session.execute(query)).scalar_one()
    user.last_seen_at = utcnow()
    if display_name and user.display_name != display_name:
        user.display_name = display_name
    return user


async def save_settings(session: AsyncSession, user: User, settings: dict[str, Any]) -> None:
    user.settings = dict(settings)  # a new dict, so SQLAlchemy sees the change
