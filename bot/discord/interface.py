"""What people touch in Discord: the slash commands, the "Remix" and "Control" message commands and their modals,
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

from commands import registry
from commands.types import Action
from config import Settings
from generation.models.samplers import sampler_names
from generation.spec import CONTROL_TYPES
from generation.training import spec as training_spec

CUSTOM_ID_PREFIX = "sdbot:"
MAX_CHOICES = 25  # Discord's limit for choices and autocomplete results
TRAIN_METHODS = (*training_spec.TRAIN_METHODS, "preview", "status")  # /train METHOD, and its two other verbs
TRAIN_IMAGES = 10  # attachment options of /train (Discord allows 25 options in all); more: a zip, or the text command


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
    s = settings
    describe = dict(registry.menu())
    samplers = [app_commands.Choice(name=name, value=name) for name in sampler_names()[:MAX_CHOICES]]

    @app_commands.command(name="imagine", description=describe["imagine"])
    @app_commands.describe(
        prompt=f"What to draw (up to {s.max_prompt_chars} characters; --options work here too)",
        negative="What to leave out (negative prompt)",
        aspect="Aspect ratio W:H, 1:4 to 4:1, e.g. 3:2 (not with size)",
        size=f"WxH, multiples of 8, sides {s.min_side}-{s.max_side}, at most {s.max_pixels:,} pixels",
        seed="0-4294967295; image i of a batch uses seed + i (default: random)",
        steps=f"Sampling steps, 1-{s.max_steps} (default {s.steps_for(s.registry().default)})",
        cfg=f"Guidance scale, {s.min_cfg:g}-{s.max_cfg:g} (default {s.default_cfg:g})",
        sampler=f"Sampler (default {s.default_sampler})",
        n=f"Images, 1-{s.max_batch} (default {s.default_n})",
        model="A configured model (default: yours or the bot's)",
        strength=f"How much the image may change, 0.01-1 (default {s.default_strength:g}); needs an image",
        image="Start from this image (img2img)",
        tile="A seamless texture (repeats without seams)",
        vae="A configured VAE instead of the model's own (default: the model's)",
        style="Styles from /styles, applied in order, e.g. cinematic or anime,cinematic",
        regions="Regions: cols, rows, 1,2 or 1,2;1,1 — the prompt's parts split by BREAK",
        base_ratio="With regions: how much of the ADDBASE prompt goes everywhere, 0-1 (default 0.2)",
        lora="Your LoRAs with weights, e.g. fox:0.8, owl (or <lora:fox:0.8> in the prompt)",
    )
    @app_commands.choices(sampler=samplers)
    async def imagine(
        interaction: discord.Interaction,
        prompt: str,
        negative: str | None = None,
        aspect: str | None = None,
        size: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        cfg: float | None = None,
        sampler: str | None = None,
        n: int | None = None,
        model: str | None = None,
        strength: float | None = None,
        image: discord.Attachment | None = None,
        tile: bool | None = None,
        vae: str | None = None,
        style: str | None = None,
        regions: str | None = None,
        base_ratio: float | None = None,
        lora: str | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "command": "imagine",
            "prompt": prompt,
            "negative": negative,
            "aspect": aspect,
            "size": size,
            "seed": seed,
            "steps": steps,
            "cfg": cfg,
            "sampler": sampler,
            "n": n,
            "model": model,
            "strength": strength,
            "tile": tile,
            "vae": vae,
            "style": style,
            "regions": regions,
            "base_ratio": base_ratio,
            "lora": lora,
        }
        await _chat(interaction).on_command(interaction, options={k: v for k, v in options.items() if v is not None}, attachments=[image])

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

    @app_commands.command(name="me", description=describe["me"])
    async def me(interaction: discord.Interaction) -> None:
        await _chat(interaction).on_command(interaction, text="/me")

    @app_commands.command(name="place", description=describe["place"])
    @app_commands.describe(
        nsfw="What happens to pictures the safety classifier flags in this channel",
        options='e.g. --threshold 0.6 --terms "gore, blood" --models tiny --negative lowres, or reset [name]; empty: show',
    )
    @app_commands.choices(nsfw=[app_commands.Choice(name=a, value=a) for a in ("allow", "spoiler", "blur", "block")])
    async def place(interaction: discord.Interaction, nsfw: str | None = None, options: str = "") -> None:
        await _chat(interaction).on_command(interaction, text="/place " + (f"--nsfw {nsfw} " if nsfw else "") + options)

    @app_commands.command(name="link", description=describe["link"])
    @app_commands.describe(code="The code /link gave you on your other platform; empty: a new code (only you see it)")
    async def link(interaction: discord.Interaction, code: str = "") -> None:
        await _chat(interaction).on_command(interaction, text=f"/link {code}")

    @app_commands.command(name="unlink", description=describe["unlink"])
    async def unlink(interaction: discord.Interaction) -> None:
        await _chat(interaction).on_command(interaction, text="/unlink")

    edit_image = "The picture to edit (or reply to one with the text command, where message content is on)"

    @app_commands.command(name="upscale", description=describe["upscale"])
    @app_commands.describe(
        image=edit_image,
        factor="2 or 4",
        method="lanczos, esrgan, hires or latent (default: the bot's)",
        options="More options, e.g. --strength 0.3 --seed 7",
    )
    @app_commands.choices(
        factor=[app_commands.Choice(name=f"{f}x", value=f) for f in (2, 4)],
        method=[app_commands.Choice(name=m, value=m) for m in ("lanczos", "esrgan", "hires", "latent")],
    )
    async def upscale(
        interaction: discord.Interaction, image: discord.Attachment, factor: int = 2, method: str | None = None, options: str = ""
    ) -> None:
        text = f"/upscale {factor}" + (f" --method {method}" if method else "") + f" {options}"
        await _chat(interaction).on_command(interaction, text=text, attachments=[image])

    @app_commands.command(name="vary", description=describe["vary"])
    @app_commands.describe(
        image=edit_image,
        how="subtle keeps the composition; strong changes more",
        prompt="A new prompt (default: the picture's own), and --options",
    )
    @app_commands.choices(how=[app_commands.Choice(name=h, value=h) for h in ("subtle", "strong")])
    async def vary(interaction: discord.Interaction, image: discord.Attachment, how: str = "strong", prompt: str = "") -> None:
        await _chat(interaction).on_command(interaction, text=f"/vary {how} {prompt}", attachments=[image])

    @app_commands.command(name="zoom", description=describe["zoom"])
    @app_commands.describe(image=edit_image, factor="How far to zoom out", prompt="A prompt for the new area, and --options")
    @app_commands.choices(factor=[app_commands.Choice(name=f"{f}x", value=str(f)) for f in ("1.5", "2")])
    async def zoom(interaction: discord.Interaction, image: discord.Attachment, factor: str = "2", prompt: str = "") -> None:
        await _chat(interaction).on_command(interaction, text=f"/zoom {factor} {prompt}", attachments=[image])

    @app_commands.command(name="pan", description=describe["pan"])
    @app_commands.describe(image=edit_image, direction="Which side grows", prompt="A prompt for the new area, and --options")
    @app_commands.choices(direction=[app_commands.Choice(name=d, value=d) for d in ("left", "right", "up", "down")])
    async def pan(interaction: discord.Interaction, image: discord.Attachment, direction: str, prompt: str = "") -> None:
        await _chat(interaction).on_command(interaction, text=f"/pan {direction} {prompt}", attachments=[image])

    @app_commands.command(name="inpaint", description=describe["inpaint"])
    @app_commands.describe(
        image=edit_image,
        prompt="What to paint in the region (and --options: --blur, --only-masked)",
        box="x,y,w,h in pixels or percents, e.g. 10%,0%,50%,40%",
        select="Words naming the region",
        mask="A mask image: white = repaint",
    )
    async def inpaint(
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: str,
        box: str | None = None,
        select: str | None = None,
        mask: discord.Attachment | None = None,
    ) -> None:
        text = f"/inpaint {prompt}" + (f" --box {box}" if box else "") + (f" --select {select}" if select else "")
        await _chat(interaction).on_command(interaction, text=text, attachments=[image, mask])

    @app_commands.command(name="facefix", description=describe["facefix"])
    @app_commands.describe(image=edit_image, model="A configured face-restoration model (default: the first)")
    async def facefix(interaction: discord.Interaction, image: discord.Attachment, model: str | None = None) -> None:
        await _chat(interaction).on_command(interaction, text="/facefix" + (f" --model {model}" if model else ""), attachments=[image])

    @app_commands.command(name="control", description=describe["control"])
    @app_commands.describe(
        type="What the picture's map shows",
        prompt="What to draw (and --options: --start, --end, --pre none, --control depth:0.5)",
        image="The picture whose structure steers the drawing (qr: none needed)",
        weight="How strongly, 0-2 (default 1)",
        mode="balanced, prompt (my prompt is more important) or control (ControlNet is more important)",
        text="qr: what the code says, e.g. a URL",
    )
    @app_commands.choices(
        type=[app_commands.Choice(name=t, value=t) for t in CONTROL_TYPES],
        mode=[app_commands.Choice(name=m, value=m) for m in ("balanced", "prompt", "control")],
    )
    async def control(
        interaction: discord.Interaction,
        type: str,
        prompt: str,
        image: discord.Attachment | None = None,  # noqa: A002
        weight: float | None = None,
        mode: str | None = None,
        text: str | None = None,
    ) -> None:
        head = f"/control {type} {text or ''} " if type == "qr" else f"/control {type} "
        flags = (f" --control-weight {weight:g}" if weight is not None else "") + (f" --control-mode {mode}" if mode else "")
        await _chat(interaction).on_command(interaction, text=head + prompt + flags, attachments=[image])

    @app_commands.command(name="edit", description=describe["edit"])
    @app_commands.describe(
        image=edit_image,
        instruction="What to change, e.g. make it winter (and --options)",
        image_cfg="How closely to keep the picture, 0-10 (default the bot's)",
    )
    async def edit(interaction: discord.Interaction, image: discord.Attachment, instruction: str, image_cfg: float | None = None) -> None:
        text = f"/edit {instruction}" + (f" --image-cfg {image_cfg:g}" if image_cfg is not None else "")
        await _chat(interaction).on_command(interaction, text=text, attachments=[image])

    @app_commands.command(name="animate", description=describe["animate"])
    @app_commands.describe(
        prompt="What moves (and --options: --motion, --camera zoom-in:0.8, --loop, --seed …)",
        frames=f"{s.min_frames}-{s.max_frames} (default {s.default_frames})",
        fps=f"1-{s.max_fps} (default {s.default_fps})",
    )
    async def animate(interaction: discord.Interaction, prompt: str, frames: int | None = None, fps: int | None = None) -> None:
        text = f"/animate {prompt}" + (f" --frames {frames}" if frames is not None else "") + (f" --fps {fps}" if fps is not None else "")
        await _chat(interaction).on_command(interaction, text=text)

    @app_commands.command(name="video2video", description=describe["video2video"])
    @app_commands.describe(
        video="An MP4, WebM, MOV or GIF (or use Apps → Remix on a clip)",
        prompt="What to make of it (and --options)",
        strength=f"How much changes, 0.01-1 (default {s.video2video_strength:g})",
    )
    async def video2video(interaction: discord.Interaction, video: discord.Attachment, prompt: str, strength: float | None = None) -> None:
        text = f"/video2video {prompt}" + (f" --strength {strength:g}" if strength is not None else "")
        await _chat(interaction).on_command(interaction, text=text, attachments=[video])

    @app_commands.command(name="deforum", description=describe["deforum"])
    @app_commands.describe(
        prompts="A prompt, or prompts by frame: 0: a forest, 24: a city",
        frames=f"2-{s.max_deforum_frames} (default {s.default_frames})",
        zoom="Keyframes, e.g. 0:(1.02)",
        angle="Degrees per frame, e.g. 0:(0.5)",
        options="More: --tx, --ty, --strength, --color off …",
        image="A picture to start from",
    )
    async def deforum(
        interaction: discord.Interaction,
        prompts: str,
        frames: int | None = None,
        zoom: str | None = None,
        angle: str | None = None,
        options: str = "",
        image: discord.Attachment | None = None,
    ) -> None:
        text = f'/deforum "{prompts}"' + (f" --frames {frames}" if frames is not None else "")
        text += (f' --zoom "{zoom}"' if zoom else "") + (f' --angle "{angle}"' if angle else "") + f" {options}"
        await _chat(interaction).on_command(interaction, text=text, attachments=[image])

    @app_commands.command(name="frames", description=describe["frames"])
    @app_commands.describe(job="The clip's job number", format="png (a ZIP of the frames), gif or mp4")
    @app_commands.choices(format=[app_commands.Choice(name=f, value=f) for f in ("png", "gif", "mp4")])
    async def frames_(interaction: discord.Interaction, job: int, format: str = "png") -> None:  # noqa: A002
        await _chat(interaction).on_command(interaction, text=f"/frames {job} {format}")

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

    @app_commands.command(name="describe", description=describe["describe"])
    @app_commands.describe(image="The picture (a PNG file keeps its settings), or use Apps → Describe on a message")
    async def describe_(interaction: discord.Interaction, image: discord.Attachment) -> None:
        await _chat(interaction).on_command(interaction, text="/describe", attachments=[image])

    @app_commands.context_menu(name="Describe")
    async def describe_message(interaction: discord.Interaction, message: discord.Message) -> None:
        await _chat(interaction).on_remix(interaction, message, "/describe")

    @app_commands.command(name="enhance", description=describe["enhance"])
    @app_commands.describe(
        prompt="A few words to build on",
        n="How many prompts, 1-4 (default 1)",
        seed="The same seed writes the same prompts (default: random)",
    )
    async def enhance(interaction: discord.Interaction, prompt: str, n: app_commands.Range[int, 1, 4] = 1, seed: int | None = None) -> None:
        text = f"/enhance {prompt} --n {n}" + (f" --seed {seed}" if seed is not None else "")
        await _chat(interaction).on_command(interaction, text=text)

    @app_commands.command(name="styles", description=describe["styles"])
    @app_commands.describe(name="One style to show in full (default: all)")
    async def styles(interaction: discord.Interaction, name: str = "") -> None:
        await _chat(interaction).on_command(interaction, text=f"/styles {name}")

    @app_commands.command(name="style", description=describe["style"])
    @app_commands.describe(
        action="save or delete",
        name="The style's name",
        template="With save: the prompt template, containing {prompt}",
        negative="With save: its negative prompt",
        everyone="Admins: a global style",
    )
    @app_commands.choices(action=[app_commands.Choice(name=a, value=a) for a in ("save", "delete")])
    async def style(
        interaction: discord.Interaction, action: str, name: str, template: str = "", negative: str = "", everyone: bool = False
    ) -> None:
        text = f"/style {action} {name} {template}" + (f" --no {negative}" if negative else "")
        await _chat(interaction).on_command(interaction, text=text + (" --global" if everyone else ""))

    @app_commands.command(name="wildcard", description=describe["wildcard"])
    @app_commands.describe(
        action="list, show, add or delete",
        name="The list's name (used as __name__)",
        lines="With add: the options, separated by |",
        file="With add: a .txt file, one option per line",
    )
    @app_commands.choices(action=[app_commands.Choice(name=a, value=a) for a in ("list", "show", "add", "delete")])
    async def wildcard(
        interaction: discord.Interaction, action: str = "list", name: str = "", lines: str = "", file: discord.Attachment | None = None
    ) -> None:
        await _chat(interaction).on_command(interaction, text=f"/wildcard {action} {name} {lines}", attachments=[file])

    def asset_command(kind: str):  # type: ignore[no-untyped-def]
        @app_commands.command(name=kind, description=describe[kind])
        @app_commands.describe(
            action="upload (with the file), download, info, delete, rename, share or unshare",
            name=f"The {kind}'s name (upload: default from the file name)",
            new_name="With rename: the new name",
            file="With upload: the .safetensors file",
        )
        @app_commands.choices(
            action=[app_commands.Choice(name=a, value=a) for a in ("upload", "download", "info", "delete", "rename", "share", "unshare")]
        )
        async def command(
            interaction: discord.Interaction, action: str, name: str = "", new_name: str = "", file: discord.Attachment | None = None
        ) -> None:
            await _chat(interaction).on_command(interaction, text=f"/{kind} {action} {name} {new_name}", attachments=[file])

        return command

    @app_commands.command(name="train", description=describe["train"])
    @app_commands.describe(
        method="What to train (preview: the pictures as training sees them; status: your runs)",
        name="The new LoRA's or embedding's name",
        options="e.g. --steps 20 --rank 8 (as typed after /train)",
        **{f"image{i}": f"Training picture {i} (a .zip of pictures works too)" for i in range(1, TRAIN_IMAGES + 1)},
    )
    @app_commands.choices(method=[app_commands.Choice(name=m, value=m) for m in TRAIN_METHODS])
    async def train(
        interaction: discord.Interaction,
        method: str,
        name: str = "",
        options: str = "",
        image1: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        image6: discord.Attachment | None = None,
        image7: discord.Attachment | None = None,
        image8: discord.Attachment | None = None,
        image9: discord.Attachment | None = None,
        image10: discord.Attachment | None = None,
    ) -> None:
        text = " ".join(part.strip() for part in ("/train", method, name, options) if part.strip())
        pictures = [image1, image2, image3, image4, image5, image6, image7, image8, image9, image10]
        await _chat(interaction).on_command(interaction, text=text, attachments=pictures)

    @app_commands.command(name="models", description=describe["models"])
    async def models_(interaction: discord.Interaction) -> None:
        await _chat(interaction).on_command(interaction, text="/models")

    @app_commands.command(name="model", description=describe["model"])
    @app_commands.describe(
        name="A model (empty: show yours); with add, the new model's name",
        action="choose (default); admins: add or remove",
        source="With add: a diffusers folder, Hub id, or .safetensors checkpoint",
        config="With add and a .safetensors: a diffusers folder or Hub id with its configs",
        architecture="With add: sd1, sd2 or sdxl (default: read from the files)",
        size="With add: native side in pixels (default: read from the files)",
        description="With add: a line shown in /models",
        force="With remove: even if queued jobs use it (they fail)",
    )
    @app_commands.choices(
        action=[app_commands.Choice(name=a, value=a) for a in ("choose", "add", "remove")],
        architecture=[app_commands.Choice(name=a, value=a) for a in ("sd1", "sd2", "sdxl")],
    )
    async def model(
        interaction: discord.Interaction,
        name: str = "",
        action: str = "choose",
        source: str = "",
        config: str = "",
        architecture: str = "",
        size: int | None = None,
        description: str = "",
        force: bool = False,
    ) -> None:
        text = f"/model {name}" if action == "choose" else f"/model {action} {name} {source}"
        for flag, value in (("config", config), ("arch", architecture), ("size", size), ("description", description)):
            if value:
                text += f" --{flag} {value}"
        await _chat(interaction).on_command(interaction, text=text + (" --force" if force else ""))

    @model.autocomplete("name")
    async def model_choice(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await model_names(interaction, current)

    @app_commands.command(name="loras", description=describe["loras"])
    async def loras(interaction: discord.Interaction) -> None:
        await _chat(interaction).on_command(interaction, text="/loras")

    @app_commands.command(name="embeddings", description=describe["embeddings"])
    async def embeddings(interaction: discord.Interaction) -> None:
        await _chat(interaction).on_command(interaction, text="/embeddings")

    @app_commands.command(name="admin", description=describe["admin"])
    @app_commands.describe(
        action="status: workers and the queue · role: someone's role · audit: the log · review: withheld pictures",
        args="role: WHO [admin|trusted|default|banned|clear] · audit: [N] [ACTION] · review: [JOB]",
    )
    @app_commands.choices(action=[app_commands.Choice(name=a, value=a) for a in ("status", "role", "audit", "review")])
    async def admin(interaction: discord.Interaction, action: str = "status", args: str = "") -> None:
        await _chat(interaction).on_command(interaction, text=f"/admin {action} {args}")

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

    return [
        imagine,
        upscale,
        vary,
        zoom,
        pan,
        inpaint,
        facefix,
        control,
        edit,
        animate,
        video2video,
        deforum,
        frames_,
        describe_,
        enhance,
        styles,
        style,
        wildcard,
        asset_command("lora"),
        loras,
        asset_command("embedding"),
        embeddings,
        train,
        help_,
        models_,
        model,
        settings_,
        queue_,
        cancel,
        history,
        info,
        me,
        place,
        link,
        unlink,
        admin,
        remix,
        describe_message,
        control_message,
    ]
