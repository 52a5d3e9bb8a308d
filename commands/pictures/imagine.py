"""/imagine, and plain text where it draws: a picture from a prompt, from a picture attached or
replied to (a remix inherits the replied job's settings unless the options say otherwise:
`commands.jobs.sources.find_source`), or, as a reply to one of the bot's clips, the clip
restyled (/video2video with the prompt). A prompt's permutations (`a {red, blue} fox`) and
`--repeat N` queue several jobs at once, all or none (commands.explore.permutations).
"""

from __future__ import annotations

from commands.clips.video2video import video2video
from commands.explore import draft
from commands.explore.permutations import check_total, permute
from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs.options import IMAGINE_OPTIONS, ImagineOptions, read_options
from commands.jobs.sources import Source, find_references, find_source, replied_clip, takes_request_picture
from commands.jobs.submit import submit, submit_many

PROMPT = Option("prompt", "text", "What to draw (--options work here too)", positional=True, rest=True, required=True)
IMAGE = Option("image", "file", "Start from this picture (img2img)")
REPEAT = Option(
    "repeat",
    "int",
    "Queue the job N times, each with its own seed (with --seed S: S + k·n); every one counts against your queue limits",
    aliases=("r",),
    bounds=lambda s: (1, s.max_request_jobs),
    default=1,
    example="3",
)
OPTIONS: tuple[Option, ...] = (PROMPT, IMAGE, *IMAGINE_OPTIONS, REPEAT)


async def imagine(ctx: Context, request: Request, args: str) -> list[Reply]:
    """/imagine from text, or from a platform's typed options (Discord): the same checks, with
    messages that name each option as the person wrote it (`steps:` or `--steps`)."""
    limit = ctx.settings.max_request_jobs
    asked = [_read(ctx, request, text) for text in permute(args, limit)]
    repeat = asked[0][1]
    if len(asked) == 1 and repeat == 1:
        return await _submit_with_source(ctx, request, asked[0][0])
    if any(one != repeat for _, one in asked):
        raise UserError("`--repeat` can't be a permutation: give one number.")
    check_total(len(asked), repeat, limit)
    options = [opts for opts, _ in asked]
    first = options[0]
    if any(opts.draft for opts in options):
        raise UserError("`--draft` draws one job at a time: leave out the `{…}` permutations and `--repeat`.")
    if any((opts.sref, opts.oref) != (first.sref, first.oref) for opts in options):
        raise UserError("`--sref` and `--oref` can't be permutations: every job of a request draws from the same references.")
    references = await find_references(ctx, request, first)
    source = Source() if takes_request_picture(first) else await find_source(ctx, request)
    return await submit_many(
        ctx,
        request,
        options,
        repeat=repeat,
        init=source.init,
        upload_size=source.upload_size,
        base=source.base,
        parent=source.parent,
        references=references,
    )


def _read(ctx: Context, request: Request, args: str) -> tuple[ImagineOptions, int]:
    """One request's checked options and its `--repeat`."""
    flags = read_flags(request.options, args, OPTIONS)
    repeat = read_value(REPEAT, flags.values, ctx.settings, flags.problems, flags.written)
    flags.values.pop(REPEAT.name, None)
    opts = read_options(flags.values, ctx.settings, ctx.registry, written=flags.written, prompt=flags.text, problems=flags.problems)
    return opts, repeat


async def _submit_with_source(ctx: Context, request: Request, opts: ImagineOptions) -> list[Reply]:
    references = await find_references(ctx, request, opts)
    # `--sref` / `--oref` alone take the request's picture as the reference: then it is not also remixed.
    source = Source() if takes_request_picture(opts) else await find_source(ctx, request)
    if opts.draft:  # the fast path at half the size, with Enhance under it (commands.explore.draft)
        return await draft.submit_draft(ctx, request, opts, source=source, references=references)
    return await submit(
        ctx, request, opts, init=source.init, upload_size=source.upload_size, base=source.base, parent=source.parent, references=references
    )


async def imagine_or_restyle(ctx: Context, request: Request, args: str) -> list[Reply]:
    """/imagine and plain text: a prompt, except that a reply to a clip restyles the clip
    (/video2video with the prompt), as a reply to a picture remixes the picture."""
    if request.reply_to and not request.attachments and await replied_clip(ctx, request) is not None:
        return await video2video(ctx, request, args)
    return await imagine(ctx, request, args)
