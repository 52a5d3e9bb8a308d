"""Every command is declared once, in commands/registry.py, and every surface reads that
declaration: the dispatch, `/help COMMAND`, Telegram's menu, Discord's slash-command descriptions
and docs/commands.md (which must not be stale)."""

from __future__ import annotations

import pytest

from bot.discord.interface import build_commands
from commands import registry
from commands.command_docs import PAGE, README, commands_page, readme_index
from config import Settings
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
    [(_, unknown)] = await bot.send("/help teleport")
    assert unknown.kind == "error" and "I don't know `/teleport`" in unknown.text and "/imagine" in unknown.text
    [(_, typo)] = await bot.send("/imagin a fox")
    assert typo.kind == "error" and registry.command_list() in typo.text
    assert bot.service.knows("V2V") and not bot.service.knows("teleport")
