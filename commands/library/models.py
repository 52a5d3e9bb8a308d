"""/models and /model: the models, choosing your default, and (admins) adding and removing models.

    /models                      every model with its family (LoRAs and embeddings must match it), its size
                                 on disk and what its family can't serve
    /model NAME                  your default model (the same as `/settings --model NAME`)
    /model                       which one is yours
    /model add NAME SOURCE [--config C] [--arch FAMILY] [--size N] [--clip-skip N]
                               [--vae V] [--description TEXT]                        (admins)
    /model remove NAME [--force]                                                       (admins)

SOURCE is a diffusers folder, a Hub id, a single-file .safetensors checkpoint (with --config:
a diffusers folder or Hub id holding its component configs, so nothing is fetched), or a FLUX.1 /
Chroma / SD 3.5 / Qwen-Image / Z-Image / FLUX.2 Klein transformer file (.safetensors or .gguf,
with --config: the folder of the rest). FAMILY: generation.models.families (sd1, sdxl, flux, ...). Added models
live in the database and reach every bot and worker process at its next request or job
(`storage.model_library.sync`); models from the settings cannot be removed in chat.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from commands.account.settings import settings as settings_command
from commands.frame.context import Context
from commands.frame.declare import INVALID, Option, check, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.parser import Flags, flag_name
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker
from commands.jobs.options import MAX_CLIP_SKIP
from config.models import ARCHITECTURE_NAMES, ModelEntry, ModelRegistry, source_kind
from generation.models.families import FAMILIES, family
from generation.models.files import ModelSourceError, describe_model, inspect_model_source, model_shapes, weights_bytes
from storage import audit, model_library

VERBS = ("add", "remove")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SIZE_RANGE = (64, 2048)
MAX_DESCRIPTION = 200
FORCE = Option("force", "switch", "With remove: even if queued jobs use it (they fail)", default=False)
SIZE = Option("size", "int", "With add: native side in pixels, a multiple of 8", bounds=SIZE_RANGE, default="read from the files")
CLIP_SKIP = Option("clip_skip", "int", "With add: its clip skip", aliases=("clipskip",), bounds=(1, MAX_CLIP_SKIP))
OPTIONS: tuple[Option, ...] = (
    Option("action", "choice", "Admins: add or remove a model", choices=("add", "remove"), positional=True),
    Option("name", "text", "A model (empty: show yours); with add or remove, its name", positional=True, autocomplete="models"),
    Option("source", "text", "With add: a diffusers folder, Hub id, or .safetensors checkpoint", positional=True),
    Option("config", "text", "With add and a .safetensors: a diffusers folder or Hub id with its configs"),
    Option(
        "architecture",
        "choice",
        "With add: the model's family",
        aliases=("arch", "family"),
        choices=tuple(f.id for f in FAMILIES),
        default="read from the files",
    ),
    SIZE,
    CLIP_SKIP,
    Option("vae", "text", "With add: a configured VAE"),
    Option("description", "text", f"With add: a line shown in /models (up to {MAX_DESCRIPTION} characters)", aliases=("desc",)),
    FORCE,
)
ADD_OPTIONS = tuple(option for option in OPTIONS if option is not FORCE)


async def list_models(ctx: Context, request: Request, args: str) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        yours = ctx.registry.get(user.settings.get("model")) or ctx.registry.default
    admin = ctx.is_admin(request)
    lines = ["Models (pick one with `/model NAME`, or `--model NAME` for one job):"]
    for entry in ctx.registry:
        marks = [m for m, on in (("default", entry is ctx.registry.default), ("yours", entry is yours)) if on]
        if admin and ctx.registry.is_added(entry.display_name):
            marks.append("added in chat")
        line = f"• {entry.display_name} — {describe_model(entry)}, {entry.native_size}px native"
        size = weights_bytes(entry)
        if size:
            line += f", {size / 1024**3:.1f} GB of weights" if size >= 100 * 1024**2 else f", {size / 1024**2:.0f} MB of weights"
        if marks:
            line += f" ({', '.join(marks)})"
        if entry.description:
            line += f": {entry.description}"
        lines.append(line)
        if (missing := not_served(entry)) is not None:
            lines.append(f"  not with this model: {missing}")
    if admin:
        lines.append("Admins: `/model add NAME SOURCE` and `/model remove NAME`.")
    return [Reply("\n".join(lines))]


# What a family may lack, as /models says it (generation.models.families.FEATURES).
SERVED = {
    "img2img": "remix/Vary",
    "inpaint": "/inpaint, Zoom Out, Pan",
    "negative": "--no",
    "lora": "LoRAs",
    "embeddings": "embeddings",
    "controlnet": "/control",
    "regions": "--regions",
    "tile": "--tile",
    "clip_skip": "--clip-skip",
    "vae": "--vae",
    "prompt_weights": "(word:1.3) weights",
    "prompt_editing": "prompt editing",
    "break": "BREAK",
    "latent_upscale": "latent upscale",
    "animate": "/animate",
    "deforum": "/deforum",
    "train": "/train",
}


def not_served(entry: ModelEntry) -> str | None:
    """The commands and options the model's family can't serve, for /models; None when it serves all."""
    found = family(entry.family)
    missing = [label for feature, label in SERVED.items() if not found.supports(feature, entry.guessed_variant)]
    if found.flow_matching:
        missing.append(f"samplers other than {', '.join(found.samplers)}")
    return ", ".join(missing) if missing else None


def family_lines(registry: ModelRegistry) -> list[str]:
    """One line per model family among the models here: which models, its samplers and guidance,
    its size rule, and what it can't serve (for /help)."""
    by_family: dict[str, list[ModelEntry]] = {}
    for entry in registry:
        by_family.setdefault(entry.family, []).append(entry)
    lines = []
    for family_id, entries in by_family.items():
        found = family(family_id)
        names = ", ".join(entry.display_name for entry in entries)
        facts = [f"samplers {', '.join(found.samplers)}" if found.flow_matching else "every sampler"]
        if found.guidance == "distilled":
            facts.append("--cfg is its distilled guidance")
        facts.append(f"sizes in multiples of {found.size_multiple}, {found.native_size}px native")
        missing = not_served(entries[0])
        line = f"{found.label} ({names}): {'; '.join(facts)}"
        lines.append(line + (f"; not with it: {missing}" if missing else ""))
    return lines


async def model_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    verb, _, rest = args.strip().partition(" ")
    if verb.lower() == "add":
        return await add_model(ctx, request, rest)
    if verb.lower() in ("remove", "delete"):
        return await remove_model(ctx, request, rest)
    return await choose_model(ctx, request, args)


async def choose_model(ctx: Context, request: Request, args: str) -> list[Reply]:
    name = args.strip()
    if not name:
        return await list_models(ctx, request, "")
    if ctx.registry.get(name) is None:
        raise UserError(f"Unknown model `{name}`. Models: {', '.join(ctx.registry.names())}.")
    return await settings_command(ctx, request, f"--model {name}")


async def add_model(ctx: Context, request: Request, args: str) -> list[Reply]:
    _admin_only(ctx, request, "add models")
    flags = read_flags(request.options, args, ADD_OPTIONS)
    name, _, source = flags.text.partition(" ")
    source = source.strip()
    problems = list(flags.problems)
    if not name or not source:
        problems.append(
            "Write `/model add NAME SOURCE`: SOURCE is a diffusers folder, a Hub id (org/name), or a .safetensors "
            "checkpoint with `--config FOLDER`."
        )
    else:
        problems += _name_problems(ctx, name)
    values = _entry_values(ctx, flags, problems)
    if values.get("config") and source and source_kind(source) != "file":
        problems.append("`--config` is only for a single .safetensors checkpoint; a folder or Hub id has its own configs.")
    if problems:
        raise UserError(*problems)
    try:
        facts = inspect_model_source(source, values.get("config"))
    except ModelSourceError as error:
        raise UserError(error.message) from None
    given = values.get("architecture")
    if given and facts.architecture and given != facts.architecture:
        raise UserError(f"`--arch {given}` does not match the files, which are {ARCHITECTURE_NAMES[facts.architecture]}. Leave out --arch.")
    values.setdefault("architecture", facts.architecture)
    values.setdefault("size", facts.size)
    values.setdefault("variant", facts.variant)
    try:
        entry = ModelEntry(source=source, name=name, **{k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        raise UserError(*(f"{e['loc'][0] if e['loc'] else 'model'}: {e['msg']}" for e in error.errors())) from None
    async with ctx.db.transaction() as session:
        await model_library.sync(session, ctx.registry)  # another admin may have just taken the name
        if ctx.registry.get(name) is not None:
            raise UserError(f"There is already a model named `{name}`. Remove it first, or pick another name.")
        user = await asker(session, request)
        await model_library.add_model(session, entry, user.id)
        await model_library.sync(session, ctx.registry)
        await audit.record(
            session,
            actor_id=user.id,
            platform=request.platform,
            platform_user_id=request.user_id,
            action="model_add",
            detail=f"{name}: {source}",
        )
    lines = [
        f"Added the model `{name}` ({describe_model(entry)}, {entry.native_size}px native). Use it with `--model {name}` "
        f"or `/model {name}`; it loads when a job first uses it.",
        *facts.notes,
    ]
    if model_shapes(entry) is not None:
        lines.append("Uploaded LoRAs and embeddings are checked against its layers, read from its configs.")
    elif not entry.architecture:
        family = ARCHITECTURE_NAMES[entry.family]
        lines.append(f"Its files don't say which architecture it is; LoRAs are checked as {family}. Set `--arch` if that is wrong.")
    return [Reply("\n".join(lines))]


async def remove_model(ctx: Context, request: Request, args: str) -> list[Reply]:
    _admin_only(ctx, request, "remove models")
    flags = read_flags(request.options, args, (FORCE,))
    name = flags.text.strip()
    problems = list(flags.problems)
    force = read_value(FORCE, flags.values, ctx.settings, problems, flags.written)
    if problems or not name:
        raise UserError(*(problems or ["Which model? `/model remove NAME`."]))
    if ctx.registry.is_configured(name):
        raise UserError(
            f"`{name}` comes from the bot's settings (SDBOT_MODEL / SDBOT_MODELS); remove it there and restart. "
            "Only models added with `/model add` can be removed in chat."
        )
    async with ctx.db.transaction() as session:
        waiting = await model_library.active_jobs_using(session, name)
        if waiting and not force:
            raise UserError(
                f"{waiting} queued or running job(s) use `{name}`; removing it now would fail them. Try again when "
                f"they are done, or add `--force` (they fail with a note that the model was removed)."
            )
        removed = await model_library.remove_model(session, name)
        await model_library.sync(session, ctx.registry)
        if removed:
            user = await asker(session, request)
            await audit.record(
                session,
                actor_id=user.id,
                platform=request.platform,
                platform_user_id=request.user_id,
                action="model_remove",
                detail=name + (f" ({waiting} jobs failed)" if waiting else ""),
            )
    if not removed:
        raise UserError(f"There is no added model named `{name}`. `/models` lists them.")
    note = f" {waiting} job(s) that used it will fail with a note." if waiting else ""
    return [Reply(f"Removed the model `{name}`. Workers unload it before their next job.{note}")]


def _admin_only(ctx: Context, request: Request, what: str) -> None:
    if not ctx.is_admin(request):
        raise UserError(f"Only admins can {what}. `/models` lists the models; `/model NAME` picks your default.")


def _name_problems(ctx: Context, name: str) -> list[str]:
    if not NAME.match(name):
        return [f"`{name[:80]}` can't be a model name: use 1-64 letters, digits, `.`, `_` or `-`, starting with a letter or digit."]
    if name.lower() in VERBS + ("delete",):
        return [f"`{name}` is a word of the /model command; pick another name."]
    if ctx.registry.get(name) is not None:
        return [f"There is already a model named `{name}`. Remove it first, or pick another name."]
    return []


def _entry_values(ctx: Context, flags: Flags, problems: list[str]) -> dict[str, object]:
    """The optional ModelEntry fields from `/model add`'s flags, checked; problems collected."""
    given, values = flags.values, {}
    for key in ("config", "vae", "description"):
        if key in given:
            if not str(given[key]).strip():
                problems.append(f"`{flag_name(key)}` needs a value.")
            values[key] = str(given[key]).strip() or None
    if "architecture" in given:
        arch = str(given["architecture"]).lower().replace(".x", "").replace(" ", "")
        arch = {"sd15": "sd1", "sd21": "sd2", "xl": "sdxl", "sd35": "sd3", "flux1": "flux"}.get(arch, arch)
        if arch not in {f.id for f in FAMILIES}:
            problems.append(f"`--arch {given['architecture']}`: use {', '.join(f.id for f in FAMILIES)}.")
            arch = None
        values["architecture"] = arch
    for option in (SIZE, CLIP_SKIP):
        if option.name in given:
            number = check(option, given[option.name], ctx.settings, problems, flags.written.get(option.name))
            if option is SIZE and number is not INVALID and number % 8:
                problems.append(f"`{flags.written.get('size', '--size')} {number}` must be a multiple of 8.")
            elif number is not INVALID:
                values[option.name] = number
    description = values.get("description")
    if isinstance(description, str) and len(description) > MAX_DESCRIPTION:
        problems.append(f"The description is {len(description)} characters; keep it to {MAX_DESCRIPTION}.")
    vae = values.get("vae")
    if isinstance(vae, str) and vae not in ctx.settings.vaes and not Path(vae).expanduser().exists():
        known = ", ".join(ctx.settings.vaes) or "none are configured"
        problems.append(f"`--vae {vae}`: give a name from the `vaes` setting ({known}) or a VAE folder or file on this machine.")
    return values
