"""What people touch in Discord: the slash commands, the "Remix" message command and its modal,
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
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from commands.help import COMMAND_MENU
from config import Settings
from generation.samplers import sampler_names

if TYPE_CHECKING:
    from bot.discord.adapter import DiscordChat

CUSTOM_ID_PREFIX = "sdbot:"
MAX_CHOICES = 25  # Discord's limit for choices and autocomplete results


def _chat(interaction: discord.Interaction) -> DiscordChat:
    return interaction.client.chat  # type: ignore[attr-defined,no-any-return]


class ActionButton(discord.ui.DynamicItem[discord.ui.Button], template=r"sdbot:(?P<action>[a-z]+(?::\d+)?)"):  # type: ignore[type-arg,call-arg]
    def __init__(self, action: str, label: str = "", *, row: int | None = None) -> None:
        style = discord.ButtonStyle.primary if action.startswith("upscale") else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label or action, custom_id=CUSTOM_ID_PREFIX + action, style=style, row=row))
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]  # type: ignore[type-arg]
    ) -> ActionButton:
        return cls(match["action"], item.label or "")

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await _chat(interaction).on_press(interaction, self.action)


def result_view(actions: list[tuple[str, str]]) -> discord.ui.View | None:
    """Buttons for (action id, label) pairs: U1..Un on the first row, V1..Vn on the second, the rest after."""
    if not actions:
        return None
    view = discord.ui.View(timeout=None)
    row_of = {"upscale": 0, "vary": 1}
    for action, label in actions:
        verb, _, number = action.partition(":")
        view.add_item(ActionButton(action, label, row=row_of.get(verb, 2) if number else 2))
    return view


class RemixModal(discord.ui.Modal, title="Remix"):
    prompt: discord.ui.TextInput = discord.ui.TextInput(  # type: ignore[type-arg]
        label="New prompt (and --options)", style=discord.TextStyle.paragraph, max_length=1500,
        placeholder="as a watercolor painting --strength 0.6",
    )  # fmt: skip

    def __init__(self, message: discord.Message) -> None:
        super().__init__(timeout=15 * 60)
        self.message = message

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await _chat(interaction).on_remix(interaction, self.message, str(self.prompt.value))


def build_commands(settings: Settings) -> list[app_commands.Command | app_commands.ContextMenu]:  # type: ignore[type-arg]
    s = settings
    describe = dict(COMMAND_MENU)
    samplers = [app_commands.Choice(name=name, value=name) for name in sampler_names()[:MAX_CHOICES]]

    @app_commands.command(name="imagine", description=describe["imagine"])
    @app_commands.describe(
        prompt=f"What to draw (up to {s.max_prompt_chars} characters; --options work here too)",
        negative="What to leave out (negative prompt)",
        aspect="Aspect ratio W:H, 1:4 to 4:1, e.g. 3:2 (not with size)",
        size=f"WxH, multiples of 8, sides {s.min_side}-{s.max_side}, at most {s.max_pixels:,} pixels",
        seed="0-4294967295; image i of a batch uses seed + i (default: random)",
        steps=f"Sampling steps, 1-{s.max_steps} (default {s.default_steps})",
        cfg=f"Guidance scale, {s.min_cfg:g}-{s.max_cfg:g} (default {s.default_cfg:g})",
        sampler=f"Sampler (default {s.default_sampler})",
        n=f"Images, 1-{s.max_batch} (default {s.default_n})",
        model="A configured model (default: yours or the bot's)",
        strength=f"How much the image may change, 0.01-1 (default {s.default_strength:g}); needs an image",
        image="Start from this image (img2img)",
    )
    @app_commands.choices(sampler=samplers)
    async def imagine(
        interaction: discord.Interaction, prompt: str, negative: str | None = None, aspect: str | None = None,
        size: str | None = None, seed: int | None = None, steps: int | None = None, cfg: float | None = None,
        sampler: str | None = None, n: int | None = None, model: str | None = None, strength: float | None = None,
        image: discord.Attachment | None = None,
    ) -> None:  # fmt: skip
        options: dict[str, Any] = {
            "command": "imagine", "prompt": prompt, "negative": negative, "aspect": aspect, "size": size, "seed": seed,
            "steps": steps, "cfg": cfg, "sampler": sampler, "n": n, "model": model, "strength": strength,
        }  # fmt: skip
        await _chat(interaction).on_command(interaction, options={k: v for k, v in options.items() if v is not None}, image=image)

    @imagine.autocomplete("model")
    async def model_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = _chat(interaction).model_names()
        wanted = current.lower()
        return [app_commands.Choice(name=n, value=n) for n in names if wanted in n.lower()][:MAX_CHOICES]

    @app_commands.command(name="help", description=describe["help"])
    async def help_(interaction: discord.Interaction) -> None:
        await _chat(interaction).on_command(interaction, text="/help")

    @app_commands.command(name="settings", description=describe["settings"])
    @app_commands.describe(options="e.g. --steps 30 --sampler euler_a --ar 3:2, or reset [name]; empty: show them")
    async def settings_(interaction: discord.Interaction, options: str = "") -> None:
        await _chat(interaction).on_command(interaction, text=f"/settings {options}")

    @app_commands.command(name="queue", description=describe["queue"])
    async def queue_(interaction: discord.Interaction) -> None:
        await _chat(interaction).on_command(interaction, text="/queue")

    @app_commands.command(name="cancel", description=describe["cancel"])
    @app_commands.describe(job="A job number, or all (default: your newest job)")
    async def cancel(interaction: discord.Interaction, job: str = "") -> None:
        await _chat(interaction).on_command(interaction, text=f"/cancel {job}")

    @app_commands.command(name="history", description=describe["history"])
    @app_commands.describe(count="How many jobs, 1-25 (default 10)")
    async def history(interaction: discord.Interaction, count: int | None = None) -> None:
        await _chat(interaction).on_command(interaction, text=f"/history {count or ''}")

    @app_commands.command(name="info", description=describe["info"])
    @app_commands.describe(job="The job number")
    async def info(interaction: discord.Interaction, job: int) -> None:
        await _chat(interaction).on_command(interaction, text=f"/info {job}")

    @app_commands.context_menu(name="Remix")
    async def remix(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_modal(RemixModal(message))

    return [imagine, help_, settings_, queue_, cancel, history, info, remix]
