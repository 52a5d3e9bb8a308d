"""Batches: several people's txt2img jobs with one batch key drawn in one pipeline call.

A GPU draws 8 pictures in one call much faster than in 8 (the UNet's work per step is one large
batch instead of eight small ones, and the per-call overheads are paid once). Nothing about a
picture changes: each job's prompt is encoded alone, each image keeps its own generator (seed + i
of its own job), and the batch key (GenerationSpec.batch_key) admits only jobs whose pipeline
call is otherwise the same. So each job's pictures equal those it gets alone, to float rounding.
The worker completes each job separately (generation.worker)."""

from __future__ import annotations

from collections.abc import Callable

from generation.engine import Engine, ProgressFn, Tracker
from generation.jobs import Rendered, encode
from generation.spec import GenerationSpec


def render_batch(
    engine: Engine,
    specs: list[GenerationSpec],
    job_ids: list[int | None],
    *,
    on_progress: ProgressFn = lambda step, total: None,
    should_stop: Callable[[], bool] = lambda: False,
    defer_png: bool = False,
) -> list[Rendered]:
    """Draw the jobs `specs` together: each job's PNGs, in the order given (`defer_png`: the
    pictures, left for `generation.jobs.encoded` to encode, as `render_job` does)."""
    tracker = Tracker(on_progress, should_stop)
    drawn = engine.diffuse_batch(specs, tracker)
    return [
        Rendered([encode(spec, index, image, job_id, defer=defer_png) for index, image in enumerate(images)], [])
        for spec, images, job_id in zip(specs, drawn, job_ids, strict=True)
    ]
