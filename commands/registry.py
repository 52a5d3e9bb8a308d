"""Every command, declared once: its name, other spellings, handler, a line for the menus, how to
write it, and where the reference explains it.

From this one table come the dispatch (`commands.service`), Telegram's command menu, the
descriptions of Discord's slash commands, `/help COMMAND`, the list of commands in an unknown
command's reply, and docs/commands.md (`python -m commands.command_docs`; a test fails when the
page is stale). A new command is one `Command(...)` here. Its options are still declared by
their commands (`commands.options` for the drawing ones) and the Discord interface; they move
here next, one declaration each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from commands import account, animate, assets, clips, edits, linking, me, models, places
from commands.admin import admin_command
from commands.context import Context
from commands.control import control_command, edit_command
from commands.describe import describe
from commands.enhance import enhance
from commands.errors import UserError
from commands.help import help_text
from commands.inpaint import inpaint_command
from commands.styles import list_styles, style_command
from commands.training import train_command
from commands.types import Reply, Request
from commands.wildcard import wildcard_command

Handler = Callable[[Context, Request, str], Awaitable[list[Reply]]]
MENU_LIMIT = 100  # Discord's slash-command descriptions (Telegram's menu takes 256)


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    summary: str  # one line for the platforms' menus and the index: what it does, with an example
    usage: tuple[str, ...]  # how to write it, one form a line
    reference: str  # where the reference explains it in full: a page of docs/ and a heading's anchor
    aliases: tuple[str, ...] = ()  # other names that run it (`/v2v`); not in the menus


async def _help(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/help`: the whole reference; `/help COMMAND`: that command's forms and what it does."""
    name = args.strip().lstrip("/").split(maxsplit=1)[0].lower() if args.strip() else ""
    if not name:
        return [Reply(help_text(ctx))]
    command = find(name)
    if command is None:
        raise UserError(f"I don't know `/{name}`. Commands: {command_list()}.")
    return [Reply(command_help(command))]


# Order: how often people need them (the menus show them in this order).
COMMANDS: tuple[Command, ...] = (
    Command(
        "imagine",
        animate.imagine_or_restyle,
        "Draw a picture: /imagine a red fox --ar 3:2",
        ("/imagine <prompt> [options]",),
        "guide.md#commands",
    ),
    Command("help", _help, "Commands, options and limits", ("/help", "/help COMMAND"), "guide.md#commands", aliases=("start",)),
    Command(
        "upscale",
        edits.upscale_command,
        "Reply to a picture: /upscale 4 [--method esrgan]",
        ("/upscale [2|4] [--method lanczos|esrgan|hires|latent] [--upscaler NAME]",),
        "guide.md#commands",
    ),
    Command(
        "vary",
        edits.vary_command,
        "Reply to a picture: /vary subtle|strong [prompt]",
        ("/vary [subtle|strong] [new prompt]",),
        "guide.md#commands",
    ),
    Command("zoom", edits.zoom_command, "Reply to a picture: /zoom 1.5|2 (zoom out)", ("/zoom [1.5|2] [prompt]",), "guide.md#commands"),
    Command(
        "pan", edits.pan_command, "Reply to a picture: /pan left|right|up|down", ("/pan left|right|up|down [prompt]",), "guide.md#commands"
    ),
    Command(
        "inpaint",
        inpaint_command,
        "Reply to a picture: /inpaint a red hat --box 10%,0%,50%,40%",
        ("/inpaint <prompt> --box x,y,w,h", "/inpaint <prompt> with a mask attached", "/inpaint <prompt> --select <words>"),
        "guide.md#commands",
    ),
    Command("facefix", edits.facefix_command, "Reply to a picture: restore its faces", ("/facefix [--model NAME]",), "guide.md#commands"),
    Command(
        "control",
        control_command,
        "Reply to a picture: /control canny|depth|openpose|... <prompt>",
        ("/control TYPE <prompt> [options]", "/control qr <text> <prompt>"),
        "guide.md#commands",
    ),
    Command(
        "edit",
        edit_command,
        "Reply to a picture: /edit make it winter (Instruct Pix2Pix)",
        ("/edit <instruction> [--image-cfg X]",),
        "guide.md#commands",
    ),
    Command(
        "animate",
        animate.animate,
        "A clip from a prompt: /animate a fox running --frames 16",
        ("/animate <prompt> [--frames N] [--fps N] [--motion NAME] [--camera NAME[:W]] [--loop] [options]",),
        "guide.md#clips",
    ),
    Command(
        "video2video",
        animate.video2video,
        "Reply to a video, GIF or clip: /video2video <prompt>",
        ("/video2video <prompt> [--strength X] [--fps N] [--frames N]",),
        "guide.md#clips",
        aliases=("v2v",),
    ),
    Command(
        "deforum",
        animate.deforum,
        'Deforum zoom: /deforum "0: a forest, 24: a city" --zoom 1.02',
        ('/deforum "0: a forest, 24: a city" [--frames N] [--zoom S] [--angle S] [--tx S] [--ty S] [--strength S]',),
        "guide.md#clips",
    ),
    Command(
        "frames",
        clips.frames_command,
        "A clip's frames as PNGs: /frames <job> [png|gif|mp4]",
        ("/frames [job] [png|gif|mp4]",),
        "guide.md#clips",
    ),
    Command("describe", describe, "Reply to a picture: the prompt behind it", ("/describe",), "guide.md#commands"),
    Command(
        "enhance",
        enhance,
        "Short prompt to detailed prompts: /enhance a fox --n 3",
        ("/enhance <a few words> [--n 1–4] [--seed N]",),
        "guide.md#commands",
    ),
    Command("styles", list_styles, "Prompt styles for --style NAME", ("/styles [NAME]",), "guide.md#commands"),
    Command(
        "style",
        style_command,
        "Your styles: /style save NAME {prompt}, ... --no ...",
        ("/style save NAME <template> [--no <negative>]", "/style delete NAME"),
        "guide.md#commands",
    ),
    Command(
        "wildcard",
        wildcard_command,
        "Wildcard lists for __NAME__: /wildcard add NAME a | b",
        ("/wildcard list", "/wildcard show NAME", "/wildcard add NAME a | b | c", "/wildcard delete NAME"),
        "guide.md#commands",
        aliases=("wildcards",),
    ),
    Command(
        "lora",
        assets.lora_command,
        "Upload a LoRA (.safetensors attached): /lora upload NAME",
        ("/lora upload [NAME]", "/lora info|delete|share|unshare|download NAME", "/lora rename OLD NEW"),
        "guide.md#commands",
    ),
    Command("loras", assets.list_loras, "Your LoRAs and the shared ones", ("/loras",), "guide.md#commands"),
    Command(
        "embedding",
        assets.embedding_command,
        "Upload an embedding: /embedding upload NAME",
        ("/embedding upload [NAME]", "/embedding info|delete|share|unshare|download NAME", "/embedding rename OLD NEW"),
        "guide.md#commands",
    ),
    Command("embeddings", assets.list_embeddings, "Your embeddings and the shared ones", ("/embeddings",), "guide.md#commands"),
    Command(
        "train",
        train_command,
        "Train a LoRA on your pictures: /train lora NAME (3+ attached)",
        ("/train lora|loha|lokr|dreambooth|embedding NAME [options]", "/train preview METHOD NAME [options]", "/train status"),
        "guide.md#training",
    ),
    Command("models", models.list_models, "The models and their architectures", ("/models",), "guide.md#commands"),
    Command(
        "model",
        models.model_command,
        "Your default model: /model NAME (admins: /model add|remove)",
        (
            "/model NAME",
            "/model add NAME SOURCE [--config C] [--arch sd1|sd2|sdxl] [--size N] [--clip-skip N] [--vae V]",
            "/model remove NAME [--force]",
        ),
        "deploy.md#adding-models-in-chat",
    ),
    Command(
        "settings",
        account.settings,
        "Your defaults: /settings --steps 30",
        ("/settings", "/settings [options]", "/settings reset [NAME]"),
        "guide.md#commands",
    ),
    Command("queue", account.queue_status, "Your jobs and the queue", ("/queue",), "guide.md#commands"),
    Command("cancel", account.cancel, "Cancel a job: /cancel [job|all]", ("/cancel [job|all]",), "guide.md#commands"),
    Command("history", account.history, "Your recent jobs", ("/history [n]",), "guide.md#commands"),
    Command(
        "info", account.info, "A job's parameters: /info <job>", ("/info <job>", "/info (as a reply to a picture)"), "guide.md#commands"
    ),
    Command("me", me.me_command, "Your role, linked accounts and quotas", ("/me",), "guide.md#people-roles-and-quotas"),
    Command(
        "place",
        places.place_command,
        "This chat's settings: safety policy, refused terms, models (its admins)",
        ("/place", "/place --nsfw allow|spoiler|blur|block [--threshold X] [--terms T] [--models M] [--negative N]", "/place reset [NAME]"),
        "guide.md#people-roles-and-quotas",
    ),
    Command(
        "link",
        linking.link_command,
        "One account on Discord and Telegram: /link, then /link CODE",
        ("/link", "/link CODE"),
        "guide.md#people-roles-and-quotas",
    ),
    Command(
        "unlink", linking.unlink_command, "Take this identity out of its linked account", ("/unlink",), "guide.md#people-roles-and-quotas"
    ),
    Command(
        "admin",
        admin_command,
        "Admins: /admin status|role|audit|review",
        ("/admin status", "/admin role WHO [ROLE|clear]", "/admin audit [N] [ACTION]", "/admin review [JOB]"),
        "guide.md#people-roles-and-quotas",
    ),
)

_BY_NAME = {name: command for command in COMMANDS for name in (command.name, *command.aliases)}


def find(name: str) -> Command | None:
    """The command called `name` (without the slash, any case), or None."""
    return _BY_NAME.get(name.lower())


def command_list() -> str:
    return ", ".join(f"/{command.name}" for command in COMMANDS)


def menu() -> list[tuple[str, str]]:
    """(name, summary) of every command, for Telegram's menu and Discord's descriptions."""
    return [(command.name, command.summary) for command in COMMANDS]


def command_help(command: Command) -> str:
    """What `/help COMMAND` says: the forms, what it does, other names, where to read more."""
    lines = [f"**/{command.name}** — {command.summary}", *command.usage]
    if command.aliases:
        lines.append("Also: " + ", ".join(f"/{alias}" for alias in command.aliases))
    lines.append("`/help` has every command with this installation's options and limits.")
    return "\n".join(lines)
