"""Discord's slash commands, built from the command registry: one slash command per `Command`,
one typed slash option per declared `Option` (`commands.frame.declare`), with its bounds and
default in the description, its choices, and autocomplete for models and long choice lists.

What a person fills in reaches the command layer typed, by the option's canonical name
(`Request.options`); the handler reads it with `read_flags`, as it reads `--flags` typed in the
text. Positional options (`/upscale 4`, `/style save NAME`) are the words of the command's text,
in their declared order. A command with more options than Discord allows (25) gets its
first ones typed and an `options` text field for the rest, as `--flags`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import discord
from discord import app_commands

from commands.frame.declare import Option
from commands.frame.words import short
from commands.registry import COMMANDS, Command
from config import Settings

MAX_OPTIONS = 25  # Discord's limit of options per slash command
MAX_CHOICES = 25  # ... and of choices, and of autocomplete results
DESCRIPTION_LIMIT = 100
MORE = "options"  # the text field that takes the options past the limit, as --flags
KIND_TYPES: dict[str, type] = {"int": int, "float": float, "switch": bool, "choice": str, "text": str, "file": discord.Attachment}

Models = Callable[[discord.Interaction], list[str]]


def slash_options(command: Command) -> tuple[tuple[Option, ...], tuple[Option, ...]]:
    """(typed as slash options, written in the `options` field): positional ones and files first,
    then flags in declared order, within Discord's limit."""
    first = [o for o in command.options if o.positional or o.kind == "file"]
    flags = [o for o in command.options if not (o.positional or o.kind == "file")]
    if len(first) + len(flags) <= MAX_OPTIONS:
        return tuple(command.options), ()
    room = MAX_OPTIONS - len(first) - 1  # one for the `options` field
    typed = {id(o) for o in first + flags[:room]}
    return tuple(o for o in command.options if id(o) in typed), tuple(flags[room:])


def overflow_description(name: str, overflow: Sequence[Option]) -> str:
    """The `options` field's description: the flags it takes, when their names fit Discord's 100
    characters, else where they are listed (a command is never cut down to fit the field)."""
    names = " ".join(option.flag.removeprefix("--") for option in overflow)
    listed = f"More, as --flags: {names}"
    return listed if len(listed) <= DESCRIPTION_LIMIT else f"More, as --flags ({len(overflow)} more; `/help {name}` lists them)"


def build_slash_command(command: Command, settings: Settings, models: Models, send: Callable[..., Any]) -> app_commands.Command:  # type: ignore[type-arg]
    """The slash command of `command`. `send(interaction, options=..., attachments=...)` hands a
    use of it to the chat; `models(interaction)` names the models for autocomplete."""
    typed, overflow = slash_options(command)
    parameters = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction)]
    descriptions: dict[str, str] = {}
    renames: dict[str, str] = {}
    for option in typed:
        python = _python_name(option)
        annotation: Any = KIND_TYPES[option.kind]
        default = inspect.Parameter.empty if option.required else None
        parameters.append(
            inspect.Parameter(
                python,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=annotation if option.required else annotation | None,
            )
        )
        descriptions[python] = option.describe(settings, DESCRIPTION_LIMIT)
        renames[python] = option.slash_name
    if overflow:
        parameters.append(inspect.Parameter(MORE, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None))
        descriptions[MORE] = overflow_description(command.name, overflow)

    async def callback(interaction: discord.Interaction, **values: Any) -> None:
        options: dict[str, Any] = {"command": command.name}
        words, rest, files = [], "", []
        for option in typed:
            value = values.get(_python_name(option))
            if value is None:
                continue
            if option.kind == "file":
                files.append(value)
            elif option.rest:
                rest = str(value)
            elif option.positional:
                words.append(str(value))
            else:
                options[option.name] = value
        more = values.get(MORE) or ""
        options["args"] = " ".join(part for part in (*words, rest, more) if part).strip()
        await send(interaction, options=options, attachments=files)

    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback.__discord_app_commands_param_description__ = descriptions  # type: ignore[attr-defined]
    callback.__discord_app_commands_param_rename__ = renames  # type: ignore[attr-defined]
    choices = {
        _python_name(o): [app_commands.Choice(name=c, value=int(c) if o.kind == "int" else c) for c in o.choices_of(settings)]
        for o in typed
        if o.choices_of(settings) and len(o.choices_of(settings)) <= MAX_CHOICES
    }
    if choices:
        callback.__discord_app_commands_param_choices__ = choices  # type: ignore[attr-defined]
    slash = app_commands.Command(name=command.name, description=short(command.summary, DESCRIPTION_LIMIT), callback=callback)
    for option in typed:
        long_choices = len(option.choices_of(settings)) > MAX_CHOICES
        if option.autocomplete == "models" or long_choices:
            slash.autocomplete(_python_name(option))(_suggest(option, settings, models))
    return slash


def build_slash_commands(settings: Settings, models: Models, send: Callable[..., Any]) -> list[app_commands.Command]:  # type: ignore[type-arg]
    return [build_slash_command(command, settings, models, send) for command in COMMANDS]


def _suggest(option: Option, settings: Settings, models: Models) -> Callable[..., Any]:
    async def suggest(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = models(interaction) if option.autocomplete == "models" else list(option.choices_of(settings))
        wanted = current.lower()
        return [app_commands.Choice(name=name, value=name) for name in names if wanted in name.lower()][:MAX_CHOICES]

    return suggest


def _python_name(option: Option) -> str:
    return f"o_{option.name}"  # `class` and other Python words are fine option names
