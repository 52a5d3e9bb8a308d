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

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Context
from commands.errors import Refused, UserError
from commands.numbers import quoted, read_float
from commands.parser import parse_flags
from commands.types import Reply, Request
from config import Settings
from generation.spec import GenerationSpec
from storage import audit, places, users

ACTIONS = ("allow", "spoiler", "blur", "block")
FIELDS = ("nsfw", "threshold", "terms", "models", "negative")
FLAGS = {name: name for name in FIELDS}
MAX_TERMS, MAX_TERM_CHARS, MAX_NEGATIVE = 100, 60, 500
USAGE = '`/place --nsfw allow|spoiler|blur|block --threshold 0.5 --terms "a, b" --models a,b --negative "..."`, or `/place reset [name]`'


@dataclass(frozen=True)
class Policy:
    """What a place does with a picture the safety classifier scores at or over `threshold`."""

    action: str  # allow | spoiler | blur | block
    threshold: float
    source: str  # words for where the action comes from


def policy_of(settings: Settings, place: dict[str, Any], age_restricted: bool) -> Policy:
    threshold = float(place.get("threshold", settings.safety_threshold))
    if place.get("nsfw"):
        return Policy(str(place["nsfw"]), threshold, "this chat's setting")
    if age_restricted:
        return Policy("allow", threshold, "an age-restricted channel's default")
    return Policy(settings.safety_policy, threshold, "the default (SDBOT_SAFETY_POLICY)")


async def place_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    words = args.split()
    async with ctx.db.transaction() as session:
        stored = await places.settings_of(session, request.platform, request.chat_id)
        if not words:
            return [Reply(_describe(ctx, stored, request))]
        if not (ctx.is_admin(request) or request.place_admin):  # adapters never set place_admin in private chats
            raise UserError(
                "Only this chat's admins can change its settings (on Discord: Manage Server or Manage "
                "Channels; on Telegram: the group's admins; a private chat: the bot's admins)."
            )
        if words[0].lower() == "reset":
            names = [w.lower().lstrip("-") for w in words[1:]]
            unknown = [n for n in names if n not in FIELDS]
            if unknown:
                raise UserError(f"I can't reset `{unknown[0]}`. Settings: {', '.join(FIELDS)}.")
            changed = {k: v for k, v in stored.items() if names and k not in names}
        else:
            changed = {**stored, **_read(ctx, args)}
        account = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
        await places.save(session, request.platform, request.chat_id, changed, account.id)
        await audit.record(
            session,
            actor_id=account.id,
            platform=request.platform,
            platform_user_id=request.user_id,
            action="place",
            detail=f"{request.chat_id}: {args.strip()}",
        )
    return [Reply("Saved.\n" + _describe(ctx, changed, request))]


def _read(ctx: Context, args: str) -> dict[str, Any]:
    flags = parse_flags(args, FLAGS)
    problems = list(flags.problems)
    if flags.text:
        problems.insert(0, f"I don't understand `{flags.text[:40]}`. {USAGE}.")
    values: dict[str, Any] = {}
    for name, raw in flags.values.items():
        raw = raw.strip().strip('"').strip()
        if name == "nsfw":
            if raw.lower() not in ACTIONS:
                problems.append(f"`--nsfw` is one of {', '.join(ACTIONS)}; you wrote `{raw}`.")
            values["nsfw"] = raw.lower()
        elif name == "threshold":
            number = read_float(raw)
            if number is None or not 0 <= number <= 1:
                problems.append(
                    f"`--threshold` is a score from 0 to 1 (pictures scored at or over it are treated); you wrote `{quoted(raw)}`."
                )
            values["threshold"] = number
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
