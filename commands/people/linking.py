"""/link and /unlink: one account across Discord, Telegram and the console.

    /link          (in a private chat, or a Discord slash command) a one-time code
    /link CODE     (on the other platform) joins this identity's account into the code's
    /unlink        this identity leaves its account (on the account's first identity: the others leave)

A code is single-use, lives SDBOT_LINK_CODE_MINUTES, and is never shown where others can read
it: whoever types it joins the account of the person who asked for it. Wrong codes are counted
(the audit log's `refused:link_failed`); after SDBOT_LINK_FAILURES_PER_HOUR in an hour the
person waits before trying again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.errors import Refused, UserError
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker, clock_text, seconds_text
from storage import accounts, audit, users
from storage.accounts import platform_name
from storage.tables import LinkCode, User, utcnow

FAILED = "refused:link_failed"


def identity_text(row: User) -> str:
    """`ada (Telegram 1001)`; where the name is the id (the console's people), `ada (the console)`."""
    if row.display_name == row.platform_user_id:
        return f"{row.display_name} ({platform_name(row.platform)})"
    name = f"{row.display_name} " if row.display_name else ""
    return f"{name}({platform_name(row.platform)} {row.platform_user_id})"


async def link_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    code = args.strip()
    if not code:
        return await _give_code(ctx, request)
    if not accounts.looks_like_code(code):
        raise UserError(
            f"A link code looks like `ABCD-EFGH` (8 letters and digits); `{code[:40]}` isn't one. Send `/link` alone to get a code."
        )
    return await _redeem(ctx, request, code)


async def _give_code(ctx: Context, request: Request) -> list[Reply]:
    if not request.private:
        raise UserError(
            "Link codes are private: send `/link` to me in a private chat (on Discord, use the `/link` "
            "slash command, whose answer only you see)."
        )
    minutes = ctx.settings.link_code_minutes
    async with ctx.db.transaction() as session:
        account = await asker(session, request)
        code, expires = await accounts.new_code(session, account.id, request.platform, minutes)
    return [
        Reply(
            f"Your link code: `{code}` (good once, for {minutes} min, until {clock_text(expires)}).\n"
            f"On your other platform, send me `/link {code}`: the two become one account, with your settings, "
            "history, LoRAs, embeddings, styles and quotas together. Don't share the code: whoever types it joins your account.",
            ephemeral=True,
        )
    ]


async def _redeem(ctx: Context, request: Request, code: str) -> list[Reply]:
    outcome = await ctx.db.retrying_deadlocks(lambda session: _try_code(ctx, session, request, code))
    if isinstance(outcome, Refused):
        raise outcome  # after the commit that kept it: the person reads it, the service does not record it again
    ctx.roles_changed()  # the identities now share a role
    return [outcome]


async def _try_code(ctx: Context, session: AsyncSession, request: Request, code: str) -> Reply | Refused:
    """Count the identity's wrong codes, check this one, join. The identity's row is locked before
    the count, and a wrong code is recorded in this transaction (returned, not raised: raising
    rolls back), so parallel guesses are counted one after another and cannot outrun the limit."""
    s = ctx.settings
    me = await users.identity(session, request.platform, request.user_id, request.user_name)
    await users.lock(session, me.id)
    since = utcnow() - timedelta(hours=1)
    failures, first = await audit.count_since(session, request.platform, request.user_id, FAILED, since)
    if failures >= s.link_failures_per_hour:
        wait = (first or utcnow()) + timedelta(hours=1) - utcnow()
        raise Refused(
            "link_guessing",
            f"That is {failures} wrong link codes in an hour. Try again in {seconds_text(wait)}, "
            "with a fresh code (`/link` on your other platform).",
        )
    found = await accounts.redeem(session, code)
    if isinstance(found, str):
        wrong = Refused(
            "link_failed",
            {
                "unknown": "I don't know that link code. Check it, or ask for a fresh one with `/link` on your other platform.",
                "used": "That link code was used already: each works once. Ask for a fresh one with `/link`.",
                "expired": f"That link code has expired (they last {s.link_code_minutes} min). Ask for a fresh one with `/link`.",
            }[found],
            recorded=True,
        )
        mine = await users.account_of(session, me)
        await audit.record(
            session, actor_id=mine.id, platform=request.platform, platform_user_id=request.user_id, action=FAILED, detail=wrong.message
        )
        return wrong
    mine, into = await _lock_accounts(session, me, found.account_id)
    if into is None:
        raise UserError("The account that code was made for is gone. Ask for a fresh code with `/link`.")
    return await _join(session, request, me, mine, into, found)


async def _lock_accounts(session: AsyncSession, me: User, holder_id: int) -> tuple[User, User | None]:
    """This identity's account and the account of the code's identity, locked and read again: a
    join of either has committed before (and is seen here) or waits for this one. So two
    people typing each other's codes at once cannot join their accounts into each other (a
    cycle), nor can one join into an account that is joining a third meanwhile (a chain). Two
    links typed crosswise lock the same two rows in opposite orders (each holds its own identity
    from the count); PostgreSQL rolls one back to break that deadlock, and `retrying_deadlocks`
    runs it again, when it sees the other's join."""
    locked = await users.lock(session, me.id, holder_id)  # in id order
    holder = locked.get(holder_id)
    if holder is None:
        return me, None
    into = holder
    if holder.account_id is not None:  # linked into another account since the code was made: join that one
        into = (await users.lock(session, holder.account_id)).get(holder.account_id)
    return await users.account_of(session, me), into


async def _join(session: AsyncSession, request: Request, me: User, mine: User, into: User, code: LinkCode) -> Reply:
    if into.id == mine.id:
        raise UserError("That code is this account's own, so there is nothing to join. Type it on your other platform.")
    if me.account_id is not None:
        raise UserError(
            f"This {platform_name(request.platform)} identity is already linked to another account. "
            "Send `/unlink` here first, then the code."
        )
    notes = await accounts.join(session, into, mine)
    everyone = await users.identities(session, into.id)
    await audit.record(
        session,
        actor_id=into.id,
        platform=request.platform,
        platform_user_id=request.user_id,
        action="link",
        detail="joined " + ", ".join(identity_text(row) for row in everyone),
    )
    lines = [
        "🔗 Linked: " + " and ".join(identity_text(row) for row in everyone) + " are one account now.",
        "Your settings, history, LoRAs, embeddings, styles and quotas are shared; `/me` shows them. `/unlink` undoes it.",
    ]
    return Reply("\n".join(lines + notes), ephemeral=True)


async def unlink_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    if args.strip():
        raise UserError(
            "`/unlink` takes nothing: it takes this identity out of its account (on the account's first identity, it takes the others out)."
        )
    async with ctx.db.transaction() as session:
        me = await users.identity(session, request.platform, request.user_id, request.user_name)
        account_id = me.account_id or me.id
        account = await session.get(User, account_id)
        left = await accounts.detach(session, me)
        if not left:
            raise UserError("This account isn't linked to any other. `/link` starts a link.")
        await audit.record(
            session,
            actor_id=account_id,
            platform=request.platform,
            platform_user_id=request.user_id,
            action="unlink",
            detail="left: " + ", ".join(identity_text(row) for row in left),
        )
    ctx.roles_changed()
    kept = identity_text(account) if account is not None else "the account"
    return [
        Reply(
            "Unlinked " + ", ".join(identity_text(row) for row in left) + f". What was joined (history, LoRAs, styles) stays "
            f"with {kept}; the identities that left start afresh.",
            ephemeral=True,
        )
    ]
