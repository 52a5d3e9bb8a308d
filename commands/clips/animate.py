"""/animate: a clip from a prompt (AnimateDiff).

    /animate a fox running --frames 16 --fps 8 --motion v3 --camera zoom-in:0.8 --loop

Like /video2video and /deforum, it takes the usual drawing options of /imagine (negative prompt, seed, steps, CFG, sampler,
model, size, clip skip, VAE, LoRAs; styles except on /deforum, whose prompt is a schedule).
Everything is checked here before anything is queued: frames and fps within their limits, the
frame size within SDBOT_MAX_CLIP_PIXELS (derived sizes are fitted, and the reply says so), a
motion adapter made for the model's architecture, camera LoRAs by name, every Deforum schedule
parsed and bounded (an error names the flag and the character), the prompt schedule too.
"""

from __future__ import annotations

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
    unquote,
)
from commands.frame.context import Context
from commands.frame.declare import Option, read_value
from commands.frame.types import Reply, Request
from commands.jobs.submit import submit
from generation.spec import ClipSpec, GenerationSpec

PROMPT = Option("prompt", "text", "What moves (and --options)", positional=True, rest=True, required=True)
FRAMES = frames_option(lambda s: s.min_frames, lambda s: s.max_frames, lambda s: s.default_frames)
OPTIONS: tuple[Option, ...] = (PROMPT, FRAMES, FPS, LOOP, MOTION, CAMERA, *CLIP_DRAWING)


async def animate(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags, values, clip_values = parse_clip_flags(request, args, OPTIONS)
    problems: list[str] = []
    frames = read_value(FRAMES, clip_values, ctx.settings, problems, flags.written)
    fps = read_value(FPS, clip_values, ctx.settings, problems, flags.written)
    loop = read_value(LOOP, clip_values, ctx.settings, problems, flags.written)
    if not unquote(flags.text):
        problems.append("Say what to animate, e.g. `/animate a fox running through snow`.")
    opts = drawing_options(ctx, flags, values, problems)

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        model = model_entry(ctx, spec)
        motion, cameras = motion_and_cameras(ctx, model, clip_values)
        size = clip_size(ctx, spec, opts, notes)
        clip = ClipSpec(frames=frames, fps=fps, motion=motion, cameras=cameras, loop=loop, **context_windows(ctx, frames, notes))
        return clip_job(spec, "animate", clip, size)

    return await submit(ctx, request, opts, shape=shape)


# --- reading options ------------------------------------------------------------------------------


# --- the job's model, motion, size ------------------------------------------------------------------
