"""/place: a chat's own settings, set by its admins, and the checks they make on every job
queued there.

    /place                                   what this chat allows, and where each value comes from
    /place --nsfw spoiler --threshold 0.6    what happens to a picture the safety classifier scores at
                                             or over the threshold: allow | spoiler | blur | block
    /place --terms "gore, blood"             prompts with these words or phrases are refused here
    /place --models tiny,dreamshaper         only these models here
    /place --negative "lowres, watermark"    the negative prompt of jobs that set none
    /place reset [nsfw|threshold|terms|models|negative]

A chat's admins: the bot's admins; on Discord, people with Manage Server or Manage Channels; on
Telegram, a group's owner and admins. A private chat's settings are the bot admins' to set.
Unset values come from the config: age-restricted (NSFW) channels allow, every other place uses
SDBOT_SAFETY_POLICY (spoiler by default) at SDBOT_SAFETY_THRESHOLD.
"""

from __future__ import annotations

from typing import Any

from commands.frame.context import Context
from commands.frame.declare import Option, check, read_flags
from commands.frame.errors import UserError
from commands.frame.parser import Flags
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker
from commands.jobs.safety import policy_of
from storage import audit, places

ACTIONS = ("allow", "spoiler", "blur", "block")
FIELDS = ("nsfw", "threshold", "terms", "models", "negative")
NSFW = Option("nsfw", "choice", "What happens to pictures the safety classifier flags here", choices=ACTIONS)
THRESHOLD = Option(
    "threshold", "float", "The score from which a picture counts as flagged", bounds=(0, 1), default=lambda s: s.safety_threshold
)
OPTIONS: tuple[Option, ...] = (
    Option("reset", "text", "reset, or reset NAME: back to the config's values", positional=True, rest=True),
    NSFW,
    THRESHOLD,
    Option("terms", "text", 'Words or phrases refused in prompts here, e.g. "gore, blood"'),
    Option("models", "text", "Only these models here, e.g. tiny,dreamshaper"),
    Option("negative", "text", "The negative prompt of jobs here that set none"),
)
MAX_TERMS, MAX_TERM_CHARS, MAX_NEGATIVE = 100, 60, 500
USAGE = '`/place --nsfw allow|spoiler|blur|block --threshold 0.5 --terms "a, b" --models a,b --negative "..."`, or `/place reset [name]`'


async def place_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    words = args.split()
    flags = read_flags(request.options, args, OPTIONS)
    async with ctx.db.transaction() as session:
        stored = await places.settings_of(session, request.platform, request.chat_id)
        if not words and not flags.values:
            return [Reply(_describe(ctx, stored, request))]
        if not (ctx.is_admin(request) or request.place_admin):  # adapters never set place_admin in private chats
            raise UserError(
                "Only this chat's admins can change its settings (on Discord: Manage Server or Manage "
                "Channels; on Telegram: the group's admins; a private chat: the bot's admins)."
            )
        if words and words[0].lower() == "reset":
            names = [w.lower().lstrip("-") for w in words[1:]]
            unknown = [n for n in names if n not in FIELDS]
            if unknown:
                raise UserError(f"I can't reset `{unknown[0]}`. Settings: {', '.join(FIELDS)}.")
            changed = {k: v for k, v in stored.items() if names and k not in names}
        else:
            changed = {**stored, **_read(ctx, flags)}
        account = await asker(session, request)
        await places.save(session, request.platform, request.chat_id, changed, account.id)
        await audit.record(
            session,
            actor_id=account.id,
            platform=request.platform,
            platform_user_id=request.user_id,
            action="place",
            detail=f"{request.chat_id}: " + " ".join([args.strip(), *(f"{flags.written[k]} {v}" for k, v in flags.values.items())]).strip(),
        )
    return [Reply("Saved.\n" + _describe(ctx, changed, request))]


def _read(ctx: Context, flags: Flags) -> dict[str, Any]:
    problems = list(flags.problems)
    if flags.text:
        problems.insert(0, f"I don't understand `{flags.text[:40]}`. {USAGE}.")
    values: dict[str, Any] = {}
    for name, given in flags.values.items():
        raw = given.strip().strip('"').strip() if isinstance(given, str) else given
        if name in ("nsfw", "threshold"):
            values[name] = check(NSFW if name == "nsfw" else THRESHOLD, raw, ctx.settings, problems, flags.written.get(name))
        elif name == "terms":
            terms = [t.strip().lower() for t in raw.split(",") if t.strip()]
            if len(terms) > MAX_TERMS or any(len(t) > MAX_TERM_CHARS for t in terms):
                problems.append(
                    f"`--terms` takes up to {MAX_TERMS} words or phrases of up to {MAX_TERM_CHARS} characters, comma-separated."
                )
            values["terms"] = terms
        elif name == "models":
            names = [m.strip() for m in raw.split(",") if m.strip()]
            unknown = [m for m in names if ctx.registry.get(m) is None]
            if unknown:
                problems.append(f"There is no model named `{unknown[0]}`. `/models` lists them.")
            values["models"] = [ctx.registry.get(m).display_name for m in names if ctx.registry.get(m) is not None]  # type: ignore[union-attr]
        elif name == "negative":
            if len(raw) > MAX_NEGATIVE:
                problems.append(f"`--negative` is up to {MAX_NEGATIVE} characters.")
            values["negative"] = raw
    if ({"nsfw", "threshold"} & set(values)) and not ctx.settings.safety_classifier:
        problems.append(
            "No safety classifier is configured, so nothing is scored and `--nsfw`/`--threshold` would change "
            "nothing. An admin sets SDBOT_SAFETY_CLASSIFIER first."
        )
    if problems:
        raise UserError(*problems)
    return values


def _describe(ctx: Context, stored: dict[str, Any], request: Request) -> str:
    s = ctx.settings
    policy = policy_of(s, stored, request.age_restricted)
    lines = ["This chat:"]
    if s.safety_classifier:
        lines.append(f"• pictures scored {policy.threshold:g} or more: {policy.action} ({policy.source})")
    else:
        lines.append("• safety: no classifier is configured (SDBOT_SAFETY_CLASSIFIER), so pictures are not scored")
    lines.append("• refused prompt terms: " + (", ".join(stored.get("terms") or []) or "none"))
    lines.append("• models: " + (", ".join(stored.get("models") or []) or "all"))
    lines.append("• default negative prompt: " + (stored.get("negative") or "none"))
    lines.append(f"Admins of this chat change them: {USAGE}.")
    return "\n".join(lines)
