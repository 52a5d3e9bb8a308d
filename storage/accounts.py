"""One account across platforms: `/link` codes, joining two accounts, and unlinking.

A code is made on one platform and typed on another. Joining moves everything the second
account owns (jobs and history, LoRAs and embeddings, styles, wildcards, training runs) to the
first, which keeps its settings where both set one; names both used are renamed, and every
such conflict is returned as a line the person reads.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.roles import ROLES
from storage import users
from storage.tables import AddedModel, Asset, Job, LinkCode, PromptStyle, TrainingRun, User, Wildcard, utcnow

# No 0/O or 1/I/L: a code is read off one screen and typed on another. 32 symbols, 8 of them:
# 40 bits, against at most SDBOT_LINK_FAILURES_PER_HOUR guesses per person while a code lives.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


PLATFORM_NAMES = {"discord": "Discord", "telegram": "Telegram", "console": "the console"}


def platform_name(platform: str) -> str:
    return PLATFORM_NAMES.get(platform, platform)


def normalise_code(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def _hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def looks_like_code(text: str) -> bool:
    code = normalise_code(text)
    return len(code) == CODE_LENGTH and all(ch in CODE_ALPHABET for ch in code)


async def new_code(session: AsyncSession, account_id: int, platform: str, minutes: int) -> tuple[str, datetime]:
    """A fresh code for the account (its earlier unused ones stop working). Returns it, shown as
    `ABCD-EFGH`, and when it expires."""
    await session.execute(delete(LinkCode).where(LinkCode.account_id == account_id, LinkCode.used_at.is_(None)))
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    expires = utcnow() + timedelta(minutes=minutes)
    session.add(LinkCode(code_hash=_hash(code), account_id=account_id, platform=platform, expires_at=expires))
    await session.flush()
    return f"{code[:4]}-{code[4:]}", expires


Redeemed = Literal["unknown", "expired", "used"]


async def redeem(session: AsyncSession, code: str) -> LinkCode | Redeemed:
    """Use a code up: its row, or why it cannot be used. Single use even when two requests race
    (the compare-and-set on `used_at`)."""
    row = await session.get(LinkCode, _hash(code))
    if row is None:
        return "unknown"
    if row.used_at is not None:
        return "used"
    if row.expires_at <= utcnow():
        return "expired"
    taken = await session.execute(
        update(LinkCode).where(LinkCode.code_hash == row.code_hash, LinkCode.used_at.is_(None)).values(used_at=utcnow())
    )
    return row if taken.rowcount == 1 else "used"


@dataclass(frozen=True)
class _Named:
    table: type
    label: str
    scoped_by_kind: bool
    max_length: int


_NAMED = (
    _Named(Asset, "", True, 64),  # label: the asset's kind
    _Named(PromptStyle, "style", False, 32),
    _Named(Wildcard, "wildcard list", False, 64),
)


async def join(session: AsyncSession, into: User, other: User) -> list[str]:
    """Move everything of account `other` to account `into`; `other` and its identities become
    identities of `into`. Returns the conflicts, as lines for the person."""
    notes: list[str] = []
    merged = {**other.settings, **into.settings}
    clashes = sorted(k for k in other.settings if k in into.settings and into.settings[k] != other.settings[k])
    if clashes:
        notes.append(
            f"Settings both accounts had ({', '.join(clashes)}): the values of your {platform_name(into.platform)} account were kept."
        )
    await users.save_settings(session, into, merged)
    if other.role is not None:  # a ban stays; otherwise the stronger of the two roles set in chat
        kept = "banned" if "banned" in (into.role, other.role) else max((r for r in (into.role, other.role) if r), key=ROLES.index)
        into.role = kept
    for named in _NAMED:
        notes += await _move_named(session, named, into.id, other.id, platform_name(other.platform))
    await session.execute(update(Job).where(Job.user_id == other.id).values(user_id=into.id))
    await session.execute(update(TrainingRun).where(TrainingRun.owner_id == other.id).values(owner_id=into.id))
    await session.execute(update(AddedModel).where(AddedModel.added_by == other.id).values(added_by=into.id))
    await session.execute(delete(LinkCode).where(LinkCode.account_id == other.id))
    await session.execute(update(User).where(User.account_id == other.id).values(account_id=into.id))
    other.account_id, other.role = into.id, None
    await users.save_settings(session, other, {})
    await session.flush()
    return notes


async def _move_named(session: AsyncSession, named: _Named, into_id: int, other_id: int, platform: str) -> list[str]:
    table = named.table
    taken = {
        (getattr(row, "kind", ""), row.name) for row in (await session.execute(select(table).where(table.owner_id == into_id))).scalars()
    }
    notes = []
    for row in (await session.execute(select(table).where(table.owner_id == other_id))).scalars():
        kind = getattr(row, "kind", "") if named.scoped_by_kind else ""
        if (kind, row.name) in taken:
            new = _free_name(row.name, {name for k, name in taken if k == kind}, named.max_length)
            label = named.label or {"lora": "LoRA"}.get(kind, kind)
            notes.append(f"Both accounts had a {label} named `{row.name}`: the one from {platform} is now `{new}`.")
            row.name = new
        taken.add((kind, row.name))
        row.owner_id = into_id
    await session.flush()
    return notes


def _free_name(name: str, taken: set[str], max_length: int) -> str:
    for n in range(2, 10_000):
        suffix = f"-{n}"
        candidate = name[: max_length - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise RuntimeError("no free name")  # 10 000 names alike: not a case people meet


async def detach(session: AsyncSession, identity: User) -> list[User]:
    """Unlink: an identity linked to an account leaves it; on the account's own identity, every
    other identity leaves. Those that leave start afresh (what was joined stays with the
    account). Returns the identities that left."""
    if identity.account_id is not None:
        leaving = [identity]
    else:
        leaving = [row for row in await users.identities(session, identity.id) if row.id != identity.id]
    for row in leaving:
        row.account_id = None
        row.role = None
        await users.save_settings(session, row, {})
    await session.flush()
    return leaving
