"""What people touch in Discord: the slash commands (made from the command registry by
`bot.discord.slash`), the "Remix", "Control" and "Describe" message commands and their modals,
and the buttons under results.

Every piece only collects input and hands it to the chat (`DiscordChat`), which turns it into a
Request. Buttons are a `DynamicItem` with the custom id `sdbot:<action id>`: registered once at
start, they answer presses on any message, also ones sent before a restart; the message they are
under resolves the job through the database.

Bounds are checked by the command layer, the same code as the text syntax, so option
descriptions state them and Discord is not asked to enforce them (an out-of-range value then
gets our explanation, not Discord's bare "invalid value").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import discord
from discord import app_commands

from bot.discord.slash import build_slash_commands
from commands.frame.types import Action
from config import Settings

CUSTOM_ID_PREFIX = "sdbot:"


class Chat(Protocol):
    """What this module hands input to: the Discord adapter (`bot.discord.adapter.DiscordChat`),
    reached as `client.chat`. A protocol, so that this module needs nothing from the adapter."""

    def model_names(self) -> list[str]: ...

    async def on_command(
        self,
        interaction: discord.Interaction,
        *,
        text: str | None = None,
        options: dict | None = None,  # type: ignore[type-arg]
        attachments: Sequence[discord.Attachment | None] = (),
    ) -> None: ...

    async def on_press(self, interaction: discord.Interaction, action: str) -> None: ...

    async def on_remix(self, interaction: discord.Interaction, message: discord.Message, prompt: str) -> None: ...


def _chat(interaction: discord.Interaction) -> Chat:
    return interaction.client.chat  # type: ignore[attr-defined,no-any-return]


class ActionButton(discord.ui.DynamicItem[discord.ui.Button], template=r"sdbot:(?P<action>[a-z][a-z0-9.-]*(?::\d+)?)"):  # type: ignore[type-arg,call-arg]
    def __init__(self, action: str, label: str = "", *, row: int | None = None) -> None:
        style = discord.ButtonStyle.primary if action.startswith("upscale") else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label or action, custom_id=CUSTOM_ID_PREFIX + action, style=style, row=row))
        self.action = action

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button,
        match: re.Match[str],  # type: ignore[type-arg]
    ) -> ActionButton:
        return cls(match["action"], item.label or "")

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await _chat(interaction).on_press(interaction, self.action)


def result_view(actions: Sequence[Action]) -> discord.ui.View | None:
    """Buttons on the rows the command layer gave them (Discord has 5 rows of 5)."""
    if not actions:
        return None
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(ActionButton(action.id, action.label, row=min(action.row, 4)))
    return view


class PromptModal(discord.ui.Modal):
    """Apps → Remix / Control on a message: a modal asks for the prompt (and options); the message's
    picture is what it works on. `command` goes before what was typed ("/control " for Control)."""

    def __init__(self, message: discord.Message, *, title: str, label: str, placeholder: str, command: str = "") -> None:
        super().__init__(title=title, timeout=15 * 60)
        self.message = message
        self.command = command
        self.prompt: discord.ui.TextInput = discord.ui.TextInput(  # type: ignore[type-arg]
            label=label,
            style=discord.TextStyle.paragraph,
            max_length=1500,
            placeholder=placeholder,
            custom_id="prompt",
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await _chat(interaction).on_remix(interaction, self.message, self.command + str(self.prompt.value))


def build_commands(settings: Settings) -> list[app_commands.Command | app_commands.ContextMenu]:  # type: ignore[type-arg]
    """Every slash command (built from the command registry, `bot.discord.slash`) and the three
    message commands (Apps → Remix, Control, Describe)."""

    async def send(interaction: discord.Interaction, **fields: Any) -> None:
        await _chat(interaction).on_command(interaction, **fields)

    slash = build_slash_commands(settings, lambda interaction: _chat(interaction).model_names(), send)

    @app_commands.context_menu(name="Control")
    async def control_message(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_modal(
            PromptModal(
                message,
                title="Control",
                label="Control type, prompt (and --options)",
                placeholder="canny a fox in the snow --control-weight 0.8",
                command="/control ",
            )
        )

    @app_commands.context_menu(name="Describe")
    async def describe_message(interaction: discord.Interaction, message: discord.Message) -> None:
        await _chat(interaction).on_remix(interaction, message, "/describe")

    @app_commands.context_menu(name="Remix")
    async def remix(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_modal(
            PromptModal(
                message,
                title="Remix",
                label="New prompt (and --options)",
                placeholder="as a watercolor painting --strength 0.6",
            )
        )

    return [*slash, remix, describe_message, control_message]
