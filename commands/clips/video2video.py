"""/video2video: a clip restyled by a prompt, as a reply to a video, a GIF or a clip (or with one
attached).

    /video2video a watercolor fox --strength 0.6

A reply to a clip with a plain prompt (or /imagine) comes here too
(`commands.pictures.imagine.imagine_or_restyle`)."""

from __future__ import annotations

import dataclasses

from commands.clips.clip_options import (
    CAMERA,
    CLIP_DRAWING,
    FPS,
    LOOP,
    MOTION,
    clip_job,
    clip_size,
    context_windows,
    drawing_options,
    frames_option,
    model_entry,
    motion_and_cameras,
    parse_clip_flags,
    raise_problems,
    steps_problems,
)
from commands.frame.context import Context
from commands.frame.declare import Option, read_value
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs.options import STRENGTH as STRENGTH_OF_A_PICTURE
from commands.jobs.options import ImagineOptions
from commands.jobs.sources import ClipSource, find_clip, require_clip
from commands.jobs.submit import submit
from generation.animation.keyframes import parse_prompt_schedule
from generation.models.families import family
from generation.spec import ClipSpec, GenerationSpec

PROMPT = Option("prompt", "text", "What to make of it (and --options)", positional=True, rest=True, required=True)
VIDEO = Option("video", "file", "An MP4, WebM, MOV or GIF (or reply to a clip)")
FRAMES = frames_option(1, lambda s: s.max_frames, lambda s: s.max_frames)
STRENGTH = dataclasses.replace(STRENGTH_OF_A_PICTURE, default=lambda s: s.video2video_strength, applies="")
OPTIONS: tuple[Option, ...] = (PROMPT, VIDEO, STRENGTH, FRAMES, FPS, LOOP, MOTION, CAMERA, *CLIP_DRAWING)


async def video2video(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags, values, clip_values = parse_clip_flags(request, args, OPTIONS)
    problems: list[str] = []
    # Not given: the source clip's own fps, all its frames (up to the limit), and its own loop.
    fps = read_value(FPS, clip_values, ctx.settings, problems, flags.written) if "fps" in clip_values else None
    frames = read_value(FRAMES, clip_values, ctx.settings, problems, flags.written) if "frames" in clip_values else None
    loop = read_value(LOOP, clip_values, ctx.settings, problems, flags.written) if "loop" in clip_values else None
    opts = drawing_options(ctx, flags, values, problems)
    source = require_clip(await find_clip(ctx, request, fps=fps, max_frames=frames or ctx.settings.max_frames), "/video2video")
    return await queue_video2video(ctx, request, source, opts, clip_values, frames=frames, fps=fps, loop=loop)


async def queue_video2video(
    ctx: Context,
    request: Request,
    source: ClipSource,
    opts: ImagineOptions,
    clip_values: dict[str, str],
    *,
    frames: int | None = None,
    fps: float | None = None,
    loop: bool | None = None,
) -> list[Reply]:
    """A video2video job on `source` (the command, a reply to a clip, and the Remix button)."""
    chosen = source.frames[: min(frames or len(source.frames), ctx.settings.max_frames)]
    if not opts.prompt and source.base is None:
        raise UserError("Say what to make of the clip, e.g. `/video2video a watercolor painting` as a reply to it.")
    base = source.base
    notes_now = list(source.notes)
    if len(chosen) < len(source.frames):
        notes_now.append(f"The clip has {len(source.frames)} frames; I restyle the first {len(chosen)}.")

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        model = model_entry(ctx, spec)
        why = family(model.family).why_not("video2video")
        if why is not None:
            raise UserError(f"Video to video can't use `{model.display_name}` ({model.family_label}): {why}.")
        values = dict(clip_values)
        if base is not None and base.clip is not None and "motion" not in values and base.clip.motion:
            values.setdefault("motion", base.clip.motion)
        motion, cameras = motion_and_cameras(ctx, model, values)
        size = clip_size(ctx, spec, opts, notes, init=chosen[0])
        strength = opts.strength if opts.strength is not None else ctx.settings.video2video_strength
        raise_problems(steps_problems(spec.steps, [strength]))
        prompt = spec.prompt
        if base is not None and not opts.prompt and base.kind == "deforum":  # a prompt schedule: its first prompt
            prompt = parse_prompt_schedule(base.prompt)[0][1]
        rate = round(fps or source.fps or ctx.settings.default_fps)
        clip = ClipSpec(
            frames=len(chosen),
            fps=max(1, min(rate, ctx.settings.max_fps)),
            motion=motion,
            cameras=cameras,
            loop=bool(loop if loop is not None else base is not None and base.clip is not None and base.clip.loop),
            source=tuple(frame.blob_key for frame in chosen),
            **context_windows(ctx, len(chosen), notes),
        )
        return clip_job(spec, "video2video", clip, size, strength=strength, prompt=prompt, operation="Video to video")

    return await submit(ctx, request, opts, base=base, parent=source.parent, shape=shape, extra_blobs=source.uploads, notes=notes_now)
