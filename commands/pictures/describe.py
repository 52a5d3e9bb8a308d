"""/describe: the prompt behind a picture (reverse prompting).

Reply to any picture with `/describe`, or attach one. Two ways to an answer:
1. The picture carries its generation settings (A1111, Forge, ComfyUI, NovelAI, or ours:
   `commands.pictures.metadata`). The answer comes at once, with the exact prompt and settings and an
   "Imagine this" button. For one of our own pictures whose job is in this bot's database, the
   button repeats that job exactly (same model, seed, settings and input image): the same pixels.
2. It doesn't (a photo, or a file whose metadata was stripped; Telegram strips it from photos,
   so send the PNG as a file). Then a captioning model and CLIP (SDBOT_CAPTIONER,
   SDBOT_DESCRIBE_CLIP) write up to four candidate prompts: a queued job, as it needs the GPU.
"""

from __future__ import annotations

from typing import Any

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.images import first_image
from commands.frame.types import MessageTarget, Reply, Request
from commands.jobs import job_view, render
from commands.jobs.admission import asker
from commands.jobs.options import ImagineOptions, fit_size, read_options
from commands.jobs.sources import Source, find_source
from commands.jobs.submit import store_upload, submit
from commands.pictures.metadata import ImageMetadata, read_metadata
from generation.spec import GenerationSpec
from storage import queue
from storage.results import Candidate, JobResult
from storage.tables import Job

SOURCES = {"sdbot": "this bot", "a1111": "AUTOMATIC1111 (or Forge)", "comfyui": "ComfyUI", "novelai": "NovelAI"}
DESCRIBE_CANDIDATES = 4


async def describe(ctx: Context, request: Request, args: str) -> list[Reply]:
    raw, source = await _picture(ctx, request)
    metadata = read_metadata(raw)
    if metadata is not None and metadata.prompt.strip():
        return await _answer_from_metadata(ctx, request, raw, source, metadata)
    if not ctx.settings.captioner:
        raise UserError(
            "This picture carries no generation settings (a photo, or metadata stripped on the way: on Telegram "
            "send the PNG as a file, not as a photo), and no captioning model is configured here to describe it. "
            "An admin can set SDBOT_CAPTIONER (a BLIP model) and SDBOT_DESCRIBE_CLIP."
        )
    init = source.init
    assert init is not None

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        notes.clear()
        width, height = fit_size(init.width, init.height, spec.width * spec.height, ctx.settings)
        return spec.evolve(
            kind="describe",
            n=DESCRIBE_CANDIDATES,
            width=width,
            height=height,
            strength=None,
            styles=(),
            regions=None,
            base_ratio=None,
            wildcards={},
            prompt="",
        )

    return await submit(ctx, request, ImagineOptions(), init=init, upload_size=source.upload_size, parent=source.parent, shape=shape)


async def _picture(ctx: Context, request: Request) -> tuple[bytes, Source]:
    """The picture's bytes as they were sent (re-encoding would lose the metadata), and where
    it came from: the bot's own picture (its job and image), or an upload, read and stored as
    every upload is (so a file that is no picture gets the same answer as `/imagine` gives)."""
    attachment = first_image(request.attachments)
    if attachment is None and request.reply_to:
        source = await find_source(ctx, request)
        if source.base is not None and source.init is not None:  # the bot's own picture: its PNG
            return ctx.blobs.path(source.init.blob_key).read_bytes(), source
    attachment = attachment or first_image(request.reply_to_images)
    if attachment is None:
        raise UserError("`/describe` works on a picture: reply to one with `/describe`, or attach one to the command.")
    init, size = await store_upload(ctx, attachment)
    return attachment.data, Source(init, size)


async def _answer_from_metadata(ctx: Context, request: Request, raw: bytes, source: Source, metadata: ImageMetadata) -> list[Reply]:
    candidate, notes = await _candidate(ctx, metadata)
    assert source.init is not None
    init_key, width, height = source.init.blob_key, source.init.width, source.init.height
    upload_size, parent = source.upload_size, source.parent
    shown = [f"Negative prompt: {metadata.negative}"] if metadata.negative else []
    if metadata.settings:
        shown.append(", ".join(f"{key}: {value}" for key, value in metadata.settings.items()))
    result = JobResult(
        heading=f"📋 This picture carries its settings ({SOURCES.get(metadata.source, metadata.source)}). Prompt:",
        candidates=(candidate,),
        notes=(*shown, *notes),
        source=metadata.source,
    )
    spec = GenerationSpec(
        kind="describe",
        prompt=metadata.prompt,
        negative_prompt=metadata.negative,
        model=ctx.registry.default.display_name,
        width=width,
        height=height,
        steps=1,
        cfg=ctx.settings.default_cfg,
        sampler=ctx.settings.default_sampler,
        seed=0,
        init_image=init_key,
    )
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        if upload_size is not None:
            await queue.record_blob(session, init_key, upload_size, "image/png", width, height)
        job = await queue.record_answer(
            session,
            user_id=user.id,
            platform=request.platform,
            chat_id=request.chat_id,
            source_message_id=request.message_id,
            kind="describe",
            model=spec.model,
            params=spec.model_dump(mode="json"),
            result=result,
            parent_id=parent[0] if parent else None,
        )
        return [
            Reply(
                render.answer_text(job),
                kind="result",
                actions=render.actions_for(job, "result", None),
                job_id=job.id,
                target=MessageTarget(job.id, None, "result"),
            )
        ]


async def _candidate(ctx: Context, metadata: ImageMetadata) -> tuple[Candidate, list[str]]:
    """What "Imagine this" draws, and notes on what it could not carry over."""
    if metadata.source == "sdbot" and metadata.job_id is not None:
        exact = await _our_image(ctx, metadata)
        if exact is not None:
            return Candidate(prompt=exact.prompt, spec=exact.model_dump(mode="json")), [
                "Imagine this draws it again: the same job, seed and settings."
            ]
    notes = list(metadata.notes)
    options: dict[str, Any] = {}
    for key, value in metadata.options.items():
        if key == "model" and ctx.registry.get(str(value)) is None:
            notes.append(f"The model `{value}` isn't here; Imagine this uses {ctx.registry.default.display_name}.")
            continue
        if key == "strength":
            continue  # img2img's input picture isn't in the file: drawn from the prompt alone
        try:
            read_options({key: value}, ctx.settings, ctx.registry)
        except UserError as error:
            notes.append(f"{error.problems[0]} Imagine this uses the default instead.")
            continue
        options[key] = value
    try:
        read_options({}, ctx.settings, ctx.registry, prompt=metadata.prompt)
        if metadata.negative:
            read_options({"no": metadata.negative}, ctx.settings, ctx.registry)
    except UserError as error:
        notes.append(f"{error.problems[0]} Shorten it before you imagine it.")
    return Candidate(prompt=metadata.prompt, negative=metadata.negative, options=options), notes


async def _our_image(ctx: Context, metadata: ImageMetadata) -> GenerationSpec | None:
    """The exact job behind one of our pictures: only when the job is in this database and one
    of its images carries these very parameters (so a look-alike text can't borrow a job)."""
    async with ctx.db.transaction() as session:
        job: Job | None = await queue.get(session, metadata.job_id) if metadata.job_id is not None else None
        if job is None:
            return None
        for output in job.outputs:
            if output.parameters.strip() == metadata.raw.strip():
                return job_view.spec_of(job).image_spec(output.index)
    return None
