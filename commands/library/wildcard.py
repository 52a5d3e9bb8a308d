"""/wildcard: the lists `__name__` picks from in a prompt.

    /wildcard list                   the bot's lists (SDBOT_WILDCARDS_DIR) and yours
    /wildcard show NAME              the lines of one
    /wildcard add NAME line one | line two      (or one option per line, or a .txt attached)
    /wildcard delete NAME

A list of yours hides the bot's list of the same name, for you. `{a|b|c}` needs no list.
"""

from __future__ import annotations

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker
from commands.jobs.prompt_features import folder_list, folder_lists, wildcard_folder
from generation.prompts import wildcards
from storage import prompt_library

MAX_TEXT_FILE_BYTES = 256 * 1024  # an attached list; the line limit is a setting
USAGE = (
    "Use `/wildcard list`, `/wildcard show NAME`, `/wildcard add NAME red | green | blue` (or one option per line, "
    "or a .txt file attached), `/wildcard delete NAME`. In a prompt, `__NAME__` picks one line."
)


async def wildcard_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    verb, _, rest = args.strip().partition(" ")
    verb = verb.lower()
    if verb in ("", "list", "ls"):
        return await _list(ctx, request)
    if verb == "show":
        return await _show(ctx, request, rest.strip().lower())
    if verb in ("add", "save"):
        return await _add(ctx, request, rest)
    if verb in ("delete", "remove", "rm"):
        return await _delete(ctx, request, rest.strip().lower())
    raise UserError(USAGE)


async def _list(ctx: Context, request: Request) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        own = await prompt_library.wildcards_of(session, user.id)
    shared = folder_lists(ctx)
    lines = [
        "🎲 Wildcards: `{red|green|blue}` picks one option; `__NAME__` picks a line of a list. "
        "Each image of a batch picks from its own seed."
    ]
    lines.append("The bot's lists: " + (", ".join(f"`__{n}__` ({len(v)})" for n, v in shared.items()) if shared else "none."))
    if own:
        lines.append("Yours: " + ", ".join(f"`__{n}__` ({len(v)})" for n, v in own.items()))
    else:
        lines.append("Add your own: `/wildcard add NAME red | green | blue`.")
    return [Reply("\n".join(lines))]


async def _show(ctx: Context, request: Request, name: str) -> list[Reply]:
    if not name:
        raise UserError("Which list? `/wildcard show NAME`.")
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        own = await prompt_library.wildcards_of(session, user.id)
    lines = own.get(name) or folder_list(wildcard_folder(ctx), name)
    if lines is None:
        raise UserError(f"There is no wildcard list `{name}`. `/wildcard list` shows them.")
    return [Reply(f"`__{name}__` ({len(lines)} lines):\n" + "\n".join(f"• {line}" for line in lines))]


async def _add(ctx: Context, request: Request, args: str) -> list[Reply]:
    name, _, text = args.strip().partition(" ")
    if "\n" in name:
        name, _, more = name.partition("\n")
        text = f"{more} {text}"
    name = name.strip().lower()
    if not name or not wildcards.valid_name(name):
        raise UserError(
            "Give the list a name of letters, digits, `_` and `-` (and `/` for folders), up to 64 characters: "
            "`/wildcard add colors red | green | blue`."
        )
    attached = next((a for a in request.attachments if a.filename.lower().endswith(".txt")), None)
    if attached is not None:
        if len(attached.data) > MAX_TEXT_FILE_BYTES:
            raise UserError(f"That file is over {MAX_TEXT_FILE_BYTES // 1024} KiB; send a shorter list.")
        text = attached.data.decode("utf-8", errors="replace")
    elif "\n" not in text.strip():
        text = "\n".join(text.split("|"))  # one line (a Discord option): options separated by |
    try:
        lines = wildcards.clean_lines(text)
    except wildcards.WildcardError as error:
        raise UserError(f"The list `{name}` has a problem: {error}") from None
    limit = ctx.settings.max_wildcard_lines
    if not lines:
        raise UserError(f"The list `{name}` has no lines. {USAGE}")
    if len(lines) > limit:
        raise UserError(f"The list has {len(lines)} lines; the limit is {limit}.")
    too_long = [line for line in lines if len(line) > ctx.settings.max_prompt_chars]
    if too_long:
        raise UserError(f"A line is {len(too_long[0])} characters; the limit is {ctx.settings.max_prompt_chars}.")
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        own = await prompt_library.wildcards_of(session, user.id)
        if name not in own and len(own) >= ctx.settings.max_wildcards_per_user:
            raise UserError(f"You have {len(own)} lists, the most one person may keep. Delete one with `/wildcard delete NAME`.")
        replaced = await prompt_library.save_wildcard(session, user.id, name, lines)
    verb = "Replaced" if replaced else "Saved"
    preview = ", ".join(lines[:5]) + (", …" if len(lines) > 5 else "")
    return [Reply(f"{verb} `__{name}__` ({len(lines)} lines: {preview}). Write `__{name}__` in a prompt to pick one.")]


async def _delete(ctx: Context, request: Request, name: str) -> list[Reply]:
    if not name:
        raise UserError("Which list? `/wildcard delete NAME`.")
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        deleted = await prompt_library.delete_wildcard(session, user.id, name)
    if not deleted:
        raise UserError(f"You have no list named `{name}`. The bot's own lists can't be deleted here.")
    return [Reply(f"Deleted `__{name}__`.")]
