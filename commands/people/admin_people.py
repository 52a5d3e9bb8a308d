"""/admin role, /admin audit and /admin review: people's roles, what happened, and what the
safety policy withheld (admins only; commands.people.admin dispatches here).

    /admin role WHO                 their role, and where it comes from
    /admin role WHO trusted         set it: admin, trusted, default, banned; `clear` goes back to the config's
    /admin audit [N] [ACTION]       the last N entries (default 20, at most 50), e.g. `refused`, `role`, `link`
    /admin review [JOB]             pictures a place's safety policy blurred or blocked; with JOB, its
                                    originals (in a private chat, or as a Discord answer only you see)

WHO is `discord:123`, `telegram:456`, a Discord mention (`<@123>`), or a bare id on this platform.
"""

from __future__ import annotations

import re

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.numbers import job_number, quoted, read_int
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker, configured_roles, role_of
from commands.jobs.job_view import image_files
from commands.people.linking import identity_text
from config.roles import ROLES
from storage import audit, places, queue, users
from storage.accounts import platform_name
from storage.tables import User

AUDIT_DEFAULT, AUDIT_MAX = 20, 50
PLATFORMS = ("discord", "telegram", "console")
MENTION = re.compile(r"^<@!?(\d+)>$")
ROLE_USAGE = "`/admin role WHO [admin|trusted|default|banned|clear]` (WHO: `telegram:123`, `discord:456`, a mention, or an id here)"
AUDIT_USAGE = f"`/admin audit [N] [ACTION]`: the last N entries (1 to {AUDIT_MAX}), e.g. `/admin audit 10 refused`"


def parse_who(text: str, here: str) -> tuple[str, str]:
    """`telegram:123`, `<@123>` (Discord), or a bare id on the asker's platform → (platform, id)."""
    mention = MENTION.match(text)
    if mention:
        return "discord", mention.group(1)
    platform, colon, user_id = text.partition(":")
    if colon:
        if platform.lower() not in PLATFORMS:
            raise UserError(f"`{platform}` is not a platform I know ({', '.join(PLATFORMS)}). {ROLE_USAGE}.")
        platform, text = platform.lower(), user_id
    else:
        platform = here
    if not re.fullmatch(r"[\w.-]{1,128}", text):
        raise UserError(f"`{text[:40]}` is not a user id. {ROLE_USAGE}.")
    return platform, text


async def role_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    words = args.split()
    if not words or len(words) > 2:
        raise UserError(f"Whose role? {ROLE_USAGE}.")
    platform, user_id = parse_who(words[0], request.platform)
    wanted = words[1].lower() if len(words) == 2 else None
    if wanted is not None and wanted != "clear" and wanted not in ROLES:
        raise UserError(f"`{words[1]}` is not a role. Roles: {', '.join(ROLES)}, or `clear`. {ROLE_USAGE}.")
    async with ctx.db.transaction() as session:
        who = await users.identity(session, platform, user_id)  # made now if never seen: a ban can come first
        account = await users.account_of(session, who)
        target = Request(platform=platform, user_id=user_id, chat_id="")
        before = await role_of(ctx, session, target, account)
        if wanted is None:
            return [Reply(await _describe(ctx, session, who, account, before), ephemeral=True)]
        configured = await configured_roles(ctx, session, account)
        if configured & {"admin", "banned"}:
            fixed = "admin" if "admin" in configured else "banned"
            raise UserError(
                f"{identity_text(who)} is {fixed} by the config (SDBOT_{fixed.upper()}_IDS), which a role set "
                "in chat can't change. Change the config and restart."
            )
        asker_row = await asker(session, request)
        if account.id == asker_row.id and wanted != "admin":
            raise UserError("You can't take your own admin role away in chat (you'd lock yourself out). Ask another admin.")
        account.role = None if wanted == "clear" else wanted
        ctx.roles_changed()
        after = await role_of(ctx, session, target, account)
        await audit.record(
            session,
            actor_id=asker_row.id,
            platform=request.platform,
            platform_user_id=request.user_id,
            action="role",
            detail=f"{platform}:{user_id} {before} → {after}" + (" (cleared)" if wanted == "clear" else ""),
        )
    return [
        Reply(
            f"{identity_text(who)}: {before} → {after}."
            + (" (Set in chat: the config's lists and the platform's roles apply again.)" if wanted == "clear" else ""),
            ephemeral=True,
        )
    ]


async def _describe(ctx: Context, session, who: User, account: User, role: str) -> str:  # type: ignore[no-untyped-def]
    everyone = await users.identities(session, account.id)
    source = "set in chat" if account.role else "from the config (or the default)"
    lines = [f"{identity_text(who)}: {role} ({source})"]
    if len(everyone) > 1:
        lines.append("Account: " + ", ".join(identity_text(row) for row in everyone))
    return "\n".join(lines)


async def audit_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    words = args.split()
    limit, prefix = AUDIT_DEFAULT, None
    for word in words:
        if (number := read_int(word)) is not None:
            if not 1 <= number <= AUDIT_MAX:
                raise UserError(f"Show 1 to {AUDIT_MAX} entries. {AUDIT_USAGE}.")
            limit = number
        elif prefix is None and re.fullmatch(r"[a-z_:]{1,32}", word.lower()):
            prefix = word.lower()
        else:
            raise UserError(f"I don't understand `{word[:40]}`. {AUDIT_USAGE}.")
    async with ctx.db.transaction() as session:
        entries = await audit.latest(session, limit, prefix)
    if not entries:
        return [Reply("Nothing in the audit log" + (f" starting with `{prefix}`." if prefix else " yet."), ephemeral=True)]
    lines = [f"Audit log, newest first ({len(entries)}):"]
    for entry in entries:
        detail = entry.detail.replace("\n", " ")
        lines.append(
            f"• {entry.at:%Y-%m-%d %H:%M} UTC · {platform_name(entry.platform)} {entry.platform_user_id} · {entry.action} · {detail[:160]}"
        )
    return [Reply("\n".join(lines), ephemeral=True)]


REVIEW_MAX = 20
REVIEW_USAGE = "`/admin review` lists what the safety policy blurred or blocked; `/admin review JOB` shows that job's originals"


async def review_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    arg = args.strip()
    job_id = job_number(arg) if arg else None
    if arg and job_id is None:
        raise UserError(f"I don't understand `{quoted(arg)}`. {REVIEW_USAGE}.")
    async with ctx.db.transaction() as session:
        if not arg:
            rows = await places.withheld_outputs(session, REVIEW_MAX)
            if not rows:
                return [Reply("No picture has been blurred or blocked by a safety policy.", ephemeral=True)]
            lines = ["Blurred or blocked by a place's safety policy, newest first:"]
            lines += [
                f"• job {job.id} picture {out.index + 1} · {out.safety_action} · score {out.safety_score:.2f} · "
                f"{platform_name(job.platform)} chat {job.chat_id} · {job.created_at:%Y-%m-%d %H:%M} UTC"
                for out, job in rows
            ]
            lines.append("`/admin review JOB` shows a job's originals.")
            return [Reply("\n".join(lines), ephemeral=True)]
        job = await queue.get(session, job_id)
    if job is None or not job.outputs:
        raise UserError(f"Job {job_id} has no pictures to review.")
    if not request.private:
        raise UserError(
            "Originals are shown only where no one else reads them: ask in a private chat with me "
            "(on Discord, the /admin slash command answers only you)."
        )
    scores = (
        ", ".join(
            f"{out.index + 1}: {out.safety_score:.2f} ({out.safety_action or 'not sent'})"
            for out in job.outputs
            if out.safety_score is not None
        )
        or "not scored"
    )
    return [
        Reply(
            f"Job {job.id}'s originals, for review. Scores: {scores}.",
            kind="files",
            images=image_files(ctx, job),
            job_id=job.id,
            ephemeral=True,
        )
    ]
