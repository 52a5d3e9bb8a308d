"""How jobs look in chat: status lines, result captions, failure notes, and the buttons.

Action ids are stable: `upscale:<i>` (U<i>: image i alone), `vary:<i>` (V<i>), `reroll`. They
mean something only together with the message they are under, which resolves to a job through
the message refs. Labels are what people see and may type (the console accepts either).
"""

from __future__ import annotations

from commands.types import Action
from generation.spec import GenerationSpec
from storage.tables import Job, JobStatus

TINY_NOTE = (
    "The `tiny` model has random weights: it draws noise, quickly, so you can try every feature "
    "offline. Set SDBOT_MODEL to a real model (a Hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5, "
    "a diffusers folder, or a .safetensors file) for real pictures."
)


def short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def size_text(count: int) -> str:
    """A byte count as people read it: 512 bytes, 8 KiB, 1.5 MiB, 20 MiB."""
    if count < 1024:
        return f"{count} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024  # type: ignore[assignment]
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}".replace(".0 ", " ")
    raise AssertionError("unreachable")


def spec_of(job: Job) -> GenerationSpec:
    return GenerationSpec.model_validate(job.params)


def settings_line(spec: GenerationSpec) -> str:
    parts = [f"{spec.width}x{spec.height}", f"{spec.steps} steps", spec.sampler, f"CFG {spec.cfg:g}"]
    if spec.n > 1:
        parts.append(f"seeds {spec.seed}–{spec.seed + spec.n - 1}")
    else:
        parts.append(f"seed {spec.seed}")
    if spec.kind == "img2img":
        parts.append(f"strength {spec.strength:g}")
    parts.append(spec.model)
    return " · ".join(parts)


def queued_text(job: Job, position: int, notes: list[str] | None = None) -> str:
    spec = spec_of(job)
    lines = [f"⏳ Job {job.id} queued (position {position}): {short(spec.prompt)}", settings_line(spec)]
    lines.extend(notes or [])
    return "\n".join(lines)


def status_text(job: Job, position: int) -> str:
    """The live status line of a job that is waiting or running."""
    if job.status == JobStatus.QUEUED:
        retry = f" (try {job.attempt + 1})" if job.attempt else ""
        return f"⏳ Job {job.id} queued{retry}: position {position}"
    if job.cancel_requested:
        return f"🛑 Job {job.id}: stopping…"
    if job.progress_total:
        percent = 100 * job.progress_step // job.progress_total
        return f"🎨 Job {job.id}: drawing, step {job.progress_step}/{job.progress_total} ({percent}%)"
    return f"🎨 Job {job.id}: starting…"


def result_text(job: Job) -> str:
    spec = spec_of(job)
    head = "🖼️" if spec.kind == "txt2img" else "🔁"
    lines = [f"{head} Job {job.id}: {short(spec.prompt, 200)}", settings_line(spec)]
    if spec.negative_prompt:
        lines.insert(1, f"Negative: {short(spec.negative_prompt, 120)}")
    if spec.age_restricted:
        lines.append("🔞 Drawn for an age-restricted channel.")
    if spec.model == "tiny":
        lines.append("(tiny model: random weights, it draws noise; see /help to use a real model)")
    return "\n".join(lines)


def single_text(job: Job, index: int) -> str:
    spec = spec_of(job)
    return f"Image {index + 1} of job {job.id}: {short(spec.prompt, 200)}\nseed {spec.seed + index}"


def failure_text(job: Job) -> str:
    return f"❌ Job {job.id} failed: {job.error or 'unknown error'}"


def actions_for(job: Job, role: str, output_index: int | None) -> tuple[Action, ...]:
    """Buttons under a message showing `job` (role "result": the batch; "single": one image)."""
    if job.status != JobStatus.SUCCEEDED:
        return ()
    count = len(job.outputs)
    if role == "single" and output_index is not None:
        return (Action(f"vary:{output_index + 1}", "Vary"),)
    if role != "result":
        return ()
    upscales = tuple(Action(f"upscale:{i}", f"U{i}") for i in range(1, count + 1))
    variations = tuple(Action(f"vary:{i}", f"V{i}") for i in range(1, count + 1))
    return (*upscales, *variations, Action("reroll", "Reroll"))
