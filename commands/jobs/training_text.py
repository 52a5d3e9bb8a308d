"""How training runs look in chat: the queued line, the live status, `/train status`, the samples
and the result. Kept apart from `commands.training.train` so that `commands.jobs.render` (every job's status
line) can use it."""

from __future__ import annotations

from typing import Any

from commands.frame.types import Action, DocumentFile, ImageFile, MessageTarget, Reply
from commands.frame.words import short
from generation.training.spec import METHOD_LABELS, TrainingSpec
from storage.blobs import BlobStore
from storage.results import JobResult
from storage.tables import Job, JobStatus, TrainingRun

TRAIN_ACTION = Action("train", "Train with these captions")

USAGE = (
    "Use `/train lora NAME` (or loha, lokr, dreambooth, embedding, hypernetwork) with 3 or more pictures attached (or a .zip, "
    "with `.txt` captions beside the pictures if you like); `/train preview lora NAME` with the same pictures shows "
    "the captions first; `/train status` shows your runs. Options: --steps, --rank, --alpha, --lr, --resolution, "
    "--batch, --seed, --model, --trigger, --captions auto|none, --sample-every, --sample-prompt, --text-encoder on|off, "
    '--snr-gamma; DreamBooth: --class "a dog", --class-images, --prior-weight; embedding: --vectors, --init-word.'
)


def spec_of(job: Job) -> TrainingSpec:
    return TrainingSpec.model_validate(job.params)


def what_text(spec: TrainingSpec) -> str:
    doing = "captions for" if spec.preview else METHOD_LABELS[spec.method]
    return f"{doing} `{spec.name}` from {len(spec.images)} pictures"


def settings_line(spec: TrainingSpec) -> str:
    parts = [f"{spec.steps} steps"]
    if spec.method == "embedding":
        parts += [f"{spec.vectors} vectors", f"init “{spec.init_word}”"]
    elif spec.method == "hypernetwork":
        parts.append("layers 1, 2, 1, linear (A1111's defaults)")
    else:
        parts += [f"rank {spec.rank}", f"alpha {spec.alpha:g}", "UNet + text encoder" if spec.text_encoder else "UNet only"]
    parts += [f"lr {spec.lr:g}", f"{spec.resolution}px buckets", f"batch {spec.batch}", f"seed {spec.seed}"]
    if spec.class_prompt:
        parts.append(f"class “{spec.class_prompt}” ×{spec.class_images}, prior weight {spec.prior_weight:g}")
    if spec.snr_gamma:
        parts.append(f"min-SNR γ {spec.snr_gamma:g}")
    if spec.sample_every:
        parts.append(f"a sample every {spec.sample_every} steps")
    parts.append(spec.model)
    return " · ".join(parts)


def queued_text(job: Job, spec: TrainingSpec, position: int, notes: list[str]) -> str:
    lines = [f"⏳ Job {job.id} queued (position {position}): {what_text(spec)}", settings_line(spec)]
    if not spec.preview:
        lines.append(f"Trigger word: `{spec.trigger}`. Drawing jobs go first; the run resumes where it was.")
    return "\n".join(lines + notes)


def status_text(job: Job, position: int) -> str:
    if job.status == JobStatus.QUEUED:
        again = f" (paused at step {job.progress_step}; it goes on from its last checkpoint)" if job.progress_step else ""
        return f"⏳ Job {job.id} queued: position {position}{again}"
    if job.cancel_requested:
        return f"🛑 Job {job.id}: stopping at the next step; what it learned so far is kept…"
    spec = spec_of(job)
    if not job.progress_step:
        return f"🧠 Job {job.id}: {what_text(spec)}: {job.progress_note or 'starting'}…"
    percent = 100 * job.progress_step // max(job.progress_total, 1)
    note = f" · {job.progress_note}" if job.progress_note else ""
    return f"🧠 Job {job.id}: training `{spec.name}`, step {job.progress_step}/{job.progress_total} ({percent}%){note}"


def run_line(run: TrainingRun, job: Job, position: int) -> str:
    """A run in `/train status`: its state, step/total, the last checkpoint's step and the latest
    loss (a running job's live note carries a fresher loss than the last checkpoint, and the time
    left). `position`: its place in the queue, when it waits."""
    result = JobResult.of(job)
    active = job.status in JobStatus.ACTIVE
    if job.status == JobStatus.SUCCEEDED:
        done = result.steps_done if result.steps_done is not None else run.steps
    else:  # a job claimed again reports step 0 until its run has resumed: the checkpoint's step stands in
        done = max(job.progress_step, run.checkpoint_step)
    parts = [f"step {done}/{run.steps}"]
    parts.append(
        f"last checkpoint at step {run.checkpoint_step}" if run.checkpoint_step else "no checkpoint yet" if active else "no checkpoint"
    )
    if job.status == JobStatus.RUNNING and job.progress_note:
        parts.append(job.progress_note)
    elif run.losses:
        at, loss = run.losses[-1]
        parts.append(f"loss {loss:.4f} at step {int(at)}")
    elif active:
        parts.append("no loss yet")
    label = METHOD_LABELS.get(run.method, run.method)
    return f"• #{job.id} {_state(job, position)}: {label} `{run.name}` · {' · '.join(parts)}"


def preview_line(job: Job, position: int) -> str:
    """A `/train preview` in `/train status`: it only writes captions, so it has no steps or loss."""
    return f"• #{job.id} {_state(job, position)}: {what_text(spec_of(job))}"


def _state(job: Job, position: int) -> str:
    if job.status == JobStatus.QUEUED:
        return f"queued (position {position})"
    if job.status == JobStatus.RUNNING:
        return "stopping" if job.cancel_requested else "running"
    if job.status == JobStatus.SUCCEEDED and JobResult.of(job).stopped_early:
        return "stopped early as you asked"
    return str(job.status)


def result_reply(blobs: BlobStore, job: Job) -> Reply:
    spec, result = spec_of(job), JobResult.of(job)
    target = MessageTarget(job.id, None, "result")
    if result.preview:
        lines = [f"📝 Job {job.id}: the captions `{spec.name}` would be trained with:"]
        lines += [
            f"{i}. {image.filename}: {caption}" for i, (image, caption) in enumerate(zip(spec.images, result.captions, strict=False), 1)
        ]
        lines += list(result.notes)
        lines.append(
            "Press the button to train on them as they are; to change them, send the pictures again in a zip "
            "with a `.txt` caption beside each."
        )
        return Reply("\n".join(lines), kind="result", job_id=job.id, target=target, actions=actions(job))
    asset = result.asset or spec.name
    label = METHOD_LABELS[spec.method]
    early = f", stopped at step {result.steps_done} of {spec.steps} as you asked" if result.stopped_early else ""
    held_out = result.held_out
    loss = f" · held-out loss {held_out[0]:.4f} → {held_out[1]:.4f}" if len(held_out) == 2 else ""
    lines = [f"✅ Job {job.id}: trained the {label} `{asset}`{early}{loss}", settings_line(spec)]
    lines += list(result.notes)
    usage = {"lora": f"`<lora:{asset}:1>`", "hypernetwork": f"`<hypernet:{asset}:1>` (SD 1.x and 2.x)"}.get(
        spec.asset_kind, f"`{asset}` in a prompt"
    )
    trigger = f" with the trigger word `{spec.trigger}`" if spec.asset_kind in ("lora", "hypernetwork") else ""
    lines.append(f"It is yours and private: use {usage}{trigger}; `/{spec.asset_kind} download {asset}` sends the file.")
    documents: tuple[DocumentFile, ...] = ()
    if (document := result.document) is not None:
        lines.append(f"The attached `{document.filename}` is the file A1111 loads (put it in its `models/hypernetworks`).")
        documents = (DocumentFile(blobs.path(document.blob), document.filename, document.size),)
    if spec.model in ("tiny",):
        lines.append("(tiny model: random weights; the run is real, the pictures are noise)")
    images = ()
    sample = result.sample
    if sample is not None:
        images = (ImageFile(blobs.path(sample.blob), sample.width, sample.height, spec.seed, 0),)
    return Reply("\n".join(lines), kind="result", images=images, job_id=job.id, target=target, documents=documents)


def sample_reply(blobs: BlobStore, job: Job, step: int, sample: dict[str, Any]) -> Reply:
    spec = spec_of(job)
    text = f"🧪 Job {job.id}, step {step}/{spec.steps}: `{spec.name}` so far — “{short(spec.sample_prompt, 80)}”, seed {spec.seed}"
    image = ImageFile(blobs.path(sample["blob"]), sample["width"], sample["height"], spec.seed, 0)
    return Reply(text, kind="sample", images=(image,), job_id=job.id)


def info_text(job: Job, live: str | None) -> str:
    """`/info` of a training job: its settings, captions and outcome."""
    spec, result = spec_of(job), JobResult.of(job)
    lines = [f"Job {job.id}: {job.status} (training: {what_text(spec)})", settings_line(spec)]
    if live:
        lines.append(live)
    lines.append(f"Attempts: {job.attempt} of {job.max_attempts}")
    if job.run_seconds is not None:
        lines.append(f"Ran for {job.run_seconds:.1f} s")
    if job.error:
        lines.append(f"Error: {job.error}")
    if result.asset:
        lines.append(f"Made the {result.asset_kind} `{result.asset}` ({result.asset_format}), {result.steps_done} steps")
    for i, caption in enumerate(result.captions, 1):
        lines.append(f"{i}. {caption}")
    return "\n".join(lines)


def actions(job: Job) -> tuple[Action, ...]:
    """A preview's captions get "Train with these captions"; a run's result has no buttons."""
    previewed = job.status == JobStatus.SUCCEEDED and JobResult.of(job).preview
    return (TRAIN_ACTION,) if previewed else ()
