"""Who is asking, and what they may still do: the role of a request's account and the quota
checks made before a job is queued.

`CommandService` resolves the role once per request (`resolve`), before any handler runs;
handlers read `request.role` (through `Context.is_admin` and `Context.limits`).
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.errors import Refused, UserError
from commands.frame.types import Request
from config.roles import Role, stronger
from generation.spec import GenerationSpec
from storage import places, queue, usage, users
from storage.tables import User, utcnow

MINUTE = timedelta(minutes=1)


async def role_of(ctx: Context, session: AsyncSession, request: Request, account: User) -> Role:
    """The account's role (the order is config.roles'): any identity of the account listed as
    admin or banned in the config, else the role set in chat, else trusted by the config, else
    what the platform roles of this request map to, else default."""
    s = ctx.settings
    configured = await configured_roles(ctx, session, account)
    if "admin" in configured:
        return "admin"
    if "banned" in configured:
        return "banned"
    if account.role:
        return account.role  # type: ignore[return-value]
    if "trusted" in configured:
        return "trusted"
    mapped = [s.role_map[key] for key in (f"{request.platform}:{r}" for r in request.platform_roles) if key in s.role_map]
    if "banned" in mapped:
        return "banned"
    role: Role = "default"
    for one in mapped:
        role = stronger(role, one)
    return role


async def configured_roles(ctx: Context, session: AsyncSession, account: User) -> set[Role | None]:
    """What the config's id lists say of each identity of the account (None: nothing)."""
    return {ctx.settings.configured_role(row.platform, row.platform_user_id) for row in await users.identities(session, account.id)}


async def resolve(ctx: Context, request: Request) -> Request:
    """The request with its account (row id) and the account's role filled in, once, before any
    handler runs: handlers read the row with `asker`, not by the platform user again."""
    key, now = (request.platform, request.user_id, request.platform_roles), time.monotonic()
    cached = ctx.roles.get(key, now)
    if cached is None:
        async with ctx.db.transaction() as session:
            account_row = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
            cached = (await role_of(ctx, session, request, account_row), account_row.id)
        ctx.roles.put(key, *cached, now + ctx.settings.role_cache_seconds)
    role, account_id = cached
    return dataclasses.replace(request, role=role, account_id=account_id)


async def asker(session: AsyncSession, request: Request) -> User:
    """The account of the person asking, as a row of `session`: by the id `resolve` put on the
    request (a primary-key read, usually from the session's identity map), following a link
    made since in another process (the id is cached up to SDBOT_ROLE_CACHE_SECONDS). A request
    that did not come through CommandService (a tool, a test) is resolved here."""
    if request.account_id is not None:
        row = await session.get(User, request.account_id)
        if row is not None:
            return await users.account_of(session, row)
    return await users.get_or_create(session, request.platform, request.user_id, request.user_name)


async def check_room(ctx: Context, session: AsyncSession, request: Request, account: User, count: int = 1) -> None:
    """Refuse a new job (`count` new jobs: a request's permutations and repeats, all or none)
    when the account's role allows no more now: jobs waiting or running, jobs queued in the last
    minute, GPU-seconds charged in the last 24 hours. Each refusal says when the person may try
    again.

    The account's row stays locked from here to the end of the caller's transaction, which
    inserts the job: requests racing for the last place (from two linked identities too, whose
    own rows differ) are counted one after another, each seeing the jobs the others added."""
    await users.lock(session, account.id)
    limits = ctx.limits(request)
    role = request.role or "default"
    if limits.queued_jobs is not None:
        active = await queue.active_count(session, account.id)
        if count > 1 and limits.queued_jobs > 0 and active + count > limits.queued_jobs:
            raise Refused(
                "queued_jobs",
                f"That request queues {count} jobs and you have {active} waiting or running; the limit is "
                f"{limits.queued_jobs} at once, so none of them was queued. "
                + ("Ask for fewer." if count > limits.queued_jobs else "Wait for some to finish, or ask for fewer."),
            )
        if active >= limits.queued_jobs:
            raise Refused(
                "queued_jobs",
                f"You already have {active} jobs waiting or running (the limit is {limits.queued_jobs}). "
                "Wait for one to finish, or stop one with `/cancel`.",
            )
    now = utcnow()
    if limits.jobs_per_minute is not None:
        recent = await usage.jobs_since(session, account.id, now - MINUTE)
        if count > 1 and limits.jobs_per_minute > 0 and len(recent) + count > limits.jobs_per_minute:
            if count > limits.jobs_per_minute:
                raise Refused(
                    "jobs_per_minute", f"That request queues {count} jobs; the limit is {limits.jobs_per_minute} a minute. Ask for fewer."
                )
            wait = minute_frees_at(recent, limits.jobs_per_minute - count + 1) - now
            raise Refused(
                "jobs_per_minute",
                f"That request queues {count} jobs, more than the {limits.jobs_per_minute} a minute allows after your last ones. "
                f"Try again in {seconds_text(wait)}.",
            )
        if len(recent) >= limits.jobs_per_minute:
            if limits.jobs_per_minute == 0:
                raise Refused("jobs_per_minute", f"People with the {role} role can't queue jobs here. An admin can change your role.")
            wait = minute_frees_at(recent, limits.jobs_per_minute) - now
            raise Refused(
                "jobs_per_minute",
                f"That is more than {limits.jobs_per_minute} jobs in a minute. Try again in {seconds_text(wait)}.",
            )
    if limits.gpu_seconds_per_day is not None:
        use = await usage.gpu_use(session, account.id, now)
        quota = limits.gpu_seconds_per_day
        if use.used >= quota:
            if quota == 0:
                raise Refused("gpu_seconds", f"People with the {role} role have no drawing time here. An admin can change your role.")
            back = use.back_at(quota) or now
            raise Refused(
                "gpu_seconds",
                f"You have used your {amount_text(quota)} of drawing time for the last 24 hours "
                f"({amount_text(use.used)}; failed jobs are not counted). It refills at {clock_text(back, now)} "
                f"(in {seconds_text(back - now)}); `/me` shows your quotas.",
            )


def minute_frees_at(recent: list[datetime], limit: int) -> datetime:
    """When fewer than `limit` of these queue times (oldest first) are in the last minute."""
    return recent[-limit] + MINUTE


def seconds_text(span: timedelta) -> str:
    """`45 s`, `3 min 20 s`, `2 h 5 min`: a wait as people read it (rounded up)."""
    seconds = max(1, int(-(-span.total_seconds() // 1)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")
    return f"{seconds // 3600} h" + (f" {seconds % 3600 // 60} min" if seconds % 3600 // 60 else "")


def amount_text(seconds: float) -> str:
    """An amount of drawing time (a quota, what was used), rounded honestly rather than up like
    a wait: `0.001 s`, `12.3 s`, `3 min 20 s`."""
    if seconds < 0.1:
        return f"{seconds:.2g} s"  # 0.001 s, and 0 s
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    return seconds_text(timedelta(seconds=round(seconds)))


def clock_text(when: datetime, now: datetime | None = None) -> str:
    """`04:44 UTC` today, `04:44 UTC tomorrow`, `04:44 UTC on 9 Dec` later: a time people can
    act on without working out which day it means."""
    today = (now or utcnow()).date()
    day = when.date()
    if day == today:
        return f"{when:%H:%M} UTC"
    if day == today + timedelta(days=1):
        return f"{when:%H:%M} UTC tomorrow"
    return f"{when:%H:%M} UTC on {day.day} {when:%b}"


async def check_job(ctx: Context, session: AsyncSession, request: Request, spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
    """What this chat's settings ask of a job queued here: an allowed model, no refused term in
    the prompt; the chat's negative prompt when the job has none."""
    stored = await places.settings_of(session, request.platform, request.chat_id)
    allowed = stored.get("models") or []
    if allowed and spec.model.lower() not in {name.lower() for name in allowed}:
        raise UserError(f"This chat allows only these models: {', '.join(allowed)}. Add `--model {allowed[0]}`, or draw elsewhere.")
    for term in stored.get("terms") or []:
        if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", spec.prompt.lower()):
            raise Refused(
                "prompt_term", f"This chat doesn't allow `{term}` in prompts (its admins set that). Leave it out, or ask somewhere else."
            )
    negative = stored.get("negative")
    if negative and not spec.negative_prompt.strip():
        notes.append(f"Negative prompt from this chat's settings: {negative}")
        spec = spec.evolve(negative_prompt=negative)
    return spec
