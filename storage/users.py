"""Users: one row per (platform, platform user id), an identity. An identity linked to another
(`storage.accounts.link`) names that one's row as its account; everything a person owns hangs
off the account's row, so `get_or_create` hands out the account."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import User, utcnow


async def identity(session: AsyncSession, platform: str, platform_user_id: str, display_name: str | None = None) -> User:
    """This platform user's own row, created on first sight. Safe against two processes racing."""
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


async def get_or_create(session: AsyncSession, platform: str, platform_user_id: str, display_name: str | None = None) -> User:
    """The account of this platform user: their own row, or the one it is linked to."""
    return await account_of(session, await identity(session, platform, platform_user_id, display_name))


async def account_of(session: AsyncSession, user: User) -> User:
    """An identity's account: itself, or the row it is linked to."""
    if user.account_id is None:
        return user
    account = await session.get(User, user.account_id)
    return account if account is not None else user  # the account row cannot vanish (SET NULL), but be safe


async def lock(session: AsyncSession, *ids: int) -> dict[int, User]:
    """These rows (by id), locked until the transaction ends and read again, so what another
    transaction committed before the lock is what this one sees, and none can change them until
    this one ends. Taken in id order: two transactions that lock the same rows here cannot
    deadlock on them. On PostgreSQL SELECT ... FOR NO KEY UPDATE, the lock an UPDATE of the row
    (`identity`'s last_seen_at) takes: a transaction that did that holds the lock already, so no
    upgrade waits behind the others queued for the row (FOR UPDATE deadlocked there), and rows
    that point at it (jobs, audit entries) can still be added. A plain read on SQLite, where every
    transaction holds the writer lock from its BEGIN IMMEDIATE."""
    query = select(User).where(User.id.in_(set(ids))).order_by(User.id).with_for_update(key_share=True)
    rows = (await session.execute(query.execution_options(populate_existing=True))).scalars()
    return {row.id: row for row in rows}


async def identities(session: AsyncSession, account_id: int) -> list[User]:
    """Every identity of an account, the account's own row first."""
    query = select(User).where(or_(User.id == account_id, User.account_id == account_id)).order_by(User.id)
    rows = list((await session.execute(query)).scalars())
    return sorted(rows, key=lambda row: row.id != account_id)


async def identity_on(session: AsyncSession, account_id: int, platform: str) -> User | None:
    """The account's identity on `platform` (whom to mention there), if it has one."""
    return next((row for row in await identities(session, account_id) if row.platform == platform), None)


async def find(session: AsyncSession, platform: str, platform_user_id: str) -> User | None:
    """An identity already seen, or None."""
    query = select(User).where(User.platform == platform, User.platform_user_id == platform_user_id)
    return (await session.execute(query)).scalar_one_or_none()


async def save_settings(session: AsyncSession, user: User, settings: dict[str, Any]) -> None:
    user.settings = dict(settings)  # a new dict, so SQLAlchemy sees the change
