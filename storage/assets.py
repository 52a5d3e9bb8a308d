"""Users' uploaded LoRAs and embeddings.

Rights: a user may use their own assets and shared ones; another user's private asset does not
exist for them ("not found", never "forbidden": its name is not revealed). Names are unique per
owner and kind, stored lower case; when a user's own asset and a shared one have the same name,
their own wins.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import Asset, User


async def usable(session: AsyncSession, user_id: int, kind: str) -> list[Asset]:
    """The user's own assets of `kind` and the shared ones, own first, by name."""
    query = (
        select(Asset)
        .where(Asset.kind == kind, or_(Asset.owner_id == user_id, Asset.shared.is_(True)))
        .order_by(Asset.owner_id != user_id, Asset.name)
    )
    return list((await session.execute(query)).scalars())


async def find_usable(session: AsyncSession, user_id: int, kind: str, name: str) -> Asset | None:
    """The asset `name` as `user_id` sees it: their own first, else a shared one."""
    query = (
        select(Asset)
        .where(Asset.kind == kind, Asset.name == name.lower(), or_(Asset.owner_id == user_id, Asset.shared.is_(True)))
        .order_by(Asset.owner_id != user_id, Asset.id)
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def find_own(session: AsyncSession, owner_id: int, kind: str, name: str) -> Asset | None:
    query = select(Asset).where(Asset.owner_id == owner_id, Asset.kind == kind, Asset.name == name.lower())
    return (await session.execute(query)).scalar_one_or_none()


async def find_any(session: AsyncSession, kind: str, name: str) -> list[Asset]:
    """Every asset of that name, whoever owns it (for admins)."""
    query = select(Asset).where(Asset.kind == kind, Asset.name == name.lower()).order_by(Asset.id)
    return list((await session.execute(query)).scalars())


async def bytes_used(session: AsyncSession, owner_id: int) -> int:
    """What a user's uploads take, counted per upload (the quota is the user's, whatever is shared)."""
    query = select(func.coalesce(func.sum(Asset.size), 0)).where(Asset.owner_id == owner_id)
    return int((await session.execute(query)).scalar_one())


async def add(session: AsyncSession, owner_id: int, kind: str, name: str, **fields: Any) -> Asset:
    asset = Asset(owner_id=owner_id, kind=kind, name=name.lower(), shared=False, **fields)
    session.add(asset)
    await session.flush()
    return asset


async def owner_of(session: AsyncSession, asset: Asset) -> User | None:
    return await session.get(User, asset.owner_id)
