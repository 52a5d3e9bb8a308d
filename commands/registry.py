"""Every command, declared once: its name, other spellings, handler, a line for the menus, how to
write it, where the reference explains it, and its options.

From this one table come the dispatch (`commands.service`), Telegram's command menu, Discord's
slash commands with their typed options (`bot.discord.slash`), `/help COMMAND`, the list of
commands in an unknown command's reply, and docs/commands.md (`python -m commands.command_docs`;
a test fails when the page is stale, and when an option is missing from any of them).

A new command is one `Command(...)` here. A new option is one `Option(...)` (`commands.frame.declare`)
in the tuple its command lists, plus its use in the handler (`read_value`, or the drawing
options' checker): the parser, the checks, help, Discord and the docs follow. Options that the
handler reads and the registry lists live beside the handler, so both see the same tuple; the
options of commands whose handlers read words in order (`/style save NAME`) are declared here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from commands.account.info import info
from commands.account.queue import HISTORY_DEFAULT, HISTORY_MAX, cancel, history, queue_status
from commands.account.settings import OPTIONS as SETTINGS_OPTIONS
from commands.account.settings import settings
from commands.clips.animate import OPTIONS as ANIMATE_OPTIONS
from commands.clips.animate import animate
from commands.clips.deforum import OPTIONS as DEFORUM_OPTIONS
from commands.clips.deforum import deforum
from commands.clips.frames import frames_command
from commands.clips.results import FRAME_FORMATS
from commands.clips.video import OPTIONS as VIDEO_OPTIONS
from commands.clips.video import video_command
from commands.clips.video2video import OPTIONS as VIDEO2VIDEO_OPTIONS
from commands.clips.video2video import video2video
from commands.explore.compare import OPTIONS as COMPARE_OPTIONS
from commands.explore.compare import compare_command
from commands.frame.context import Context
from commands.frame.declare import Option
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.help import help_text
from commands.library.assets import (
    embedding_command,
    hypernetwork_command,
    list_embeddings,
    list_hypernetworks,
    list_loras,
    lora_command,
)
from commands.library.models import OPTIONS as MODEL_OPTIONS
from commands.library.models import list_models, model_command
from commands.library.moodboards import OPTIONS as MOODBOARD_OPTIONS
from commands.library.moodboards import list_moodboards, moodboard_command
from commands.library.styles import OPTIONS as STYLE_OPTIONS
from commands.library.styles import list_styles, style_command
from commands.library.wildcard import wildcard_command
from commands.people.admin import admin_command
from commands.people.linking import link_command, unlink_command
from commands.people.me import me_command
from commands.people.place import OPTIONS as PLACE_OPTIONS
from commands.people.place import place_command
from commands.pictures.blend import MAX_PICTURES as BLEND_MAX
from commands.pictures.blend import OPTIONS as BLEND_OPTIONS
from commands.pictures.blend import blend_command
from commands.pictures.control import CONTROL_OPTIONS, control_command
from commands.pictures.describe import describe
from commands.pictures.detail import OPTIONS as DETAIL_OPTIONS
from commands.pictures.detail import detail_command
from commands.pictures.edit import OPTIONS as EDIT_OPTIONS
from commands.pictures.edit import edit_command
from commands.pictures.edits import (
    FACEFIX_OPTIONS,
    PAN_OPTIONS,
    UPSCALE_OPTIONS,
    VARY_OPTIONS,
    ZOOM_OPTIONS,
    facefix_command,
    pan_command,
    upscale_command,
    vary_command,
    zoom_command,
)
from commands.pictures.enhance import OPTIONS as ENHANCE_OPTIONS
from commands.pictures.enhance import enhance
from commands.pictures.imagine import OPTIONS as IMAGINE_OPTIONS
from commands.pictures.imagine import imagine_or_restyle
from commands.pictures.inpaint import OPTIONS as INPAINT_OPTIONS
from commands.pictures.inpaint import inpaint_command
from commands.training.train import OPTIONS as TRAIN_OPTIONS
from commands.training.train import train_command
from config import Settings

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
    options: tuple[Option, ...] = ()  # what it takes, each declared once (commands.frame.declare)


# --- options of the commands whose handlers read words in order ------------------------------------

JOB = Option("job", "int", "The job number", bounds=(1, 2**31 - 1), positional=True)
WILDCARD_OPTIONS: tuple[Option, ...] = (
    Option("action", "choice", "list, show, add or delete", choices=("list", "show", "add", "delete"), default="list", positional=True),
    Option("name", "text", "The list's name (used as __name__)", positional=True),
    Option("lines", "text", "With add: the options, separated by |", positional=True, rest=True),
    Option("file", "file", "With add: a .txt file, one option per line"),
)


def asset_options(kind: str) -> tuple[Option, ...]:
    actions = ("upload", "download", "info", "delete", "rename", "share", "unshare")
    return (
        Option("action", "choice", "What to do (upload: with the file attached)", choices=actions, positional=True, required=True),
        Option("name", "text", f"The {kind}'s name (upload: default from the file name)", positional=True),
        Option("new_name", "text", "With rename: the new name", positional=True),
        Option(
            "file",
            "file",
            "With upload: the .pt (A1111's) or .safetensors file" if kind == "hypernetwork" else "With upload: the .safetensors file",
        ),
    )


async def _help(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/help`: the whole reference; `/help COMMAND`: that command's forms and what it does."""
    name = args.strip().lstrip("/").split(maxsplit=1)[0].lower() if args.strip() else ""
    if not name:
        return [Reply(help_text(ctx))]
    command = find(name)
    if command is None:
        raise UserError(f"I don't know `/{name}`. Commands: {command_list()}.")
    return [Reply(command_help(command, ctx.settings))]


# Order: how often people need them (the menus show them in this order).
COMMANDS: tuple[Command, ...] = (
    Command(
        "imagine",
        imagine_or_restyle,
        "Draw a picture: /imagine a red fox --ar 3:2",
        ("/imagine <prompt> [options]",),
        "guide.md#commands",
        options=IMAGINE_OPTIONS,
    ),
    Command(
        "help",
        _help,
        "Commands, options and limits",
        ("/help", "/help COMMAND"),
        "guide.md#commands",
        aliases=("start",),
        options=(Option("command", "text", "One command to explain (default: all of them)", positional=True),),
    ),
    Command(
        "upscale",
        upscale_command,
        "Reply to a picture: /upscale 4 [--method esrgan]",
        ("/upscale [2|4] [--method lanczos|esrgan|hires|latent] [--upscaler NAME]",),
        "guide.md#commands",
        options=UPSCALE_OPTIONS,
    ),
    Command(
        "vary",
        vary_command,
        "Reply to a picture: /vary subtle|strong [prompt]",
        ("/vary [subtle|strong] [new prompt]",),
        "guide.md#commands",
        options=VARY_OPTIONS,
    ),
    Command(
        "zoom",
        zoom_command,
        "Reply to a picture: /zoom 1.5|2 (zoom out)",
        ("/zoom [1.5|2] [prompt]",),
        "guide.md#commands",
        options=ZOOM_OPTIONS,
    ),
    Command(
        "pan",
        pan_command,
        "Reply to a picture: /pan left|right|up|down",
        ("/pan left|right|up|down [prompt]",),
        "guide.md#commands",
        options=PAN_OPTIONS,
    ),
    Command(
        "inpaint",
        inpaint_command,
        "Reply to a picture: /inpaint a red hat --box 10%,0%,50%,40%",
        ("/inpaint <prompt> --box x,y,w,h", "/inpaint <prompt> with a mask attached", "/inpaint <prompt> --select <words>"),
        "guide.md#commands",
        options=INPAINT_OPTIONS,
    ),
    Command(
        "facefix",
        facefix_command,
        "Reply to a picture: restore its faces",
        ("/facefix [--model NAME] [--fidelity 0–1]",),
        "guide.md#commands",
        options=FACEFIX_OPTIONS,
    ),
    Command(
        "detail",
        detail_command,
        "Reply to a picture: repaint its faces, hands or people at full resolution (ADetailer)",
        ("/detail [face|hand|person,…] [prompt] [--detail-strength 0.4]",),
        "guide.md#commands",
        options=DETAIL_OPTIONS,
    ),
    Command(
        "control",
        control_command,
        "Reply to a picture: /control canny|depth|openpose|... <prompt>",
        ("/control TYPE <prompt> [options]", "/control qr <text> <prompt>"),
        "guide.md#commands",
        options=CONTROL_OPTIONS,
    ),
    Command(
        "edit",
        edit_command,
        "Reply to a picture: /edit make it winter (attach more pictures as references)",
        (
            "/edit <instruction> [--model M] [--image-cfg X]",
            "/edit <instruction> --box x,y,w,h",
            "/edit <instruction> with a mask attached",
            "/edit <instruction> --select <words>",
        ),
        "guide.md#commands",
        options=EDIT_OPTIONS,
    ),
    Command(
        "blend",
        blend_command,
        f"Blend 2–{BLEND_MAX} pictures into one: /blend with them attached",
        ("/blend [prompt] [--images ID,ID] [--ow N] [options]",),
        "guide.md#commands",
        options=BLEND_OPTIONS,
    ),
    Command(
        "compare",
        compare_command,
        "One prompt over a grid of settings (X/Y/Z plot): /compare a fox --x steps=10,20 --y cfg=4,7",
        ("/compare <prompt> --x NAME=V1,V2,... [--y NAME=...] [--z NAME=...] [options]",),
        "guide.md#comparisons-permutations-and-chaos",
        options=COMPARE_OPTIONS,
    ),
    Command(
        "video",
        video_command,
        "A clip on a video model: /video a fox running (reply to a picture: animate it)",
        (
            "/video <prompt> [--seconds S|--frames N] [--motion low|high] [--loop] [options]",
            "/video <what moves> (as a reply to a picture, or with one attached) [--end ID]",
            "/video <what happens next> --extend (as a reply to a clip)",
        ),
        "guide.md#clips",
        options=VIDEO_OPTIONS,
    ),
    Command(
        "animate",
        animate,
        "A clip from a prompt: /animate a fox running --frames 16",
        ("/animate <prompt> [--frames N] [--fps N] [--motion NAME] [--camera NAME[:W]] [--loop] [options]",),
        "guide.md#clips",
        options=ANIMATE_OPTIONS,
    ),
    Command(
        "video2video",
        video2video,
        "Reply to a video, GIF or clip: /video2video <prompt>",
        ("/video2video <prompt> [--strength X] [--fps N] [--frames N]",),
        "guide.md#clips",
        aliases=("v2v",),
        options=VIDEO2VIDEO_OPTIONS,
    ),
    Command(
        "deforum",
        deforum,
        'Deforum zoom: /deforum "0: a forest, 24: a city" --zoom 1.02',
        ('/deforum "0: a forest, 24: a city" [--frames N] [--zoom S] [--angle S] [--tx S] [--ty S] [--strength S]',),
        "guide.md#clips",
        options=DEFORUM_OPTIONS,
    ),
    Command(
        "frames",
        frames_command,
        "A clip's frames as PNGs: /frames <job> [png|gif|mp4]",
        ("/frames [job] [png|gif|mp4]",),
        "guide.md#clips",
        options=(
            JOB,
            Option("format", "choice", "png (a ZIP of the frames), gif or mp4", choices=FRAME_FORMATS, default="png", positional=True),
        ),
    ),
    Command(
        "describe",
        describe,
        "Reply to a picture: the prompt behind it",
        ("/describe",),
        "guide.md#commands",
        options=(Option("image", "file", "The picture (a PNG keeps its settings), or reply to one"),),
    ),
    Command(
        "enhance",
        enhance,
        "Short prompt to detailed prompts: /enhance a fox --n 3",
        ("/enhance <a few words> [--n 1–4] [--seed N]",),
        "guide.md#commands",
        options=ENHANCE_OPTIONS,
    ),
    Command(
        "styles",
        list_styles,
        "Prompt styles for --style NAME",
        ("/styles [NAME]",),
        "guide.md#commands",
        options=(Option("name", "text", "One style to show in full (default: all)", positional=True),),
    ),
    Command(
        "style",
        style_command,
        "Your styles: /style save NAME {prompt}, ... --no ...",
        ("/style save NAME <template> [--no <negative>]", "/style delete NAME"),
        "guide.md#commands",
        options=STYLE_OPTIONS,
    ),
    Command(
        "wildcard",
        wildcard_command,
        "Wildcard lists for __NAME__: /wildcard add NAME a | b",
        ("/wildcard list", "/wildcard show NAME", "/wildcard add NAME a | b | c", "/wildcard delete NAME"),
        "guide.md#commands",
        aliases=("wildcards",),
        options=WILDCARD_OPTIONS,
    ),
    Command(
        "moodboard",
        moodboard_command,
        "Pictures for --sref NAME: /moodboard save NAME (attached)",
        (
            "/moodboard save|add NAME [--images ID,ID]",
            "/moodboard show|delete|share|unshare NAME",
            "/moodboard remove NAME N",
        ),
        "guide.md#commands",
        options=MOODBOARD_OPTIONS,
    ),
    Command("moodboards", list_moodboards, "Your moodboards and the shared ones", ("/moodboards",), "guide.md#commands"),
    Command(
        "lora",
        lora_command,
        "Upload a LoRA (.safetensors attached): /lora upload NAME",
        ("/lora upload [NAME]", "/lora info|delete|share|unshare|download NAME", "/lora rename OLD NEW"),
        "guide.md#commands",
        options=asset_options("lora"),
    ),
    Command("loras", list_loras, "Your LoRAs and the shared ones", ("/loras",), "guide.md#commands"),
    Command(
        "embedding",
        embedding_command,
        "Upload an embedding: /embedding upload NAME",
        ("/embedding upload [NAME]", "/embedding info|delete|share|unshare|download NAME", "/embedding rename OLD NEW"),
        "guide.md#commands",
        options=asset_options("embedding"),
    ),
    Command("embeddings", list_embeddings, "Your embeddings and the shared ones", ("/embeddings",), "guide.md#commands"),
    Command(
        "hypernetwork",
        hypernetwork_command,
        "Upload an A1111 hypernetwork (.pt attached): /hypernetwork upload NAME",
        ("/hypernetwork upload [NAME]", "/hypernetwork info|delete|share|unshare|download NAME", "/hypernetwork rename OLD NEW"),
        "guide.md#commands",
        options=asset_options("hypernetwork"),
    ),
    Command("hypernetworks", list_hypernetworks, "Your hypernetworks and the shared ones", ("/hypernetworks",), "guide.md#commands"),
    Command(
        "train",
        train_command,
        "Train a LoRA on your pictures: /train lora NAME (3+ attached)",
        ("/train lora|loha|lokr|dreambooth|embedding|hypernetwork NAME [options]", "/train preview METHOD NAME [options]", "/train status"),
        "guide.md#training",
        options=TRAIN_OPTIONS,
    ),
    Command("models", list_models, "The models and their architectures", ("/models",), "guide.md#commands"),
    Command(
        "model",
        model_command,
        "Your default model: /model NAME (admins: /model add|remove)",
        (
            "/model NAME",
            "/model add NAME SOURCE [--config C] [--arch sd1|sd2|sdxl] [--size N] [--clip-skip N] [--vae V]",
            "/model remove NAME [--force]",
        ),
        "deploy.md#adding-models-in-chat",
        options=MODEL_OPTIONS,
    ),
    Command(
        "settings",
        settings,
        "Your defaults: /settings --steps 30",
        ("/settings", "/settings [options]", "/settings reset [NAME]"),
        "guide.md#commands",
        options=SETTINGS_OPTIONS,
    ),
    Command("queue", queue_status, "Your jobs and the queue", ("/queue",), "guide.md#commands"),
    Command(
        "cancel",
        cancel,
        "Cancel a job: /cancel [job|all]",
        ("/cancel [job|all]",),
        "guide.md#commands",
        options=(Option("job", "text", "A job number, or all", default="your newest job", positional=True),),
    ),
    Command(
        "history",
        history,
        "Your recent jobs",
        ("/history [n]",),
        "guide.md#commands",
        options=(Option("count", "int", "How many jobs", bounds=(1, HISTORY_MAX), default=HISTORY_DEFAULT, positional=True),),
    ),
    Command(
        "info",
        info,
        "A job's parameters: /info <job>",
        ("/info <job>", "/info (as a reply to a picture)"),
        "guide.md#commands",
        options=(JOB,),
    ),
    Command("me", me_command, "Your role, linked accounts and quotas", ("/me",), "guide.md#people-roles-and-quotas"),
    Command(
        "place",
        place_command,
        "This chat's settings: safety policy, refused terms, models (its admins)",
        ("/place", "/place --nsfw allow|spoiler|blur|block [--threshold X] [--terms T] [--models M] [--negative N]", "/place reset [NAME]"),
        "guide.md#people-roles-and-quotas",
        options=PLACE_OPTIONS,
    ),
    Command(
        "link",
        link_command,
        "One account on Discord and Telegram: /link, then /link CODE",
        ("/link", "/link CODE"),
        "guide.md#people-roles-and-quotas",
        options=(Option("code", "text", "The code /link gave you on your other platform (empty: a new code)", positional=True),),
    ),
    Command("unlink", unlink_command, "Take this identity out of its linked account", ("/unlink",), "guide.md#people-roles-and-quotas"),
    Command(
        "admin",
        admin_command,
        "Admins: /admin status|role|audit|review",
        ("/admin status", "/admin role WHO [ROLE|clear]", "/admin audit [N] [ACTION]", "/admin review [JOB]"),
        "guide.md#people-roles-and-quotas",
        options=(
            Option(
                "action",
                "choice",
                "status, role, audit or review",
                choices=("status", "role", "audit", "review"),
                default="status",
                positional=True,
            ),
            Option("args", "text", "role: WHO [ROLE|clear] · audit: [N] [ACTION] · review: [JOB]", positional=True, rest=True),
        ),
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


def command_help(command: Command, settings: Settings) -> str:
    """What `/help COMMAND` says: the forms, what it does, its options with their bounds and
    defaults (this installation's), other names, where to read more."""
    lines = [f"**/{command.name}** — {command.summary}", *command.usage]
    if command.options:
        lines.append("Options:")
        lines += [f"• {option.line(settings)}" for option in command.options]
    if command.aliases:
        lines.append("Also: " + ", ".join(f"/{alias}" for alias in command.aliases))
    lines.append("`/help` has every command with this installation's options and limits.")
    return "\n".join(lines)
