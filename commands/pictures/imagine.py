"""/imagine, and plain text where it draws: a picture from a prompt, from a picture attached or
replied to (a remix inherits the replied job's settings unless the options say otherwise:
`commands.jobs.sources.find_source`), or, as a reply to one of the bot's clips, the clip
restyled (/video2video with the prompt).
"""

from __future__ import annotations

from commands.clips.video2video import video2video
from commands.frame.context import Context
from commands.frame.declare import Option, read_flags
from commands.frame.types import Reply, Request
from commands.jobs.options import IMAGINE_OPTIONS, ImagineOptions, read_options
from commands.jobs.sources import Source, find_references, find_source, replied_clip, takes_request_picture
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
    references = await find_references(ctx, request, opts)
    # `--sref` / `--oref` alone take the request's picture as the reference: then it is not also remixed.
    source = Source() if takes_request_picture(opts) else await find_source(ctx, request)
    return await submit(
        ctx, request, opts, init=source.init, upload_size=source.upload_size, base=source.base, parent=source.parent, references=references
    )


async def imagine_or_restyle(ctx: Context, request: Request, args: str) -> list[Reply]:
    """/imagine and plain text: a prompt, except that a reply to a clip restyles the clip
    (/video2video with the prompt), as a reply to a picture remixes the picture."""
    if request.reply_to and not request.attachments and await replied_clip(ctx, request) is not None:
        return await video2video(ctx, request, args)
    return await imagine(ctx, request, args)
