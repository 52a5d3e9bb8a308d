"""Limits that parallel requests cannot pass, on SQLite and on PostgreSQL (READ COMMITTED, where
transactions really overlap): the /link guess limit, two people redeeming each other's codes at
once, and the waiting-jobs limit of an account with two linked identities. Each test widens the
gap between the check and the write with a sleep, so the race is there every run."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from commands.frame.types import Reply, Request
from config.roles import RoleLimits
from storage import accounts, queue
from storage.tables import AuditEntry, Job, JobStatus, User
from tests.support import postgres_cluster
from tests.test_service import Bot, make_bot

CODE = re.compile(r"`([A-Z0-9]{4}-[A-Z0-9]{4})`")
GAP = 0.2  # seconds between a check and its write: every parallel request sees the others' checks


@pytest.fixture(params=["sqlite", "postgresql"])
async def racing_bot(request: pytest.FixtureRequest, settings) -> AsyncIterator[Bot]:  # type: ignore[no-untyped-def]
    update: dict[str, Any] = {"role_limits": {"default": RoleLimits(queued_jobs=3)}}
    if request.param == "postgresql":
        update["database_url"] = await postgres_cluster.cluster().new_database()
    made = await make_bot(settings.model_copy(update=update))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def ask(bot: Bot, text: str, *, platform: str, user: str, n: int = 0) -> Reply:
    request = Request(
        platform=platform,
        user_id=user,
        chat_id=f"{platform}-{user}",
        user_name=f"{platform}-{user}",
        message_id=f"{platform}-{n}-{text[:20]}",
        text=text,
        private=True,
    )
    [reply] = await bot.service.handle(request)
    return reply


async def code_of(bot: Bot, *, platform: str, user: str) -> str:
    found = CODE.search((await ask(bot, "/link", platform=platform, user=user)).text)
    assert found
    return found.group(1)


def slowed(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """`module.name` waits GAP before it runs; returns the list its calls are counted in."""
    original, calls = getattr(module, name), []

    async def slow(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        await asyncio.sleep(GAP)
        return await original(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)
    return calls


async def test_parallel_wrong_link_codes_are_checked_at_most_the_limit(racing_bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    bot, limit = racing_bot, racing_bot.core.settings.link_failures_per_hour  # 5
    await ask(bot, "/me", platform="discord", user="66")  # the identity exists: only the guesses race
    lookups = slowed(monkeypatch, accounts, "redeem")  # the code's lookup: between the count and the record
    wrong = [f"ZZZZ-ZZ{a}{b}" for a in "ABCDEFGH" for b in "ABCDE"]
    replies = await asyncio.gather(*(ask(bot, f"/link {code}", platform="discord", user="66", n=n) for n, code in enumerate(wrong)))
    unknown = [r for r in replies if "don't know that link code" in r.text]
    blocked = [r for r in replies if "wrong link codes in an hour" in r.text]
    assert len(lookups) == limit, f"{len(lookups)} of {len(wrong)} parallel codes were checked, the limit is {limit}"
    assert len(unknown) == len(lookups) and len(unknown) + len(blocked) == len(wrong)
    async with bot.core.db.transaction() as session:
        query = select(func.count()).where(AuditEntry.action == "refused:link_failed")
        counted = (await session.execute(query)).scalar_one()
    assert counted == len(lookups)  # each checked guess recorded once, none twice


async def test_two_people_redeeming_each_others_codes_at_once_leave_no_cycle(racing_bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = racing_bot
    ada, bob = await code_of(bot, platform="telegram", user="1"), await code_of(bot, platform="discord", user="2")
    slowed(monkeypatch, accounts, "redeem")  # both read the other's account before either joins
    replies = await asyncio.gather(
        ask(bot, f"/link {bob}", platform="telegram", user="1"), ask(bot, f"/link {ada}", platform="discord", user="2")
    )
    texts = [reply.text for reply in replies]
    assert sum(text.startswith("🔗 Linked") for text in texts) == 1, texts
    assert not any("went wrong" in text for text in texts), texts  # the other is answered, not given an error ref
    assert len(await accounts_of_everyone(bot)) == 1  # both identities are one account


async def test_a_link_into_an_account_joining_another_at_once_ends_in_the_root(racing_bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ada types Bob's code while Bob types Cy's: Ada's identity must end in Cy's account, not in
    Bob's, which is no account any more (a chain, which every reader takes for one step)."""
    bot = racing_bot
    bob, cy = await code_of(bot, platform="discord", user="2"), await code_of(bot, platform="telegram", user="3")
    slowed(monkeypatch, accounts, "redeem")
    replies = await asyncio.gather(
        ask(bot, f"/link {bob}", platform="telegram", user="1"), ask(bot, f"/link {cy}", platform="discord", user="2")
    )
    texts = [reply.text for reply in replies]
    assert texts[1].startswith("🔗 Linked") and not any("went wrong" in text for text in texts), texts
    await accounts_of_everyone(bot)


async def accounts_of_everyone(bot: Bot) -> set[int]:
    """The accounts (root rows); fails unless every linked identity names a root: no chain, no cycle."""
    async with bot.core.db.transaction() as session:
        linked_to = {row.id: row.account_id for row in (await session.execute(select(User))).scalars()}
    for identity, account in linked_to.items():
        assert account is None or linked_to[account] is None, f"identity {identity} is linked to a linked one: {linked_to}"
    return {account or identity for identity, account in linked_to.items()}


async def test_parallel_jobs_from_two_linked_identities_stay_within_the_waiting_limit(
    racing_bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot, limit = racing_bot, 3
    code = await code_of(bot, platform="telegram", user="1")
    assert (await ask(bot, f"/link {code}", platform="discord", user="1")).text.startswith("🔗 Linked")
    slowed(monkeypatch, queue, "enqueue")  # the insert, after the count
    platforms = ("telegram", "discord")  # the account's two identities, taking turns
    replies = await asyncio.gather(*(ask(bot, f"/imagine a fox {n} --steps 1", platform=platforms[n % 2], user="1", n=n) for n in range(8)))
    queued = [reply for reply in replies if reply.kind == "status"]
    refused = [reply.text for reply in replies if reply.kind != "status"]
    assert len(queued) == limit and all(f"the limit is {limit}" in text for text in refused), refused
    async with bot.core.db.transaction() as session:
        waiting = (await session.execute(select(func.count()).where(Job.status.in_(JobStatus.ACTIVE)))).scalar_one()
    assert waiting == limit
