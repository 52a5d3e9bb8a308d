"""/imagine, remix by reply, and the image a request starts from.

Where the init image comes from, first match wins:
1. an image attached to the request (`/imagine ...` as a photo caption, or with an attachment);
2. the bot's image the request replies to (resolved through the message refs, so it works after
   a restart); the remix inherits that job's settings unless the user overrides them (a control
   map the bot showed is a plain picture: nothing to inherit);
3. an image in the replied-to message that the adapter handed over (a person's photo).
"""

from __future__ import annotations

from commands.clips.video2video import video2video
from commands.frame.context import Context
from commands.frame.declare import Option, read_flags
from commands.frame.types import Reply, Request
from commands.jobs.options import IMAGINE_OPTIONS, ImagineOptions, read_options
from commands.jobs.sources import find_source, replied_clip
from commands.jobs.submit import submit

PROMPT = Option("prompt", "text", "What to draw (--options work here too)", positional=True, rest=True, required=True)
IMAGE = Option("image", "file", "Start from this picture (img2img)")
OPTIONS: tuple[Option, ...] = (PROMPT, IMAGE, *IMAGINE_OPTIONS)


async def imagine(ctx: Context, request: Request, args: str) -> list[Reply]:
    """/imagine from text, or from a platform's typed options (Discord): the same checks, with
    messages that name each option as the person wrote it (`steps:` or `--steps`)."""
    flags = read_flags(request.options, args, OPTIONS)
    opts = read_options(flags.values, ctx.settings, ctx.registry, written=flags.written, prompt=flags.text, problems=flags.problems)
    return await _submit_with_source(ctx, request, opts)


async def _submit_with_source(ctx: Context, request: Request, opts: ImagineOptions) -> list[Reply]:
    source = await find_source(ctx, request)
    return await submit(ctx, request, opts, init=source.init, upload_size=source.upload_size, base=source.base, parent=source.parent)


async def imagine_or_restyle(ctx: Context, request: Request, args: str) -> list[Reply]:
    """/imagine and plain text: a prompt, except that a reply to a clip restyles the clip
    (/video2video with the prompt), as a reply to a picture remixes the picture."""
    if request.reply_to and not request.attachments and await replied_clip(ctx, request) is not None:
        return await video2video(ctx, request, args)
    return await imagine(ctx, request, args)
