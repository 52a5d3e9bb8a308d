"""`/train`: people's own LoRAs, LyCORIS, DreamBooth LoRAs, embeddings and A1111 hypernetworks,
trained from chat.

    /train lora|loha|lokr|dreambooth|embedding|hypernetwork NAME [--options]   with 3-40 pictures (or a .zip)
    /train preview METHOD NAME [--options]                        the captions, nothing trained
    /train status                                                 your runs

The pictures are attachments (Discord: up to 10; Telegram: an album; console: `attachments`),
a .zip with kohya-style `.txt` caption sidecars, or the pictures of the message this one replies
to. They are checked (commands.training.data) before anything is stored; the run is a job on the
same queue as the pictures (kind "train", behind drawing jobs), and its result is the person's
private asset, used at once with `<lora:NAME:1>` (NAME in a prompt, for an embedding;
`<hypernet:NAME:1>` for a hypernetwork, which trains on SD 1.x and 2.x models only, and whose
A1111 `.pt` comes with the result).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.declare import Kind, Option, read_flags, read_value
from commands.frame.errors import Refused, UserError
from commands.frame.offload import offload
from commands.frame.types import Attachment, MessageTarget, Reply, Request
from commands.jobs import render
from commands.jobs.admission import asker, check_room, clock_text
from commands.jobs.model_fit import HYPERNETWORK_FAMILIES
from commands.jobs.options import MODEL, SEED, new_seed
from commands.jobs.training_text import USAGE, preview_line, queued_text, run_line, spec_of
from commands.training.data import Dataset, DatasetLimits, read_dataset
from generation.assets.files import valid_asset_name
from generation.models.families import family
from generation.training.spec import (
    BOUNDS,
    DEFAULT_CLASS_IMAGES,
    DEFAULT_INIT_WORD,
    DEFAULT_PRIOR_WEIGHT,
    DEFAULT_VECTORS,
    METHOD_DEFAULTS,
    METHOD_LABELS,
    TRAIN_METHODS,
    TrainImage,
    TrainingSpec,
)
from storage import assets, outbox, queue, training, users
from storage.results import JobResult
from storage.tables import Job, JobStatus, User

TRAIN_PRIORITY = -10  # drawing jobs (priority 0) are claimed first
TRAIN_IMAGES_ON_DISCORD = 10  # file options of the slash command (Discord allows 25 options in all); more: a zip


def _bounded(name: str, kind: Kind, help: str, default: str, **fields: Any) -> Option:
    """A number of a run, within its named bound (`generation.training.spec.BOUNDS`)."""
    bound = BOUNDS[name]
    return Option(name, kind, help, bounds=(bound.low, bound.high), default=default, **fields)


# Defaults differ per method (METHOD_DEFAULTS); the declarations say so, `_spec` applies them.
OPTIONS: tuple[Option, ...] = (
    Option("method", "choice", "What to train", choices=(*TRAIN_METHODS, "preview", "status"), positional=True, required=True),
    Option("name", "text", "The new LoRA's, embedding's or hypernetwork's name", positional=True),
    Option("steps", "int", "Training steps", bounds=lambda s: (1, s.train_max_steps), default="per method", example="400"),
    _bounded("rank", "int", "LoRA rank (dim)", "per method", aliases=("dim",), applies="LoRA methods"),
    _bounded("alpha", "float", "LoRA alpha", "per method", applies="LoRA methods"),
    _bounded("lr", "float", "Learning rate", "per method", example="1e-4"),
    Option(
        "resolution",
        "int",
        "Training side in pixels, a multiple of 8",
        aliases=("res",),
        bounds=lambda s: (32, s.train_max_resolution),
        default="the model's native side",
    ),
    _bounded("batch", "int", "Pictures per step", "1"),
    dataclasses.replace(SEED, bounds=(0, 2**32 - 1), help="Seed of the run"),
    dataclasses.replace(MODEL, help="The model to train on"),
    Option("trigger", "text", "The word that calls it up in prompts", default="its name", applies="LoRA methods, hypernetwork"),
    Option(
        "captions",
        "choice",
        "auto: sidecar .txt files, else the captioning model; none: the trigger alone",
        choices=("auto", "none"),
        default="auto",
    ),
    Option("class", "text", 'What it is, e.g. "a dog" (prior preservation)', applies="dreambooth, which needs it"),
    _bounded("class_images", "int", "Class pictures drawn for prior preservation", str(DEFAULT_CLASS_IMAGES), applies="dreambooth"),
    _bounded("prior_weight", "float", "Weight of the prior-preservation loss", str(DEFAULT_PRIOR_WEIGHT), applies="dreambooth"),
    Option("init_word", "text", "The word an embedding starts from", applies="embedding"),
    _bounded("vectors", "int", "Vectors per token", str(DEFAULT_VECTORS), applies="embedding"),
    _bounded("sample_every", "int", "A sample picture every N steps (0: only the last)", "a quarter of the steps"),
    Option("sample_prompt", "text", "The samples' prompt", default="the first caption"),
    Option("text_encoder", "switch", "Train the text encoder too", default="per method", applies="LoRA methods"),
    _bounded("snr_gamma", "float", "Min-SNR weighting (0: plain MSE; 5 is kohya's choice)", "0"),
    *(Option(f"image{i}", "file", f"Training picture {i} (a .zip of pictures works too)") for i in range(1, TRAIN_IMAGES_ON_DISCORD + 1)),
)

DECLARED = {option.name: option for option in OPTIONS}
TEXT_ENCODER = DECLARED["text_encoder"]


async def train_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    verb, _, rest = args.strip().partition(" ")
    verb = verb.lower()
    if verb == "status":
        return await status(ctx, request)
    preview = verb == "preview"
    if preview:
        verb, _, rest = rest.strip().partition(" ")
        verb = verb.lower()
    if verb not in TRAIN_METHODS:
        raise UserError(USAGE if not verb else f"I can't train `{verb}`. {USAGE}")
    return await queue_run(ctx, request, verb, rest, preview=preview)


async def queue_run(ctx: Context, request: Request, method: str, args: str, *, preview: bool) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    name = flags.text.strip().lower()
    if not name or " " in name:
        raise UserError(f"Give the {METHOD_LABELS[method]} one name, e.g. `/train {method} foxy`. {USAGE}")
    if not valid_asset_name(name):
        raise UserError(f"`{name}` can't be a name: use letters, digits, `_`, `-` and `.`, up to 64 characters.")
    s = ctx.settings
    earlier = await _earlier_pictures(ctx, request)
    if len(earlier) >= s.train_max_images and request.attachments:
        raise UserError(
            f"The run you replied to had {len(earlier)} pictures already, and a run takes at most "
            f"{s.train_max_images}. Send the command without pictures to train on those again."
        )
    if earlier and not request.attachments:
        dataset = Dataset((), ())  # the same pictures again, with other options
    else:
        new = list(request.attachments) if earlier else _pictures(request)
        dataset = await offload(read_dataset, new, _limits(ctx, already=len(earlier)))
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        spec = _spec(ctx, method, name, flags, dataset, user.settings, preview=preview, earlier=earlier)
        await _check_room(ctx, session, request, user, spec)
        spec = _stored(ctx, spec, dataset)
        for image, picture in zip(spec.images[len(earlier) :], dataset.images, strict=True):
            await queue.record_blob(session, image.blob, len(picture.png), "image/png", image.width, image.height)
        notes = list(dataset.notes)
        if earlier:
            notes.insert(
                0,
                f"With the {len(earlier)} pictures of the run you replied to"
                + (f" and {len(dataset.images)} new ones." if dataset.images else "."),
            )
        reply = await _enqueue(ctx, session, request, user, spec, notes)
    ctx.on_enqueue()
    return [reply]


async def train_previewed(ctx: Context, request: Request, job: Job) -> list[Reply]:
    """ "Train with these captions" under a `/train preview`: the run it previewed, with exactly
    the captions shown (the captioner does not run again)."""
    spec, captions = spec_of(job), list(JobResult.of(job).captions)
    if not spec.preview or len(captions) != len(spec.images):
        raise UserError("That button only works under the captions of `/train preview`.")
    images = tuple(image.evolve(caption=caption) for image, caption in zip(spec.images, captions, strict=True))
    run = spec.evolve(images=images, preview=False)
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        if user.id != job.user_id:  # the pictures are the sender's own
            raise UserError("Only the person who sent these pictures can train on them.")
        await _check_room(ctx, session, request, user, run)
        reply = await _enqueue(ctx, session, request, user, run, ["With the captions of the preview."])
    ctx.on_enqueue()
    return [reply]


async def _check_room(ctx: Context, session: AsyncSession, request: Request, user: User, spec: TrainingSpec) -> None:
    """The name free, one run at a time, the day's step budget, the uploads quota, the queue limit."""
    await users.lock(session, user.id)  # from the first check, as `check_room` does: parallel /train count in turn
    kind, name = spec.asset_kind, spec.name
    if not spec.preview and await assets.find_own(session, user.id, kind, name):
        raise UserError(f"You already have a {kind} named `{name}`. Pick another name, or delete it first (`/{kind} delete {name}`).")
    running = await training.active_run(session, user.id)
    if running is not None:
        raise UserError(
            f"Your training job {running.id} is still waiting or running: one run at a time. `/train status` shows it; `/cancel` stops it."
        )
    limits = ctx.limits(request)
    if not spec.preview and limits.train_steps_per_day is not None:
        used, daily = await training.steps_last_day(session, user.id), limits.train_steps_per_day
        if used + spec.steps > daily:
            back = await training.steps_back_at(session, user.id)
            when = f"more come back at {clock_text(back)}" if back is not None else "try again later"
            raise Refused(
                "train_steps",
                f"That is {spec.steps} steps, and you have {max(0, daily - used)} of your {daily} "
                f"training steps per 24 hours left. Use fewer `--steps`, or wait: {when} (`/me` shows your quotas).",
            )
    if not spec.preview and limits.storage_bytes is not None and await assets.bytes_used(session, user.id) >= limits.storage_bytes:
        raise Refused(
            "storage",
            f"Your LoRAs and embeddings use all of your {render.size_text(limits.storage_bytes)}; delete one first (`/loras` lists them).",
        )
    await check_room(ctx, session, request, user)


async def _enqueue(ctx: Context, session: AsyncSession, request: Request, user: User, spec: TrainingSpec, notes: list[str]) -> Reply:
    job = await queue.enqueue(
        session,
        user_id=user.id,
        platform=request.platform,
        chat_id=request.chat_id,
        source_message_id=request.message_id,
        kind="train",
        model=spec.model,
        batch_key="",
        params=spec.model_dump(mode="json"),
        max_attempts=ctx.settings.max_attempts,
        priority=TRAIN_PRIORITY,
    )
    await training.create(session, job, owner_id=user.id, method=spec.method, name=spec.name, steps=spec.steps)
    text = queued_text(job, spec, await queue.position(session, job), notes)
    return Reply(text, kind="status", job_id=job.id, target=MessageTarget(job.id, None, "status"))


def _pictures(request: Request) -> list[Attachment]:
    """The attachments, and (a reply) the pictures of the message replied to, which add to them."""
    return [*request.attachments, *request.reply_to_images]


async def _earlier_pictures(ctx: Context, request: Request) -> tuple[TrainImage, ...]:
    """A reply to an earlier /train of yours (the message that asked for it, or one of mine about
    it: its status, samples or result): that run's pictures, which the new pictures add to."""
    if not request.reply_to:
        return ()
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        ref = await outbox.find_ref(session, request.platform, request.chat_id, request.reply_to)
        job = (
            await queue.get(session, ref.job_id)
            if ref
            else await training.asked_by(session, request.platform, request.chat_id, request.reply_to)
        )
    if job is None or job.kind != "train" or job.user_id != user.id:  # another person's pictures stay theirs
        return ()
    return spec_of(job).images


def _limits(ctx: Context, *, already: int = 0) -> DatasetLimits:
    """The dataset limits, for pictures that add to `already` pictures of an earlier run."""
    s = ctx.settings
    return DatasetLimits(
        min_images=max(1, s.train_min_images - already),
        max_images=s.train_max_images - already,
        max_file_bytes=s.max_upload_bytes,
        max_zip_bytes=s.train_max_zip_bytes,
        max_pixels=s.max_upload_pixels,
    )


def _spec(
    ctx: Context,
    method: str,
    name: str,
    flags: Any,
    dataset: Dataset,
    user_settings: dict[str, Any],
    *,
    preview: bool,
    earlier: tuple[TrainImage, ...] = (),
) -> TrainingSpec:
    s, values, problems = ctx.settings, flags.values, list(flags.problems)
    defaults = METHOD_DEFAULTS[method]
    model_name = values.get("model") or user_settings.get("model")
    entry = ctx.registry.get(model_name) if model_name else ctx.registry.default
    if entry is None:
        problems.append(f"I don't know the model `{model_name}`; `/models` lists them.")
        entry = ctx.registry.default
    elif (why := family(entry.family).why_not("train", entry.guessed_variant)) is not None:
        problems.append(f"Training can't use `{entry.display_name}`: {why}. Pick an SD model with `--model`.")
    elif method == "hypernetwork" and entry.family not in HYPERNETWORK_FAMILIES:
        problems.append(
            f"A hypernetwork can't be trained on `{entry.display_name}`, which is {family(entry.family).label}: A1111's "
            "hypernetworks change the inputs of an SD 1.x or 2.x UNet's attention. Pick such a model with `--model`."
        )

    def number(key: str, default: Any) -> Any:
        """The declared option's value (its bounds checked), or `default`, this run's own."""
        return read_value(DECLARED[key], values, s, problems, flags.written, default=default)

    steps = number("steps", min(defaults.steps, s.train_max_steps))
    native = entry.native_size
    resolution = number("resolution", min(native, s.train_max_resolution))
    if resolution % 8:
        problems.append(f"`--resolution {resolution}` must be a multiple of 8 (the VAE works in blocks of 8 pixels).")
    embedding = method == "embedding"
    trigger = name if embedding else (values.get("trigger") or name).strip()
    if embedding and values.get("trigger") and values["trigger"].strip().lower() != name:
        problems.append("An embedding's word is its name; leave out `--trigger` (or give it the same name).")
    captions = (values.get("captions") or "auto").strip().lower()
    if captions not in ("auto", "none"):
        problems.append(f"`--captions` is auto (sidecars, else the captioning model) or none (the trigger alone); not `{captions}`.")
    text_encoder = read_value(TEXT_ENCODER, values, s, problems, flags.written, default=defaults.text_encoder)
    class_prompt = (values.get("class") or "").strip() or None
    if method == "dreambooth" and not class_prompt:
        problems.append('DreamBooth needs the class of what it learns: add `--class "a dog"` (or "a woman", "a car", ...).')
    if class_prompt and method != "dreambooth":
        problems.append("`--class` is for `/train dreambooth`.")
    hypernetwork = method == "hypernetwork"
    not_for = ("rank", "alpha", "text_encoder") if embedding else ("vectors", "init_word")
    for key in ("rank", "alpha", "text_encoder", "vectors", "init_word") if hypernetwork else not_for:
        if key in values:
            what = "a LoRA's (lora, loha, lokr, dreambooth)" if key in ("rank", "alpha", "text_encoder") else "an embedding's"
            problems.append(f"`{flags.written[key]}` is {what} option; leave it out for `/train {method}`.")
    seed = number("seed", new_seed())
    sample_every = number("sample_every", steps // 4 if steps >= 8 else 0)
    rank = 0 if embedding or hypernetwork else number("rank", defaults.rank)
    alpha = 0 if embedding or hypernetwork else number("alpha", defaults.alpha)
    lr, batch, snr_gamma = number("lr", defaults.lr), number("batch", 1), number("snr_gamma", 0.0)
    class_images = number("class_images", DEFAULT_CLASS_IMAGES) if class_prompt else 0
    prior_weight = number("prior_weight", DEFAULT_PRIOR_WEIGHT) if class_prompt else 0
    vectors = number("vectors", DEFAULT_VECTORS) if embedding else 0
    if problems:
        raise UserError("\n".join(problems))
    kept = tuple(image.evolve(caption=trigger) if captions == "none" and image.caption is None else image for image in earlier)
    images = kept + tuple(  # the new pictures' blobs are written once every check has passed (`_stored`)
        TrainImage(
            blob="unstored",
            width=picture.width,
            height=picture.height,
            filename=picture.filename,
            caption=picture.caption if picture.caption is not None else (trigger if captions == "none" else None),
        )
        for picture in dataset.images
    )
    first_caption = next((image.caption for image in images if image.caption), None)
    sample_prompt = values.get("sample_prompt") or first_caption or (f"{trigger}, {class_prompt}" if class_prompt else trigger)
    return TrainingSpec(
        method=method,
        name=name,
        model=entry.display_name,
        images=images,
        trigger=trigger,
        captions=captions,  # type: ignore[arg-type]
        steps=steps,
        rank=rank,
        alpha=alpha,
        lr=lr,
        resolution=resolution,
        batch=batch,
        seed=seed,
        text_encoder=text_encoder,
        snr_gamma=snr_gamma,
        class_prompt=class_prompt,
        class_images=class_images,
        prior_weight=prior_weight,
        vectors=vectors,
        init_word=(values.get("init_word") or DEFAULT_INIT_WORD).strip() if embedding else None,
        sample_every=sample_every,
        sample_prompt=sample_prompt,
        sample_steps=s.steps_for(entry),
        checkpoint_every=s.train_checkpoint_steps,
        preview=preview,
    )


def _stored(ctx: Context, spec: TrainingSpec, dataset: Dataset) -> TrainingSpec:
    """The new pictures (after those of an earlier run) written to the blob store."""
    earlier = spec.images[: len(spec.images) - len(dataset.images)]
    new = tuple(
        image.evolve(blob=ctx.blobs.put(picture.png, "png"))
        for image, picture in zip(spec.images[len(earlier) :], dataset.images, strict=True)
    )
    return spec.evolve(images=earlier + new)


async def status(ctx: Context, request: Request) -> list[Reply]:
    """The person's latest runs, and apart from them their latest previews: a preview trains
    nothing, so it is no run, but it is listed: it holds the button that starts its run, and
    while it waits or runs a new /train is refused for it (one at a time)."""
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        runs = [run_line(run, job, await _position(session, job)) for run, job in await training.recent(session, user.id)]
        previews = [
            preview_line(job, await _position(session, job)) for _, job in await training.recent(session, user.id, limit=3, previews=True)
        ]
    lines = ["Your training runs:", *runs] if runs else [f"You have no training runs yet. {USAGE}"]
    if previews:
        lines += ["Caption previews (nothing trained; the “Train with these captions” button under one starts its run):", *previews]
    return [Reply("\n".join(lines))]


async def _position(session: AsyncSession, job: Job) -> int:
    return await queue.position(session, job) if job.status == JobStatus.QUEUED else 0
