"""Turning checked options into a queued job: the one place jobs are created.

The user row, the quota checks (commands.jobs.admission) and the job row are written in one transaction; the user
hears "queued" only after it commits. Uploads are written to the blob store first (content-
addressed, so a rolled-back request leaves at most an unreferenced file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.images import decode_upload
from commands.frame.offload import offload
from commands.frame.types import Attachment, MessageTarget, Reply, Request
from commands.jobs import render
from commands.jobs.admission import asker, check_job, check_room
from commands.jobs.model_fit import check_family, require_usable
from commands.jobs.options import ImagineOptions, InitImage, build_spec
from commands.jobs.prompt_features import Picked, apply_prompt_features, fit_references
from generation.spec import GenerationSpec
from storage import queue
from storage.tables import User


async def store_upload(ctx: Context, attachment: Attachment) -> tuple[InitImage, int]:
    """Decode, check and store an uploaded image, off the event loop. Returns it and its PNG size in bytes."""

    def store() -> tuple[InitImage, int]:
        decoded = decode_upload(attachment, max_bytes=ctx.settings.max_upload_bytes, max_pixels=ctx.settings.max_upload_pixels)
        key = ctx.blobs.put(decoded.png, "png")
        return InitImage(key, decoded.width, decoded.height), len(decoded.png)

    return await offload(store)


async def submit(
    ctx: Context,
    request: Request,
    opts: ImagineOptions,
    *,
    init: InitImage | None = None,
    upload_size: int | None = None,
    base: GenerationSpec | None = None,
    parent: tuple[int, int | None] | None = None,
    shape: Callable[[GenerationSpec, list[str]], GenerationSpec] | None = None,
    extra_blobs: Sequence[tuple[InitImage, int]] = (),
    notes: Sequence[str] = (),
    inherited: ImagineOptions | None = None,
    references: Sequence[Picked] = (),
) -> list[Reply]:
    """Queue a job. `shape` turns the resolved spec into another kind of job (an upscale, an
    inpaint: `commands.pictures.edits`), checking its own limits and adding notes; `extra_blobs` are
    further uploads the job reads (an inpaint mask); `notes` are shown with "queued"; `inherited`
    are settings read from a picture (they give way, with a note, where the model's family can't
    use them); `references` are the pictures of `--sref` / `--oref` (commands.jobs.sources.find_references)."""
    return await submit_many(
        ctx,
        request,
        [opts],
        init=init,
        upload_size=upload_size,
        base=base,
        parent=parent,
        shape=shape,
        extra_blobs=extra_blobs,
        notes=notes,
        inherited=inherited,
        references=references,
    )


async def submit_many(
    ctx: Context,
    request: Request,
    options: Sequence[ImagineOptions],
    *,
    repeat: int = 1,
    combine: Callable[[list[GenerationSpec], list[str]], GenerationSpec] | None = None,
    init: InitImage | None = None,
    upload_size: int | None = None,
    base: GenerationSpec | None = None,
    parent: tuple[int, int | None] | None = None,
    shape: Callable[[GenerationSpec, list[str]], GenerationSpec] | None = None,
    extra_blobs: Sequence[tuple[InitImage, int]] = (),
    notes: Sequence[str] = (),
    inherited: ImagineOptions | None = None,
    references: Sequence[Picked] = (),
) -> list[Reply]:
    """Queue a job for each of `options`, each `repeat` times (a prompt's permutations and
    `--repeat`: commands.explore.permutations), in ONE transaction: every job is made and checked
    first, then the account's room for all of them (commands.jobs.admission.check_room), so a
    request that would pass a limit is refused whole and nothing of it is queued. Repeat k of
    options with a `--seed` draws from seed + k·n, so no two repeats share a picture's seed.
    `combine` makes one job of the checked specs instead (/compare: commands.explore.compare),
    with their notes. The other arguments are `submit`'s, the same for every job."""
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        made: list[tuple[GenerationSpec, list[str]]] = []
        for opts in options:
            for k in range(repeat):
                spec, spec_notes = await _made(ctx, session, request, user, opts, init, base, shape, notes, inherited, references)
                if k and opts.seed is not None:
                    spec = spec.evolve(seed=spec.seed + k * spec.n)
                await _usable(ctx, session, user, spec)
                made.append((spec, spec_notes))
        if combine is not None:
            shared = list(dict.fromkeys(note for _, these in made for note in these))
            made = [(combine([spec for spec, _ in made], shared), shared)]
        await check_room(ctx, session, request, user, count=len(made))
        if init is not None and upload_size is not None:
            await queue.record_blob(session, init.blob_key, upload_size, "image/png", init.width, init.height)
        for picture, size in (pair for pick in references for pair in pick.pictures):
            if size is not None:
                await queue.record_blob(session, picture.blob_key, size, "image/png", picture.width, picture.height)
        for blob, size in extra_blobs:
            await queue.record_blob(session, blob.blob_key, size, "image/png", blob.width, blob.height)
        replies = [await _insert(ctx, session, request, user, spec, parent, these) for spec, these in made]
    ctx.on_enqueue()
    return replies


async def _made(
    ctx: Context,
    session: AsyncSession,
    request: Request,
    user: User,
    opts: ImagineOptions,
    init: InitImage | None,
    base: GenerationSpec | None,
    shape: Callable[[GenerationSpec, list[str]], GenerationSpec] | None,
    notes: Sequence[str],
    inherited: ImagineOptions | None,
    references: Sequence[Picked],
) -> tuple[GenerationSpec, list[str]]:
    """One job's spec from checked options, with its notes: defaults, `shape`, references, the
    prompt's features and this chat's rules (`submit`'s arguments say what each is)."""
    spec, built_notes = build_spec(
        opts,
        settings=ctx.settings,
        registry=ctx.registry,
        user_defaults=user.settings,
        init=init,
        base=base,
        require_prompt=shape is None,
        inherited=inherited,
    )
    spec_notes = [*built_notes, *notes]
    if shape is not None:
        spec = shape(spec, spec_notes)
    spec = fit_references(ctx, spec, opts, references, spec_notes)
    spec = spec.evolve(age_restricted=request.age_restricted)  # where it is asked, not inherited
    spec = await apply_prompt_features(ctx, session, user, spec, opts, base, spec_notes)
    spec = await check_job(ctx, session, request, spec, spec_notes)
    return spec, spec_notes


async def queue_spec(
    ctx: Context,
    request: Request,
    spec: GenerationSpec,
    *,
    parent: tuple[int, int | None] | None = None,
    notes: Sequence[str] = (),
) -> list[Reply]:
    """Queue a spec that is complete as it is: "Imagine this" under `/describe` of one of our own
    pictures repeats that picture's job exactly (every blob it reads is already stored)."""
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        spec = spec.evolve(age_restricted=request.age_restricted)
        notes = list(notes)
        spec = await check_job(ctx, session, request, spec, notes)
        reply = await _enqueue(ctx, session, request, user, spec, parent, notes)
    ctx.on_enqueue()
    return [reply]


async def _enqueue(
    ctx: Context,
    session: AsyncSession,
    request: Request,
    user: User,
    spec: GenerationSpec,
    parent: tuple[int, int | None] | None,
    notes: list[str],
) -> Reply:
    """The asset rights, the quota checks and the job row, in the caller's transaction; the
    "queued" reply."""
    await _usable(ctx, session, user, spec)
    await check_room(ctx, session, request, user)
    return await _insert(ctx, session, request, user, spec, parent, notes)


async def _usable(ctx: Context, session: AsyncSession, user: User, spec: GenerationSpec) -> None:
    """The asset rights and what the model's family can draw, for one job."""
    await require_usable(session, user.id, spec)
    problems = check_family(ctx.registry, spec)
    if problems:
        raise UserError(*problems)


async def _insert(
    ctx: Context,
    session: AsyncSession,
    request: Request,
    user: User,
    spec: GenerationSpec,
    parent: tuple[int, int | None] | None,
    notes: list[str],
) -> Reply:
    """The job row, in the caller's transaction (its checks made); the "queued" reply."""
    job = await queue.enqueue(
        session,
        user_id=user.id,
        platform=request.platform,
        chat_id=request.chat_id,
        source_message_id=request.message_id,
        kind=spec.kind,
        model=spec.model,
        batch_key=spec.batch_key(),
        params=spec.model_dump(mode="json"),
        max_attempts=ctx.settings.max_attempts,
        parent_id=parent[0] if parent else None,
        parent_output_index=parent[1] if parent else None,
    )
    text = render.queued_text(job, await queue.position(session, job), notes)
    return Reply(text, kind="status", job_id=job.id, target=MessageTarget(job.id, None, "status"))
