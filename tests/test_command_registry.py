"""Every command is declared once, in commands/registry.py, and every surface reads that
declaration: the dispatch, `/help COMMAND`, Telegram's menu, Discord's slash-command descriptions
and docs/commands.md (which must not be stale)."""

from __future__ import annotations

import pytest

from bot.discord.interface import build_commands
from commands import registry
from commands.command_docs import PAGE, README, commands_page, readme_index
from config import Settings
from tests.conftest import ROOT
from tests.test_service import Bot


def test_docs_commands_md_and_the_readme_index_are_written_from_the_registry() -> None:
    assert PAGE.read_text() == commands_page(), "docs/commands.md is stale: run `.venv/bin/python -m commands.command_docs`"
    readme = README.read_text()
    assert readme == readme_index(readme), "the README's command index is stale: run `.venv/bin/python -m commands.command_docs`"


def test_names_are_unique_and_fit_the_menus() -> None:
    names = [name for command in registry.COMMANDS for name in (command.name, *command.aliases)]
    assert len(names) == len(set(names))
    for command in registry.COMMANDS:
        assert command.name.islower() and command.name.isalnum(), command.name  # Telegram: a-z, 0-9, _
        assert 0 < len(command.summary) <= registry.MENU_LIMIT, (command.name, len(command.summary))
        assert command.usage and all(form.startswith(f"/{command.name}") for form in command.usage), command.usage


def test_discord_describes_each_slash_command_with_its_declaration(settings: Settings) -> None:
    slash = {command.name: command for command in build_commands(settings) if hasattr(command, "description")}
    assert {command.name for command in registry.COMMANDS} <= set(slash), "every command is a slash command on Discord"
    for name, built in slash.items():
        declared = registry.find(name)
        assert declared is not None and declared.name == name, f"/{name} on Discord is not in the registry"
        assert built.description == declared.summary, name


@pytest.mark.parametrize("command", registry.COMMANDS, ids=lambda command: command.name)
async def test_help_command_shows_its_forms(bot: Bot, command: registry.Command) -> None:
    [(_, answer)] = await bot.send(f"/help {command.name}")
    assert answer.kind != "error", answer.text
    assert f"/{command.name}** — {command.summary}" in answer.text
    assert all(form in answer.text for form in command.usage), answer.text
    for alias in command.aliases:
        [(_, same)] = await bot.send(f"/help /{alias.upper()}")
        assert same.text == answer.text


async def test_aliases_run_their_command_and_unknown_ones_are_answered(bot: Bot) -> None:
    [(_, started)] = await bot.send("/start")
    [(_, helped)] = await bot.send("/help")
    assert started.text == helped.text and "**Commands**" in helped.text
    from commands.jobs.options import IMAGINE_OPTIONS

    # the whole reference lists /imagine's options from their declarations, with this installation's bounds
    assert all(option.line(bot.core.ctx.settings) in helped.text for option in IMAGINE_OPTIONS)
    [(_, unknown)] = await bot.send("/help teleport")
    assert unknown.kind == "error" and "I don't know `/teleport`" in unknown.text and "/imagine" in unknown.text
    [(_, typo)] = await bot.send("/imagin a fox")
    assert typo.kind == "error" and registry.command_list() in typo.text
    assert bot.service.knows("V2V") and not bot.service.knows("teleport")


def test_every_declared_option_is_in_help_the_slash_command_and_the_docs_with_its_bounds(settings: Settings) -> None:
    """One declaration, every surface: `/help COMMAND`, Discord's slash command (typed, or named in
    its `options` field past Discord's 25) and docs/commands.md each show every option, with its
    bounds or choices."""
    from bot.discord.slash import MORE, build_slash_command, slash_options
    from commands.frame.declare import Option
    from commands.registry import command_help

    page = (ROOT / "docs" / "commands.md").read_text()
    defaults = Settings.model_construct()
    checked = 0
    for command in registry.COMMANDS:
        helped = command_help(command, settings)
        section = page.split(f"### /{command.name}\n", 1)[1].split("\n### ", 1)[0] if command.options else ""
        slash = build_slash_command(command, settings, lambda interaction: [], lambda *a, **k: None)
        typed, overflow = slash_options(command)
        shown = {parameter.display_name: parameter for parameter in slash.parameters}
        for option in command.options:
            limits = option.limits_text(settings)
            assert option.describe(settings) in helped, (command.name, option.name)
            assert option.describe(defaults) in section, (command.name, option.name)
            if option in typed:
                parameter = shown[option.slash_name]
                assert parameter.description.rstrip("…") in option.describe(settings, 100), (command.name, option.name)
                if limits and len(option.describe(settings)) <= 100:
                    assert limits in parameter.description, (command.name, option.name, parameter.description)
            else:
                more = shown[MORE].description  # the flags by name, or (too many for 100 characters) where /help lists them
                assert option in overflow and (option.flag.removeprefix("--") in more.split() or f"/help {command.name}" in more), (
                    command.name,
                    option.name,
                )
            checked += 1
    assert checked > 200  # the drawing commands declare most of them
    # The check fails for an option missing from a surface: one that help does not show.
    steps = next(option for option in registry.find("imagine").options if option.name == "steps")  # type: ignore[union-attr]
    assert "Sampling steps (1–" in steps.describe(settings) and isinstance(steps, Option)
    assert steps.describe(settings) not in command_help(registry.find("help"), settings)  # type: ignore[arg-type]


def test_typed_slash_values_reach_the_handler_typed() -> None:
    """Discord's typed values are read by name, as --flags typed in the text are: no text round trip."""
    from commands.frame.declare import read_flags
    from commands.pictures.imagine import OPTIONS

    flags = read_flags({"command": "imagine", "steps": 30, "cfg": 6.5, "tile": True}, "a fox --seed 3", OPTIONS)
    assert flags.values == {"seed": "3", "steps": 30, "cfg": 6.5, "tile": True} and flags.problems == []
    twice = read_flags({"steps": 30}, "a fox --steps 20", OPTIONS)
    assert twice.problems == ["`steps:` and `--steps` in the text say the same thing; keep one."]


@pytest.mark.parametrize("command", [c for c in registry.COMMANDS if c.options], ids=lambda command: command.name)
def test_every_spelling_of_every_declared_flag_reaches_its_option(command: registry.Command) -> None:
    """`--clip-skip`, `—clip_skip`, `--clipskip` and each declared alias: the parser is made from
    the declaration, so each spelling lands on the canonical name, and no two options share one."""
    from commands.frame.declare import aliases, read_flags

    flags = [option for option in command.options if not option.positional and option.kind != "file"]
    spellings = [spelling for option in flags for spelling in option.spellings()]
    assert len(spellings) == len(set(spellings)) == len(aliases(flags)), command.name
    for option in flags:
        for spelling in option.spellings():
            for dash in ("--", "—"):
                read = read_flags(None, f"words {dash}{spelling} {option.example or 'x'}", command.options)
                assert read.problems == [] and option.name in read.values, (command.name, spelling, read.problems)
