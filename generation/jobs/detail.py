"""ADetailer's pass: find faces, hands or people in a picture and repaint each at the model's
native size, then paste it back through a feathered mask. `--detail` runs it on every picture a
drawing job makes (`refine`, called by `generation.jobs.render_job` after the drawing); the
Detail button runs it alone on a picture (the job kind `detail`).

Each region is a box from `generation.imaging.detect`, grown by `dilate` pixels and feathered by
`mask_blur` (the reach of `--blur`), repainted by the same code as `/inpaint --only-masked`
(`painting.repaint`: a padded crop at native size, the result scaled back and composited with
integer arithmetic), so every pixel farther than box + dilate + blur from every region is the
picture's own, bit for bit. Regions are repainted one after another, each on the result of the
one before, as ADetailer does; each target is detected on the picture as it is by then.

The passes use the job's model, LoRAs, negative prompt, steps, sampler and CFG, with the detail
prompt (or the job's) and the detail strength, from the picture's own seed; not the job's
ControlNets or image references (their maps and pictures are of the whole canvas, and ADetailer
leaves ControlNet off unless asked). A picture where nothing is found is kept as drawn, and the
job's result says so (`notes`); the Detail button's job, which exists only to detail, fails with
that sentence instead.
"""

from __future__ import annotations

import math

from PIL import Image

from generation.engine import Engine, Tracker
from generation.errors import EngineUserError
from generation.imaging.faces import FaceBox
from generation.imaging.segment import blur_mask
from generation.jobs.painting import repaint
from generation.spec import DetailSpec, GenerationSpec

MAX_REGIONS = 8  # per target and picture, biggest first: a crowd is not repainted face by face
MIN_REGION = 32  # pixels, as /facefix: smaller detections are mostly false (noise, texture)
TARGET_WORDS = {"face": ("face", "faces"), "hand": ("hand", "hands"), "person": ("person", "people")}


def detail(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    """The Detail button's job: the pass alone on the job's picture."""
    assert spec.detail is not None
    tracker.planned = planned_steps(spec, 1)
    [image], found = refine(engine, spec, [engine.init_image(spec)], tracker, [spec.seed])
    if not found[0]:
        raise EngineUserError(
            nothing_found(spec.detail, None) + " Regions smaller than about 32 pixels, turned or strongly stylised are hard to detect."
        )
    return [image]


def planned_steps(spec: GenerationSpec, pictures: int) -> int:
    """The detail steps to expect for `pictures` pictures, one region per target each (the
    progress bar's estimate until detection says how many there are)."""
    assert spec.detail is not None
    return pictures * len(spec.detail.targets) * region_steps(spec)


def drawing_steps(spec: GenerationSpec) -> int:
    """The denoising steps of the drawing before the detail pass (one pass for the whole batch)."""
    if spec.kind == "txt2img" or spec.strength is None:
        return spec.steps
    return min(int(spec.steps * spec.strength), spec.steps)


def region_steps(spec: GenerationSpec) -> int:
    """Steps each region's repaint runs: the job's steps at the detail strength, at least one."""
    assert spec.detail is not None
    return int(pass_steps(spec) * spec.detail.strength)


def pass_steps(spec: GenerationSpec) -> int:
    """The job's steps, raised where its strength would leave no denoising step at all."""
    assert spec.detail is not None
    return max(spec.steps, math.ceil(1 / spec.detail.strength))


def refine(
    engine: Engine, spec: GenerationSpec, images: list[Image.Image], tracker: Tracker, seeds: list[int]
) -> tuple[list[Image.Image], list[int]]:
    """`images` (drawn by `spec`, image i from `seeds[i]`) with their regions repainted, and how
    many regions each had."""
    detail_spec = spec.detail
    assert detail_spec is not None
    per_region = region_steps(spec)
    results, counts = [], []
    for image, seed in zip(images, seeds, strict=True):
        count = 0
        for target in detail_spec.targets:
            tracker.check()
            boxes = detect(engine, target, image)
            # The plan counted one region per target (`planned_steps`); now the count is known.
            tracker.planned = max(tracker.done, tracker.planned + (len(boxes) - 1) * per_region)
            for box in boxes:
                image = repaint_region(engine, spec, tracker, image, box, seed)
            count += len(boxes)
        results.append(image)
        counts.append(count)
    return results, counts


def detect(engine: Engine, target: str, image: Image.Image) -> list[FaceBox]:
    """Boxes of `target` in `image`, biggest first, at most MAX_REGIONS (the seam a test may replace)."""
    return engine.tools.region_detector(target).detect(image, min_size=MIN_REGION)[:MAX_REGIONS]


def region_mask(size: tuple[int, int], box: FaceBox, detail: DetailSpec) -> Image.Image:
    """The feathered 'L' mask of one region: the box grown by `dilate` on every side (clamped to
    the picture), then blurred to reach `mask_blur` pixels further (`segment.blur_mask`)."""
    width, height = size
    grow = detail.dilate
    mask = Image.new("L", size, 0)
    left, top = max(0, box.x - grow), max(0, box.y - grow)
    right, bottom = min(width, box.x + box.width + grow), min(height, box.y + box.height + grow)
    mask.paste(255, (left, top, right, bottom))
    return blur_mask(mask, detail.mask_blur)


def repaint_region(engine: Engine, spec: GenerationSpec, tracker: Tracker, image: Image.Image, box: FaceBox, seed: int) -> Image.Image:
    """`image` with `box` repainted (see the module's docstring); progress goes on in `tracker`."""
    detail_spec = spec.detail
    assert detail_spec is not None
    soft = region_mask(image.size, box, detail_spec)
    # One picture at its seed, as an "only masked" inpaint of the job's model and settings. Its
    # kind is txt2img only so that the spec validates without a mask blob: `repaint` takes the
    # picture and mask themselves, and the engine draws by the pipeline kind it is given.
    region_spec = spec.evolve(
        kind="txt2img",
        init_image=None,
        n=1,
        seed=seed,
        prompt=detail_spec.prompt or spec.prompt,
        strength=detail_spec.strength,
        steps=pass_steps(spec),
        only_masked=True,
        only_masked_padding=detail_spec.padding,
        mask_blur=detail_spec.mask_blur,
        width=image.width,
        height=image.height,
        controls=(),
        references=(),
        regions=None,
        tile=False,
        wildcards={},
        detail=None,
    )
    # Its own tracker (no ControlNet maps, no references, its own prompt encodings), counting on
    # from where the job's progress is.
    own = Tracker(tracker.on_progress, tracker.should_stop, planned=tracker.planned)
    own.done = tracker.done
    [painted] = repaint(engine, region_spec, own, image, soft)
    tracker.done = own.done
    return painted


def nothing_found(detail: DetailSpec, index: int | None) -> str:
    """The plain sentence for a picture where no target was found."""
    words = " or ".join(TARGET_WORDS[target][0] for target in detail.targets)
    where = f"picture {index + 1}" if index is not None else "this picture"
    return f"I found no {words} in {where}, so there was nothing to detail."
