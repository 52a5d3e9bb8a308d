"""Button presses: U<i> (image i alone), V<i> (a variation of image i), Reroll (new seed), and
the edits under a single image (Upscale 2x, Vary (Subtle), Zoom Out 2x, ⬅, Face fix, ...:
`commands.pictures.edits`; Detail: `commands.pictures.detail`), and Animate (image-to-video of it on a video model:
`commands.clips.video`, shown where the registry has one), and Enhance under a draft (the picture in
full: `commands.explore.draft`).

A press names a message and an action (id or label). The message resolves to a job through the
message refs, so buttons keep working after a restart; anyone who can see the message may press,
and the new job belongs to whoever pressed.
"""

from __future__ import annotations

import dataclasses
import io

from PIL import Image

from commands.clips import results as clips
from commands.clips.video import animate_picture, video_actions_shown
from commands.explore import draft
from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.types import Action, ImageFile, MessageTarget, Reply, Request
from commands.jobs import job_view, render, safety
from commands.jobs.job_view import image_files, is_clip_job
from commands.jobs.options import ImagineOptions, InitImage
from commands.jobs.sources import Source
from commands.jobs.submit import submit
from commands.pictures import detail, edits
from commands.pictures.candidates import imagine_candidate
from commands.pictures.edit import Region, queue_instruct
from commands.training.train import train_previewed
from storage import outbox, queue
from storage.tables import Job


async def press(ctx: Context, request: Request) -> list[Reply]:
    assert request.press is not None
    async with ctx.db.transaction() as session:
        ref = await outbox.find_ref(session, request.platform, request.chat_id, request.press.message_id)
        if ref is None:
            raise UserError("I don't know that message any more, so its buttons don't work. Start again with /imagine.")
        job = await queue.get(session, ref.job_id)
        if job is None:
            raise UserError("The job behind that button is gone. Start again with /imagine.")
        actions = render.actions_for(job, ref.role, ref.output_index, animate=video_actions_shown(ctx.registry))
        if ref.role == "result" and len(job.outputs) == 1:
            # A one-image result showed U1 and V1 before it got the edit buttons; keep those working.
            actions += (Action("upscale:1", "U1"), Action("vary:1", "V1"))
    action = _match(request.press.action, actions)
    if action.id == "train" and job.kind == "train":
        return await train_previewed(ctx, request, job)
    verb, _, number = action.id.partition(":")
    index = int(number) - 1 if number else None
    spec = job_view.spec_of(job)
    if spec.clip is not None:
        return await clips.press(ctx, request, job, verb)
    if verb == "imagine" and index is not None:
        return await imagine_candidate(ctx, request, job, index)
    if verb == "upscale" and index is not None:
        async with ctx.db.transaction() as session:
            return [
                await safety.shield(ctx, session, job, single_image_reply(ctx, job, index), request.platform, request.chat_id, record=False)
            ]
    if verb == "enhance" and index is not None:  # a draft drawn in full (commands.explore.draft)
        return await draft.enhance(ctx, request, job, index)
    if verb == "animate" and index is not None:
        return await animate_picture(ctx, request, job, index)
    if verb == "vary" and index is not None:
        output = job.outputs[index]
        init = InitImage(output.blob_key, output.width, output.height)
        opts = detail.kept(ImagineOptions(strength=ctx.settings.vary_strength), spec)
        return await submit(ctx, request, opts, init=init, base=job_view.image_base(job, index), parent=(job.id, index))
    if verb == "detail" and index is not None:  # ADetailer's pass on the picture (commands.pictures.detail)
        return await detail.press(ctx, request, job, index)
    if verb in render.BUTTON_LABELS and index is not None:
        output = job.outputs[index]
        init = InitImage(output.blob_key, output.width, output.height)
        source = Source(init=init, base=job_view.image_base(job, index), parent=(job.id, index))
        edit = edits.button_edit(ctx, verb)
        if edit.kind == "img2img":  # Vary: drawn again, with the picture's ADetailer pass
            edit = dataclasses.replace(edit, opts=detail.kept(edit.opts, spec))
        return await edits.queue_edit(ctx, request, source, edit)
    if verb == "again" and index is not None and spec.kind == "instruct":
        output = job.outputs[index]
        source = Source(init=InitImage(output.blob_key, output.width, output.height), parent=(job.id, index))
        # A masked edit's result is the picture's size (pasted back through the mask): its working
        # size comes from it again, as the first time; the mask (the picture's size) still fits.
        masked = spec.mask is not None or spec.select is not None
        opts = ImagineOptions(
            prompt=spec.prompt,
            negative=spec.negative_prompt or None,
            steps=spec.steps,
            cfg=spec.cfg,
            sampler=spec.sampler,
            size=None if masked else (output.width, output.height),
        )
        # the same model (an edit model, or Instruct Pix2Pix by its image CFG), references and region
        opts = dataclasses.replace(opts, model=spec.model if spec.image_cfg is None else None)
        region = Region(spec.mask, spec.select, spec.mask_blur) if masked else None
        return await queue_instruct(ctx, request, source, opts, spec.image_cfg, spec.edit_images, region=region)
    if verb == "reroll" and spec.operation and spec.init_image is not None:
        # The same edit of the same picture, with a new seed (a /blend draws from no picture: below).
        assert spec.init_image is not None
        source = Source(init=InitImage(spec.init_image, spec.width, spec.height), base=spec, parent=(job.id, None))
        edit = edits.Edit(
            spec.kind, spec.operation or spec.kind, shape=lambda ctx, new, init, notes: {**spec.model_dump(), "seed": new.seed}
        )
        return await edits.queue_edit(ctx, request, source, edit)
    if verb == "reroll" and spec.draft is not None:  # another draft, with a new seed
        return await draft.reroll(ctx, request, job)
    if verb == "reroll":
        init = InitImage(spec.init_image, spec.width, spec.height) if spec.init_image else None
        opts = detail.kept(ImagineOptions(strength=spec.strength, size=None if init else (spec.width, spec.height)), spec)
        # A /blend is drawn from its pictures, with or without a prompt: it stays one, by name.
        keep = (lambda new, notes: new.evolve(operation=spec.operation)) if spec.operation else None
        return await submit(ctx, request, opts, init=init, base=spec, parent=(job.id, None), shape=keep)
    raise UserError(f"The `{action.label}` button isn't available here.")


async def originals(ctx: Context, platform: str, chat_id: str, message_id: str) -> Reply:
    async with ctx.db.transaction() as session:
        ref = await outbox.find_ref(session, platform, chat_id, message_id)
        job = await queue.get(session, ref.job_id) if ref is not None else None
        if job is None or not job.outputs:
            raise UserError("I don't have the pictures of that message any more. Start again with /imagine.")
        hidden = await safety.withheld(ctx, session, job, platform, chat_id)
    indexes = [out.index for out in job.outputs] if ref.output_index is None else [ref.output_index]
    kept = [i for i in indexes if i not in hidden]
    if not kept:
        raise UserError("This chat's safety policy doesn't send the original of that picture here.")
    images = image_files(ctx, job, kept)
    note = f" ({len(indexes) - len(kept)} withheld by this chat's safety policy)" if len(kept) < len(indexes) else ""
    return Reply(f"Original PNG{'s' if len(images) > 1 else ''} of job {job.id}{note}", kind="files", images=images, job_id=job.id)


def _match(wanted: str, actions: tuple[Action, ...]) -> Action:
    key = wanted.strip().lower()
    for action in actions:
        if key in (action.id.lower(), action.label.lower()):
            return action
    if not actions:
        raise UserError("That message has no buttons I can act on.")
    labels = ", ".join(action.label for action in actions)
    raise UserError(f"There's no `{wanted}` button on that message. Its buttons: {labels}.")


def tile_preview(ctx: Context, job: Job, index: int | None) -> ImageFile | None:
    """For a seamless (--tile) job: its image (or the first of a batch) tiled 2x2, as a JPEG blob
    (content-addressed, so building it again costs a write at most). None for other jobs."""
    if not job_view.spec_of(job).tile or not job.outputs:
        return None
    output = job.outputs[index or 0]
    with Image.open(ctx.blobs.path(output.blob_key)) as opened:
        image = opened.convert("RGB")
    tiled = Image.new("RGB", (image.width * 2, image.height * 2))
    for x in (0, image.width):
        for y in (0, image.height):
            tiled.paste(image, (x, y))
    buffer = io.BytesIO()
    tiled.save(buffer, format="JPEG", quality=90)
    key = ctx.blobs.put(buffer.getvalue(), "jpg")
    return ImageFile(ctx.blobs.path(key), tiled.width, tiled.height, output.seed, output.index)


def single_image_reply(ctx: Context, job: Job, index: int) -> Reply:
    return Reply(
        render.single_text(job, index),
        kind="single",
        images=image_files(ctx, job, [index]),
        actions=render.actions_for(job, "single", index, animate=video_actions_shown(ctx.registry)),
        job_id=job.id,
        target=MessageTarget(job.id, index, "single"),
        preview=tile_preview(ctx, job, index),
    )


def result_reply(ctx: Context, job: Job) -> Reply:
    if is_clip_job(job):
        return clips.clip_reply(ctx, job)
    grid = job_view.result_of(job).grid
    if grid is not None:  # /compare: its labelled grid, U<i> under it for each cell (the outputs)
        first = job.outputs[0]
        return Reply(
            render.result_text(job),
            kind="result",
            images=(ImageFile(ctx.blobs.path(grid.blob), grid.width, grid.height, first.seed, first.index),),
            actions=render.actions_for(job, "result", None),
            job_id=job.id,
            target=MessageTarget(job.id, None, "result"),
        )
    return Reply(
        render.result_text(job),
        kind="result",
        images=image_files(ctx, job),
        actions=render.actions_for(job, "result", None, animate=video_actions_shown(ctx.registry)),
        job_id=job.id,
        target=MessageTarget(job.id, None, "result"),
        preview=tile_preview(ctx, job, None),
        followups=map_replies(ctx, job),
    )


def map_replies(ctx: Context, job: Job) -> tuple[Reply, ...]:
    """A ControlNet result's control maps, one message each, that people can reply to (to draw
    from a map with `--pre none`, after editing it or not)."""
    spec = job_view.spec_of(job)
    replies = []
    for index, (picture, ref) in enumerate(zip(job_view.maps_of(job), spec.controls, strict=False)):
        image = ImageFile(ctx.blobs.path(picture.blob), picture.width, picture.height, spec.seed, index)
        text = (
            f"Control map {index + 1} of job {job.id}: {ref.preprocessor} (what the {ref.type} ControlNet followed). "
            f"Reply to it with `/control {ref.type} <prompt> --pre none` to draw from it; edit it first if you like."
        )
        replies.append(Reply(text, kind="map", images=(image,), job_id=job.id, target=MessageTarget(job.id, index, "map")))
    return tuple(replies)
