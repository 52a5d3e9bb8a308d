"""People through the command layer on a real SQLite file: /link across platforms (codes: single
use, expiry, guessing), what a join merges and the conflicts it says, /unlink, roles (config,
/admin role, platform roles, bans), the quotas per role (jobs a minute, GPU-seconds a day with
the refund of a failed job), /me, and the audit log."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

import pytest
from safetensors.torch import save

from commands.frame.types import Attachment, Reply, Request
from config.roles import RoleLimits
from generation.models.tiny import build_tiny_pipeline
from storage import queue, usage, users
from storage.tables import Job, JobStatus, utcnow
from tests.test_adapters import make_lora, to_kohya
from tests.test_service import Bot, make_bot

CODE = re.compile(r"`([A-Z0-9]{4}-[A-Z0-9]{4})`")


@pytest.fixture(scope="module")
def lora_bytes() -> bytes:
    return save(to_kohya(make_lora(build_tiny_pipeline(), 1)))


async def ask(bot: Bot, text: str, *, platform: str = "telegram", user: str = "1001", private: bool = True, **fields) -> list[Reply]:  # type: ignore[no-untyped-def]
    request = Request(
        platform=platform,
        user_id=user,
        chat_id=f"{platform}-chat",
        user_name=f"{platform}-{user}",
        message_id=f"{platform}-{text[:20]}",
        text=text,
        private=private,
        **fields,
    )
    replies = await bot.service.handle(request)
    for n, reply in enumerate(replies):  # as an adapter reports what it sent
        await bot.service.sent(platform, f"{platform}-chat", f"{request.message_id}-reply-{n}", reply)
    return replies


async def one(bot: Bot, text: str, **kwargs) -> Reply:  # type: ignore[no-untyped-def]
    [reply] = await ask(bot, text, **kwargs)
    return reply


async def code_from(bot: Bot, **kwargs) -> str:  # type: ignore[no-untyped-def]
    reply = await one(bot, "/link", **kwargs)
    found = CODE.search(reply.text)
    assert found, reply.text
    return found.group(1)


def audit_actions(bot: Bot) -> list[str]:
    with sqlite3.connect(bot.core.ctx.settings.data_dir / "sdbot.db") as db:
        return [row[0] for row in db.execute("select action from audit_log order by id")]


@pytest.fixture
async def limited_bot(settings):  # type: ignore[no-untyped-def]
    """A bot whose default role has one GPU-second a day and three jobs a minute."""
    made = await make_bot(
        settings.model_copy(
            update={
                "role_limits": {"default": RoleLimits(gpu_seconds_per_day=1, jobs_per_minute=3)},
            }
        )
    )
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


# --- linking -------------------------------------------------------------------------------------


async def test_a_link_joins_two_platforms_and_a_lora_from_one_works_on_the_other(bot: Bot, lora_bytes: bytes) -> None:
    uploaded = await one(bot, "/lora upload", platform="telegram", attachments=(Attachment("fox.safetensors", lora_bytes),))
    assert "fox" in uploaded.text and uploaded.kind != "error"
    # Before linking, Discord's Ada is someone else: the LoRA is not hers
    refused = await one(bot, "/imagine a fox <lora:fox:0.8> --steps 2", platform="discord")
    assert "fox" in refused.text and "queued" not in refused.text

    code = await code_from(bot, platform="telegram")
    linked = await one(bot, f"/link {code}", platform="discord")
    assert linked.text.startswith("🔗 Linked") and "Telegram 1001" in linked.text and "Discord 1001" in linked.text
    queued = await one(bot, "/imagine a fox <lora:fox:0.8> --steps 2 --seed 3", platform="discord")
    assert queued.kind == "status" and "queued" in queued.text, queued.text
    [(_, result)] = await bot_finish(bot, "discord")
    assert "<lora:fox:0.8>" in result.reply.images[0].path.read_bytes().decode("latin-1")  # drawn with it (parameters)
    assert "Lora hashes" in result.reply.images[0].path.read_bytes().decode("latin-1")

    me = await one(bot, "/me", platform="discord")
    assert "You: telegram-1001 (Telegram 1001)" in me.text and "Linked with: discord-1001 (Discord 1001)" in me.text
    history = await one(bot, "/history", platform="telegram")  # the Discord job is in the shared history
    assert "a fox" in history.text
    assert audit_actions(bot) == ["link"]


async def bot_finish(bot: Bot, platform: str):  # type: ignore[no-untyped-def]
    while await bot.worker.run_once():
        pass
    items = await bot.service.pending(platform)
    for n, item in enumerate(items):
        await bot.service.delivered(platform, item, f"{platform}-out-{n}")
    return [(f"{platform}-out-{n}", item) for n, item in enumerate(items)]


async def test_codes_are_private_single_use_expire_and_resist_guessing(bot: Bot) -> None:
    in_group = await one(bot, "/link", platform="telegram", private=False)
    assert in_group.kind == "error" and "private chat" in in_group.text

    code = await code_from(bot, platform="telegram")
    own = await one(bot, f"/link {code}", platform="telegram")
    assert "this account's own" in own.text
    assert (await one(bot, f"/link {code.lower().replace('-', '')}", platform="discord")).text.startswith("🔗")
    reused = await one(bot, f"/link {code}", platform="discord", user="2002")
    assert "used already" in reused.text

    stale = await code_from(bot, platform="telegram", user="3003")
    with sqlite3.connect(bot.core.ctx.settings.data_dir / "sdbot.db") as db:
        db.execute(
            "update link_codes set expires_at = ? where used_at is null",
            ((utcnow() - timedelta(seconds=1)).replace(tzinfo=None).isoformat(" "),),
        )
    expired = await one(bot, f"/link {stale}", platform="discord", user="3003")
    assert "expired" in expired.text

    not_a_code = await one(bot, "/link hello", platform="discord", user="4004")
    assert "looks like `ABCD-EFGH`" in not_a_code.text  # a typo is not counted as a guess

    limit = bot.core.ctx.settings.link_failures_per_hour  # 5
    for n in range(limit - 1):  # four wrong codes, and one more below
        wrong = await one(bot, f"/link ZZZZ-ZZZ{'ABCDE'[n]}", platform="discord", user="4004")
        assert "don't know that link code" in wrong.text
    fresh = await code_from(bot, platform="telegram", user="5005")
    last_wrong = await one(bot, "/link YYYY-YYYY", platform="discord", user="4004")
    assert "don't know" in last_wrong.text
    blocked = await one(bot, f"/link {fresh}", platform="discord", user="4004")  # even a right code waits now
    assert blocked.kind == "error" and re.search(r"5 wrong link codes in an hour\. Try again in (1 h|59 min)", blocked.text)
    actions = audit_actions(bot)
    assert actions.count("refused:link_failed") == 2 + limit and actions[-1] == "refused:link_guessing"


async def test_a_join_merges_settings_styles_and_says_the_conflicts(bot: Bot) -> None:
    await one(bot, "/settings --steps 30 --cfg 5", platform="telegram")
    await one(bot, "/style save noir {prompt}, film noir", platform="telegram")
    await one(bot, "/settings --steps 20 --sampler euler_a", platform="discord")
    await one(bot, "/style save noir {prompt}, black and white", platform="discord")
    await one(bot, "/style save neon {prompt}, neon lights", platform="discord")

    code = await code_from(bot, platform="telegram")
    linked = await one(bot, f"/link {code}", platform="discord")
    assert "Settings both accounts had (steps): the values of your Telegram account were kept." in linked.text
    assert "Both accounts had a style named `noir`: the one from Discord is now `noir-2`." in linked.text
    settings = await one(bot, "/settings", platform="discord")
    assert "steps: 30" in settings.text and "sampler: Euler a" in settings.text and "CFG scale: 5" in settings.text
    styles = await one(bot, "/styles", platform="discord")
    assert all(name in styles.text for name in ("noir", "noir-2", "neon"))

    again = await code_from(bot, platform="console", user="ada")
    already = await one(bot, f"/link {again}", platform="discord")
    assert "already linked to another account" in already.text

    left = await one(bot, "/unlink", platform="discord")
    assert "Unlinked discord-1001 (Discord 1001)" in left.text
    assert "steps: 20" not in (await one(bot, "/settings", platform="discord")).text  # it starts afresh
    assert "noir-2" in (await one(bot, "/styles", platform="telegram")).text  # what was joined stays
    assert "isn't linked" in (await one(bot, "/unlink", platform="discord")).text
    assert "takes nothing" in (await one(bot, "/unlink now", platform="discord")).text


# --- roles -----------------------------------------------------------------------------------------


async def test_roles_from_config_chat_and_platform_and_bans(settings) -> None:  # type: ignore[no-untyped-def]
    bot = await make_bot(
        settings.model_copy(
            update={
                "admin_ids": ["telegram:1"],
                "trusted_ids": ["telegram:2"],
                "banned_ids": ["discord:66"],
                "role_map": {"discord:510": "trusted"},
            }
        )
    )
    try:
        assert "Role: admin" in (await one(bot, "/me", user="1")).text
        assert "Role: trusted" in (await one(bot, "/me", user="2")).text
        assert "Role: default" in (await one(bot, "/me", user="3")).text
        assert "Role: trusted" in (await one(bot, "/me", platform="discord", user="4", platform_roles=("510",))).text
        assert "Role: default" in (await one(bot, "/me", platform="discord", user="4", platform_roles=("511",))).text
        banned = await one(bot, "/imagine a fox", platform="discord", user="66")
        assert banned.kind == "error" and "barred" in banned.text

        # /admin role: set, show, clear; never over the config's lists
        denied = await one(bot, "/admin role telegram:3 trusted", user="3")
        assert "for the bot's admins" in denied.text
        made = await one(bot, "/admin role telegram:3 trusted", user="1")
        assert made.text.endswith("default → trusted.")
        assert "Role: trusted" in (await one(bot, "/me", user="3")).text
        assert "trusted (set in chat)" in (await one(bot, "/admin role 3", user="1")).text
        await one(bot, "/admin role <@77> banned", user="1")  # a Discord mention; someone not seen yet
        assert "barred" in (await one(bot, "/me", platform="discord", user="77")).text
        await one(bot, "/admin role discord:77 clear", user="1")
        assert "Role: default" in (await one(bot, "/me", platform="discord", user="77")).text
        for bad, says in [
            ("/admin role", "Whose role?"),
            ("/admin role telegram:3 king", "`king` is not a role"),
            ("/admin role myspace:3 trusted", "`myspace` is not a platform"),
            ("/admin role a/b trusted", "is not a user id"),
            ("/admin role discord:66 default", "banned by the config"),
            ("/admin role telegram:1 default", "admin by the config"),
            ("/admin audit 99", "Show 1 to 50"),
            ("/admin audit 5 what?", "I don't understand `what?`"),
            ("/admin fly", "I don't know `/admin fly`"),
        ]:
            reply = await one(bot, bad, user="1")
            assert reply.kind == "error" and says in reply.text, (bad, reply.text)

        # a chat-made admin is an admin everywhere the account is, and can't lock themself out
        await one(bot, "/admin role telegram:3 admin", user="1")
        assert "Workers:" in (await one(bot, "/admin status", user="3")).text
        assert "lock yourself out" in (await one(bot, "/admin role telegram:3 default", user="3")).text

        log = await one(bot, "/admin audit 10", user="1")
        assert "refused:banned" in log.text and "telegram:3 default → trusted" in log.text
        only_roles = await one(bot, "/admin audit role", user="1")
        assert "refused" not in only_roles.text and only_roles.text.count("· role ·") == 4
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()


# --- quotas ------------------------------------------------------------------------------------------


async def test_jobs_per_minute_refuse_with_the_wait(limited_bot: Bot) -> None:
    for n in range(3):
        assert (await one(limited_bot, f"/imagine fox {n} --steps 1")).kind == "status"
        await one(limited_bot, "/cancel")  # not waiting: only the per-minute count is full
    refused = await one(limited_bot, "/imagine fox 4 --steps 1")
    assert refused.kind == "error" and re.search(r"more than 3 jobs in a minute\. Try again in (\d+ s|1 min)\.", refused.text)
    assert "Jobs queued in the last minute: 3 of 3 — more in" in (await one(limited_bot, "/me")).text
    # another role, other limits: an admin is not counted
    assert audit_actions(limited_bot) == ["refused:jobs_per_minute"]


async def test_a_day_of_gpu_seconds_refuses_with_the_refill_time_and_a_failure_is_refunded(limited_bot: Bot) -> None:
    bot = limited_bot
    assert (await one(bot, "/imagine a fox --steps 1 --seed 1")).kind == "status"
    await finish_as(bot, run_seconds=0.7, fail=True)  # it failed: not charged
    me = await one(bot, "/me")
    assert "Drawing time, last 24 h: 0 s of 1 s (failed jobs ran 0.7 s more, not charged)" in me.text

    assert (await one(bot, "/imagine a fox --steps 1 --seed 2")).kind == "status"
    await finish_as(bot, run_seconds=1.5)
    refused = await one(bot, "/imagine a fox --steps 1 --seed 3")
    refill = (utcnow() + timedelta(days=1)).strftime("%H:%M")  # when the 1.5 s charged just now leave the window
    assert refused.kind == "error" and "You have used your 1 s of drawing time for the last 24 hours (1.5 s;" in refused.text
    assert re.search(rf"It refills at {refill} UTC( tomorrow)? \(in (23 h 59 min|24 h)\)", refused.text), refused.text
    assert "used up; it refills at" in (await one(bot, "/me")).text
    assert audit_actions(bot) == ["refused:gpu_seconds"]


async def finish_as(bot: Bot, *, run_seconds: float, fail: bool = False) -> None:
    """End the one queued job as a worker would, with a measured time the test chooses."""
    async with bot.core.db.transaction() as session:
        [job] = await queue.claim(session, "test-worker", 60)
        if fail:
            await queue.fail(session, job, job.attempt, "test-worker", "it broke", run_seconds)
        else:
            await queue.complete(session, job, job.attempt, "test-worker", [], run_seconds)


async def test_the_worker_charges_what_it_measured_and_a_batch_splits_its_time(bot: Bot) -> None:
    await ask(bot, "/imagine a fox --steps 1 --seed 1")
    await bot_finish(bot, "telegram")
    async with bot.core.db.transaction() as session:
        ada = await users.find(session, "telegram", "1001")
        [job] = await queue.user_jobs(session, ada.id, 5)
        assert job.status == JobStatus.SUCCEEDED and job.gpu_seconds == pytest.approx(job.run_seconds) and job.gpu_seconds > 0
    # a batch of two jobs, one of 1 image and one of 3: a quarter and three quarters of the call
    for n in (1, 3):
        await ask(bot, f"/imagine a fox --steps 1 --n {n}", user=str(n + 10))
    async with bot.core.db.transaction() as session:
        [leader] = await queue.claim(session, "test-worker", 60)
        jobs = [leader, *await queue.claim_compatible(session, leader, "test-worker", 60, max_jobs=1, max_images=4)]
        assert len(jobs) == 2
        await queue.complete_batch(session, [(job, job.attempt) for job in jobs], "test-worker", {}, 8.0)
    async with bot.core.db.transaction() as session:
        charged = sorted([(await session.get(Job, job.id, populate_existing=True)).gpu_seconds for job in jobs])
    assert charged == [2.0, 6.0]


async def test_a_job_a_dead_worker_left_until_its_attempts_ran_out_is_not_charged(limited_bot: Bot) -> None:
    bot = limited_bot
    await one(bot, "/imagine a fox --steps 1")
    async with bot.core.db.transaction() as session:
        [job] = await queue.claim(session, "dead-worker", 60)
        job.max_attempts = 1
    async with bot.core.db.transaction() as session:
        [reaped] = await queue.reap_expired(session, utcnow() + timedelta(minutes=5))
        assert reaped.status == JobStatus.FAILED
        ada = await users.find(session, "telegram", "1001")
        use = await usage.gpu_use(session, ada.id)
    assert use.used == 0 and use.charges == []
    assert (await one(bot, "/imagine a fox --steps 1")).kind == "status"  # the quota still has room


async def test_each_role_has_its_own_limits(settings) -> None:  # type: ignore[no-untyped-def]
    bot = await make_bot(
        settings.model_copy(
            update={
                "admin_ids": ["telegram:1"],
                "trusted_ids": ["telegram:2"],
                "banned_ids": ["telegram:4"],
                "role_limits": {"default": RoleLimits(jobs_per_minute=1), "trusted": RoleLimits(jobs_per_minute=2)},
            }
        )
    )
    try:

        async def queued(user: str) -> int:
            count = 0
            for n in range(4):
                reply = await one(bot, f"/imagine fox {n} --steps 1", user=user)
                count += reply.kind == "status"
            return count

        assert await queued("3") == 1  # default
        assert await queued("2") == 2  # trusted
        assert await queued("1") == 4  # admin: no limit
        assert await queued("4") == 0  # banned
        assert "Jobs queued in the last minute: 2 of 2" in (await one(bot, "/me", user="2")).text
        assert "Jobs queued in the last minute: 4 (no limit)" in (await one(bot, "/me", user="1")).text
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()
