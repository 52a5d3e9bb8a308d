"""Clips in chat: the result (a video that plays inline, its first frame as the poster), its
buttons, and `/frames`.

Buttons under a clip (ids as in `commands.jobs.render`: stable, resolved through the message refs):
- Reroll: the same clip job with a new seed;
- Longer: the clip continued from its last frame (`ClipSpec.extend`): as many new frames as the
  clip drew, up to SDBOT_MAX_CLIP_FRAMES in all; a Deforum clip goes on along its schedules;
- Upscale 2x: every frame upscaled (esrgan when an upscaler is configured, else lanczos), the
  same clip at twice the size;
- Remix: the clip restyled by video2video with its own prompt and a new seed (a reply to the clip
  with a new prompt restyles it with that prompt).

Under a video model's clip (/video, Animate: `commands.clips.video`): Extend (it goes on from its
last frame with its prompt; `/video <what happens next> --extend` as a reply steers it), Reroll,
Loop (drawn again to loop; not on a clip that loops) and Upscale 2x.

`/frames 12 [png|gif|mp4]` (or `/frames` as a reply to a clip) sends the clip's frames as a ZIP of
PNGs (each with its parameters), or its GIF, or its MP4, as a document.
"""

from __future__ import annotations

from commands.clips.video import extend_clip, loop_clip
from commands.clips.video2video import queue_video2video
from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.types import ImageFile, MessageTarget, Reply, Request, VideoFile
from commands.jobs import job_view, render
from commands.jobs.job_view import clip_of
from commands.jobs.options import ImagineOptions, new_seed
from commands.jobs.sources import clip_of_job
from commands.jobs.submit import queue_spec
from generation.spec import GenerationSpec
from storage.tables import Job

FRAME_FORMATS = ("png", "gif", "mp4")


def clip_reply(ctx: Context, job: Job) -> Reply:
    """A clip job's result: the MP4 (adapters fit it to their limit), the first frame as poster."""
    info = clip_of(job)
    assert info is not None, f"job {job.id} is no clip"
    frames = tuple(ctx.blobs.path(output.blob_key) for output in job.outputs)
    first = job.outputs[0]
    video = VideoFile(
        mp4=ctx.blobs.path(info.mp4),
        gif=ctx.blobs.path(info.gif) if info.gif else None,
        width=info.width,
        height=info.height,
        fps=info.fps,
        frames=frames,
        loop=info.loop,
    )
    poster = ImageFile(frames[0], first.width, first.height, first.seed, 0)
    return Reply(
        render.result_text(job),
        kind="result",
        images=(poster,),
        video=video,
        actions=render.actions_for(job, "result", None),
        job_id=job.id,
        target=MessageTarget(job.id, None, "result"),
    )


async def press(ctx: Context, request: Request, job: Job, verb: str) -> list[Reply]:
    spec = job_view.spec_of(job)
    assert spec.clip is not None
    parent = (job.id, None)
    if verb == "reroll":
        return await queue_spec(ctx, request, spec.evolve(seed=new_seed()), parent=parent)
    if verb == "remix":
        return await queue_video2video(ctx, request, clip_of_job(job), ImagineOptions(), {})
    if verb == "longer":
        return await queue_spec(ctx, request, longer_spec(ctx, job, spec), parent=parent)
    if verb == "clipup":
        return await queue_spec(ctx, request, upscaled_spec(ctx, job, spec), parent=parent)
    if verb == "extend":
        return await extend_clip(ctx, request, job)
    if verb == "loop":
        return await loop_clip(ctx, request, job)
    raise UserError("That button isn't available any more.")


def longer_spec(ctx: Context, job: Job, spec: GenerationSpec) -> GenerationSpec:
    """The clip continued from its last frame. A video2video clip goes on as an animation of it
    (its source video has ended)."""
    assert spec.clip is not None
    so_far = tuple(output.blob_key for output in job.outputs)
    limit = ctx.settings.max_clip_frames
    adding = min(spec.clip.frames, limit - len(so_far))
    if adding < 1:
        raise UserError(f"This clip has {len(so_far)} frames, the most a clip may have here ({limit}).")
    kind = "deforum" if spec.kind == "deforum" else "animate"
    clip = spec.clip.evolve(frames=adding, source=so_far, extend=True)
    strength = spec.strength if spec.strength is not None else ctx.settings.video2video_strength
    return spec.evolve(kind=kind, clip=clip, strength=strength, operation="Longer")


def upscaled_spec(ctx: Context, job: Job, spec: GenerationSpec) -> GenerationSpec:
    assert spec.clip is not None
    s = ctx.settings
    width, height = spec.width * 2, spec.height * 2
    if width * height > s.max_upscale_pixels:
        raise UserError(
            f"Upscaling {spec.width}x{spec.height} by 2 gives {width}x{height}, over the limit of {s.max_upscale_pixels:,} pixels."
        )
    method = "esrgan" if s.upscalers and s.default_upscale_method in ("auto", "esrgan") else "lanczos"
    frames = tuple(output.blob_key for output in job.outputs)
    # a video model's first and last frame and motion are its drawing's, not the upscale's
    clip = spec.clip.evolve(frames=len(frames), source=frames, extend=False, end_image=None, motion_amount=None)
    return spec.evolve(
        kind="upscale",
        clip=clip,
        width=width,
        height=height,
        scale=2.0,
        upscale_method=method,
        upscaler=next(iter(s.upscalers)) if method == "esrgan" else None,
        strength=None,
        init_image=None,
        operation=f"Upscale 2x ({method})",
    )
