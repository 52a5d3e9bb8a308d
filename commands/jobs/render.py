"""How jobs look in chat: status lines, result captions, failure notes, and the buttons.

Action ids are stable: `upscale:<i>` (U<i>: image i alone), `vary:<i>` (V<i>), `reroll`, and
the single-image edits `<verb>:<i>` of BUTTON_LABELS. They
mean something only together with the message they are under, which resolves to a job through
the message refs. Labels are what people see and may type (the console accepts either).
"""

from __future__ import annotations

from commands.frame.types import Action
from commands.frame.words import short, size_text  # noqa: F401 - render.short and render.size_text, as callers use them
from commands.jobs import training_text
from commands.jobs.job_view import candidates_of, image_base, picked, result_of, spec_of
from generation.animation.keyframes import ScheduleError, parse_prompt_schedule
from generation.models import families
from generation.spec import CLIP_KINDS, TEXT_KINDS, DraftRef, GenerationSpec
from storage.tables import Job, JobStatus

# A clip's buttons (pressed in commands.clips.results): never per frame
CLIP_ACTIONS = (Action("reroll", "Reroll"), Action("longer", "Longer"), Action("clipup", "Upscale 2x"), Action("remix", "Remix"))
# A video model's clip (/video, Animate): Extend goes on from its last frame; Loop draws it again to loop.
EXTEND, LOOP = Action("extend", "Extend"), Action("loop", "Loop")
VIDEO_ACTIONS = (EXTEND, Action("reroll", "Reroll"), LOOP, Action("clipup", "Upscale 2x"))

# The layout of the twelve buttons: rows of verbs (adapters keep rows where they can).
BUTTON_ROWS = (
    ("up2x", "up4x", "facefix", "detail"),
    ("subtle", "strong"),
    ("zoom1.5", "zoom2"),
    ("pan-left", "pan-right", "pan-up", "pan-down"),
)
BUTTON_LABELS = {
    "up2x": "Upscale 2x",
    "up4x": "Upscale 4x",
    "subtle": "Vary (Subtle)",
    "strong": "Vary (Strong)",
    "zoom1.5": "Zoom Out 1.5x",
    "zoom2": "Zoom Out 2x",
    "pan-left": "⬅",
    "pan-right": "➡",
    "pan-up": "⬆",
    "pan-down": "⬇",
    "facefix": "Face fix",
    "detail": "Detail",  # ADetailer's pass (commands.pictures.detail)
}

TINY_NOTE = (
    "The `tiny` model has random weights: it draws noise, quickly, so you can try every feature "
    "offline. Set SDBOT_MODEL to a real model (a Hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5, "
    "a diffusers folder, or a .safetensors file) for real pictures."
)


def drawn_text(spec: GenerationSpec, count: int, limit: int) -> str:
    """The prompt as it was drawn, not as it was written: a wildcard job's picks (numbered per
    image where they differ), a Deforum schedule's prompts in order. The template is in /info."""
    prompts = list(dict.fromkeys(picked(spec, index).prompt for index in range(max(count, 1))))
    if len(prompts) == 1:
        return short(_schedule_text(prompts[0]) if spec.kind == "deforum" else prompts[0], limit)
    each = max(20, limit // len(prompts))
    return " · ".join(f"{index + 1}. {short(picked(spec, index).prompt, each)}" for index in range(count))


def _schedule_text(prompt: str) -> str:
    """`0: a forest, 24: a city` as `a forest → a city` (as written when it is no schedule)."""
    try:
        return " → ".join(text for _, text in parse_prompt_schedule(prompt))
    except ScheduleError:
        return prompt


def clip_line(spec: GenerationSpec) -> str:
    """A clip's own settings: frames, fps, motion, camera moves, loop, Deforum's schedules."""
    clip = spec.clip
    assert clip is not None
    frames = clip_frames(spec)
    parts = [f"{frames} frames", f"{clip.fps} fps ({frames / clip.fps:.1f} s)"]
    if clip.motion:
        parts.append(f"motion {clip.motion}")
    if clip.cameras:
        parts.append("camera " + ", ".join(f"{camera.name} {camera.weight:g}" for camera in clip.cameras))
    if spec.kind == "deforum":
        moves = {"zoom": ("0:(1.0)", clip.zoom), "angle": ("0:(0)", clip.angle), "tx": ("0:(0)", clip.tx), "ty": ("0:(0)", clip.ty)}
        parts += [f"{name} {value}" for name, (still, value) in moves.items() if value != still]
        if clip.strength_schedule:
            parts.append(f"strength {clip.strength_schedule}")
        if not clip.color_coherence:
            parts.append("colour coherence off")
    if clip.motion_amount:
        parts.append(f"motion {clip.motion_amount}")
    if clip.end_image is not None:
        parts.append("loop (ends on its first frame)" if clip.end_image == spec.init_image else "to a last frame")
    if clip.loop:
        parts.append("loop")
    return " · ".join(parts)


def clip_frames(spec: GenerationSpec) -> int:
    """The frames of the clip a job makes: with Longer or Extend the clip so far and the new ones (a
    video model's Extend starts its call from the clip's last frame, so it adds all but one)."""
    clip = spec.clip
    assert clip is not None
    shared = 1 if spec.kind == "video" and clip.extend else 0
    return clip.offset + clip.frames - shared


def loops(spec: GenerationSpec) -> bool:
    """Whether a clip loops: played forward then back, or ending on its first frame."""
    clip = spec.clip
    return clip is not None and (clip.loop or (clip.end_image is not None and clip.end_image == spec.init_image))


def guidance_text(spec: GenerationSpec) -> str:
    """ "CFG 7"; "guidance 3.5" for a guidance-distilled family (FLUX.1), whose number is not CFG."""
    family = families.family(spec.family) if families.is_family(spec.family) else None
    if family is not None and family.guidance == "distilled":
        return f"guidance {spec.cfg:g}" if spec.cfg else "no guidance"
    return f"CFG {spec.cfg:g}"


def compare_line(spec: GenerationSpec) -> str:
    """A /compare's axes: `2×3 cells · Steps: 10, 20 · CFG: 3, 5, 7`."""
    plot = spec.compare
    assert plot is not None
    sizes = "×".join(str(len(axis.values)) for axis in plot.axes)
    return " · ".join([f"{sizes} cells", *(f"{axis.title}: {', '.join(axis.values)}" for axis in plot.axes)])


def settings_line(spec: GenerationSpec) -> str:
    if spec.compare is not None:  # its axes, then what every cell shares (the first cell's settings)
        return f"{compare_line(spec)}\nFirst cell: {settings_line(spec.compare.cells[0])}"
    if spec.kind in TEXT_KINDS:
        return f"seed {spec.seed}" if spec.kind == "enhance" else f"{spec.width}x{spec.height}"
    if not spec.diffusion:  # lanczos / esrgan upscales, face fixes: no model settings to show
        if spec.clip is not None:
            return " · ".join(part for part in (clip_line(spec), f"{spec.width}x{spec.height}", spec.upscaler) if part)
        return " · ".join(part for part in (f"{spec.width}x{spec.height}", spec.upscaler, spec.face_model) if part)
    parts = [f"{spec.width}x{spec.height}", f"{spec.steps} steps", spec.sampler, guidance_text(spec)]
    if spec.n > 1:
        parts.append(f"seeds {spec.seed}–{spec.seed + spec.n - 1}")
    else:
        parts.append(f"seed {spec.seed}")
    if spec.strength is not None and spec.kind != "txt2img":
        parts.append(f"strength {spec.strength:g}")
    if spec.tile:
        parts.append("seamless tile")
    if spec.draft is not None:
        parts.append(draft_words(spec.draft))
    if spec.cache:  # --fast: its cache accelerator (the PNG says its threshold)
        parts.append(f"fast ({spec.cache})")
    if spec.detail is not None:
        parts.append(f"detail {', '.join(spec.detail.targets)}")
    if spec.hypernetworks:
        parts.append("hypernet " + ", ".join(f"{ref.name} {ref.weight:g}" for ref in spec.hypernetworks))
    if spec.vae:
        parts.append(f"VAE {spec.vae}")
    if spec.styles:
        parts.append(f"style {', '.join(spec.styles)}")
    if spec.regions:
        parts.append(f"regions {spec.regions}" + (f" (base {spec.base_ratio:g})" if spec.base_ratio is not None else ""))
    if spec.controls:
        units = ", ".join(
            f"{ref.type} {ref.weight:g}" + (f" ({ref.start:g}–{ref.end:g})" if (ref.start, ref.end) != (0, 1) else "")
            for ref in spec.controls
        )
        mode = {"prompt": ", prompt first", "control": ", control first"}.get(spec.control_mode, "")
        parts.append(f"ControlNet {units}{mode}")
    if spec.image_cfg is not None:
        parts.append(f"image CFG {spec.image_cfg:g}")
    for ref in spec.references:  # Midjourney's words: --sw / --ow
        parts.append(f"{'sref' if ref.kind == 'style' else 'oref'} {ref.weight}")
    parts.append(spec.model)
    if spec.clip is not None:
        parts.insert(0, clip_line(spec))
    return " · ".join(parts)


def draft_words(draft: DraftRef) -> str:
    """How a draft was drawn, in a few words for its settings line."""
    return {
        "lora": f"draft (LoRA {draft.name})",
        "model": f"draft (model {draft.name})",
        "steps": "draft (fewer steps: no fast path here)",
    }[draft.how]


def enhance_hint(draft: DraftRef, count: int) -> str:
    """What Enhance does under a draft: the picture in full, at the size and steps it names."""
    full = f"{draft.width}x{draft.height}, {draft.steps} steps with {draft.model}"
    if count > 1:
        return f"A draft: pick one with U1–U{count}, then Enhance draws it in full ({full}), same seed and prompt."
    return f"A draft: Enhance draws it in full ({full}), same seed and prompt."


def what_text(spec: GenerationSpec, limit: int = 80, *, images: int = 1) -> str:
    """What a job draws, in a few words: its prompt as drawn (`drawn_text`, for its first
    `images` images), after the edit it makes."""
    if spec.kind == "enhance":
        return f"writing {spec.n} prompt{'s' if spec.n > 1 else ''} from “{short(spec.prompt, limit)}”"
    if spec.kind == "describe":
        return "a description of a picture"
    if spec.compare is not None:
        return f"a comparison: {drawn_text(spec.compare.cells[0], 1, limit)}"
    if spec.operation:
        return f"{spec.operation}: {drawn_text(spec, images, limit)}" if spec.prompt else spec.operation
    return drawn_text(spec, images, limit)


def job_summary(job: Job, limit: int = 50) -> str:
    """What a job is about, in a few words, for lists (/queue, /history)."""
    if job.kind == "train":
        return training_text.what_text(training_text.spec_of(job))
    return what_text(spec_of(job), limit)


def queued_text(job: Job, position: int, notes: list[str] | None = None) -> str:
    spec = spec_of(job)
    lines = [f"⏳ Job {job.id} queued (position {position}): {what_text(spec, images=spec.n)}", settings_line(spec)]
    lines.extend(notes or [])
    return "\n".join(lines)


def status_text(job: Job, position: int) -> str:
    """The live status line of a job that is waiting or running."""
    if job.kind == "train":
        return training_text.status_text(job, position)
    if job.status == JobStatus.QUEUED:
        retry = f" (try {job.attempt + 1})" if job.attempt else ""
        return f"⏳ Job {job.id} queued{retry}: position {position}"
    if job.cancel_requested:
        return f"🛑 Job {job.id}: stopping…"
    if job.kind in TEXT_KINDS:
        return f"✍️ Job {job.id}: {'writing prompts' if job.kind == 'enhance' else 'looking at the picture'}…"
    if job.progress_total:
        percent = 100 * job.progress_step // job.progress_total
        spec = spec_of(job)
        if spec.clip is not None:
            return f"🎞️ Job {job.id}: {_clip_progress(spec, job.progress_step, job.progress_total)} ({percent}%)"
        return f"🎨 Job {job.id}: drawing, step {job.progress_step}/{job.progress_total} ({percent}%)"
    return f"🎨 Job {job.id}: starting…"


def _clip_progress(spec: GenerationSpec, step: int, total: int) -> str:
    """Where a clip job is: the frame a frame-by-frame job (Deforum, an upscale of a clip) is on;
    the step of an AnimateDiff clip, whose frames are drawn together."""
    assert spec.clip is not None
    frames = spec.clip.frames
    if spec.kind in ("animate", "video2video", "video"):
        return f"drawing {frames} frames, step {step}/{total}"
    frame = min(frames, step * frames // max(total, 1) + 1)
    return f"frame {frame}/{frames}"


def result_text(job: Job) -> str:
    spec = spec_of(job)
    if spec.kind in TEXT_KINDS:
        return answer_text(job)
    head = {"txt2img": "🖼️", "img2img": "🔁", "upscale": "🔍", "facefix": "🙂", "detail": "🔎", "compare": "📊"}.get(spec.kind, "🖌️")
    if spec.clip is not None:
        head = "🎞️"
    images = len(job.outputs) if spec.clip is None else 1  # a clip's frames share one prompt (schedule)
    lines = [f"{head} Job {job.id}: {what_text(spec, 200, images=images)}", settings_line(spec)]
    if spec.tile:
        lines.append("Seamless: the picture tiles; the second image shows it 2×2.")
    if spec.draft is not None:
        lines.append(enhance_hint(spec.draft, len(job.outputs)))
    if spec.enhanced_from is not None:
        lines.append(f"Enhanced from draft job {spec.enhanced_from}: the same seed and prompt, in full.")
    lines.extend(spec.skipped)
    lines.extend(result_of(job).notes)  # e.g. a --detail that found nothing
    if spec.negative_prompt:
        lines.insert(1, f"Negative: {short(spec.negative_prompt, 120)}")
    if spec.age_restricted:
        lines.append("🔞 Drawn for an age-restricted channel.")
    if spec.clip is not None and spec.kind in ("animate", "video2video", "deforum"):
        lines.append("Reply with a new prompt to restyle it; `/frames` sends its frames.")
    if spec.kind == "video":
        lines.append("Reply `/video <what happens next> --extend` to continue it; `/frames` sends its frames.")
    if spec.model in ("tiny", "tiny-pix2pix") and spec.diffusion:
        lines.append("(tiny model: random weights, it draws noise; see /help to use a real model)")
    return "\n".join(lines)


def answer_text(job: Job) -> str:
    """A text job's answer: its heading and the candidate prompts, numbered like their buttons."""
    result = result_of(job)
    candidates = result.candidates
    if result.heading is not None:
        lines = [result.heading]
    elif job.kind == "enhance":
        lines = [f"✍️ Job {job.id}: prompts from “{short(spec_of(job).prompt, 120)}”"]
    else:
        lines = [f"🔎 Job {job.id}: what I see in the picture"]
    if not candidates:
        lines.append("The model wrote nothing usable this time; try another `--seed`.")
    for number, candidate in enumerate(candidates, 1):
        prefix = f"{number}. " if len(candidates) > 1 else ""
        lines.append(f"{prefix}{candidate.prompt}")
    lines += list(result.notes)
    if candidates:
        lines.append("Press Imagine to draw one, or copy it into `/imagine`.")
    return "\n".join(lines)


def single_text(job: Job, index: int) -> str:
    spec = image_base(job, index)
    if spec_of(job).compare is not None:  # a cell: its own job, with its own seed and settings
        return f"Cell {index + 1} of job {job.id}: {short(spec.prompt, 200)}\n{settings_line(spec)}"
    return f"Image {index + 1} of job {job.id}: {short(spec.prompt, 200)}\nseed {spec.seed + index}"


def failure_text(job: Job) -> str:
    return f"❌ Job {job.id} failed: {job.error or 'unknown error'}"


def actions_for(job: Job, role: str, output_index: int | None, *, animate: bool = False) -> tuple[Action, ...]:
    """Buttons under a message showing `job` (role "result": the job's images; "single": one of
    them). A batch gets U1..Un, V1..Vn and Reroll; one image gets the twelve edits
    (`commands.pictures.edits.BUTTON_ROWS`), Animate where `animate` (the registry has a video
    model that starts from a picture: `commands.clips.video`), and Reroll where drawing it again
    can differ. A video model's clip gets Extend, Reroll, Loop (unless it loops) and Upscale 2x."""
    if job.kind == "train":
        return training_text.actions(job) if role == "result" else ()
    if job.status != JobStatus.SUCCEEDED:
        return ()
    if job.kind in TEXT_KINDS:
        candidates = candidates_of(job)
        if len(candidates) == 1:
            return (Action("imagine:1", "Imagine this"),)
        return tuple(Action(f"imagine:{i}", f"Imagine {i}") for i in range(1, len(candidates) + 1))
    count = len(job.outputs)
    spec = spec_of(job)
    if spec.clip is not None:  # a clip: its own buttons (commands.clips.results), never per frame
        # Reroll, Longer, Upscale 2x, Remix (commands.clips.results); an upscale of a clip: its frames are final
        if role != "result" or spec.kind not in CLIP_KINDS:
            return ()
        if spec.kind == "video":
            return tuple(action for action in VIDEO_ACTIONS if action is not LOOP or not loops(spec))
        return CLIP_ACTIONS
    reroll = (Action("reroll", "Reroll", row=len(BUTTON_ROWS)),) if spec.diffusion else ()

    def again(index: int) -> tuple[Action, ...]:  # /edit's result: the same instruction on it once more
        return (Action(f"again:{index + 1}", "Edit again", row=len(BUTTON_ROWS)),) if spec.kind == "instruct" else ()

    def enhanced(index: int) -> tuple[Action, ...]:  # a draft drawn in full (commands.explore.draft)
        return (Action(f"enhance:{index + 1}", "Enhance", row=len(BUTTON_ROWS)),) if spec.draft is not None else ()

    def moving(index: int) -> tuple[Action, ...]:  # Animate: image-to-video of the picture (commands.clips.video)
        return (Action(f"animate:{index + 1}", "Animate", row=len(BUTTON_ROWS)),) if animate else ()

    if role == "single" and output_index is not None:
        return (*edit_actions(output_index), *enhanced(output_index), *again(output_index), *moving(output_index))
    if role != "result":
        return ()
    if spec.compare is not None:  # U<i> under the grid, five a row (Discord's rows take five)
        return tuple(Action(f"upscale:{i}", f"U{i}", row=(i - 1) // 5) for i in range(1, count + 1))
    if count == 1:
        return (*edit_actions(0), *enhanced(0), *again(0), *moving(0), *reroll)
    upscales = tuple(Action(f"upscale:{i}", f"U{i}", row=0) for i in range(1, count + 1))
    variations = tuple(Action(f"vary:{i}", f"V{i}", row=1) for i in range(1, count + 1))
    return (*upscales, *variations, Action("reroll", "Reroll", row=2))


def edit_actions(index: int) -> tuple[Action, ...]:
    return tuple(Action(f"{verb}:{index + 1}", BUTTON_LABELS[verb], row=row) for row, verbs in enumerate(BUTTON_ROWS) for verb in verbs)
