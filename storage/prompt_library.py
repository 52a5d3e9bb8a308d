"""Saved prompt styles and users' wildcard lists.

Names compare case-insensitively (stored lower-case): `/style save Noir` and `--style noir` are
the same style. A user's own style of a name hides a global one of the same name, for that user.
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import PromptStyle, Wildcard

# --- styles -------------------------------------------------------------------------------------


async def styles_for(session: AsyncSession, user_id: int | None) -> list[PromptStyle]:
    """Global styles and the user's own, the user's last (so they win a name clash in a dict)."""
    owners = PromptStyle.owner_id.is_(None) if user_id is None else or_(PromptStyle.owner_id.is_(None), PromptStyle.owner_id == user_id)
    query = select(PromptStyle).where(owners).order_by(PromptStyle.owner_id.is_not(None), PromptStyle.name)
    return list((await session.execute(query)).scalars())


async def save_style(session: AsyncSession, owner_id: int | None, name: str, prompt: str, negative: str) -> bool:
    """Create or replace. Returns True when it replaced a style of that name."""
    name = name.lower()
    owner = PromptStyle.owner_id.is_(None) if owner_id is None else PromptStyle.owner_id == owner_id
    existing = (await session.execute(select(PromptStyle).where(owner, PromptStyle.name == name))).scalar_one_or_none()
    if existing is not None:
        existing.prompt, existing.negative = prompt, negative
        return True
    session.add(PromptStyle(owner_id=owner_id, name=name, prompt=prompt, negative=negative))
    await session.flush()
    return False


async def delete_style(session: AsyncSession, owner_id: int | None, name: str) -> bool:
    owner = PromptStyle.owner_id.is_(None) if owner_id is None else PromptStyle.owner_id == owner_id
    result = await session.execute(delete(PromptStyle).where(owner, PromptStyle.name == name.lower()))
    return result.rowcount > 0


# --- wildcards ----------------------------------------------------------------------------------


async def wildcards_of(session: AsyncSession, user_id: int) -> dict[str, tuple[str, ...]]:
    query = select(Wildcard).where(Wildcard.owner_id == user_id).order_by(Wildcard.name)
    return {row.name: tuple(row.lines) for row in (await session.execute(query)).scalars()}


async def save_wildcard(session: AsyncSession, owner_id: int, name: str, lines: tuple[str, ...]) -> bool:
    """Create or replace. Returns True when it replaced a list of that name."""
    name = name.lower()
    query = select(Wildcard).where(Wildcard.owner_id == owner_id, Wildcard.name == name)
    existing = (await session.execute(query)).scalar_one_or_none()
    if existing is not None:
        existing.lines = list(lines)
        return True
    session.add(Wildcard(owner_id=owner_id, name=name, lines=list(lines)))
    await session.flush()
    return False


async def delete_wildcard(session: AsyncSession, owner_id: int, name: str) -> bool:
    query = delete(Wildcard).where(Wildcard.owner_id == owner_id, Wildcard.name == name.lower())
    return (await session.execute(query)).rowcount > 0
