"""What a stored job is, read back: its spec, the spec a remix of one of its pictures starts from,
what its result holds beside its pictures (`storage.results.JobResult`: control maps, a clip's
files, candidate prompts) and its pictures as files. Presentation lives in `commands.jobs.render`;
this module has no words for people."""

from __future__ import annotations

from commands.frame.context import Context
from commands.frame.types import ImageFile
from generation.spec import TEXT_KINDS, GenerationSpec
from storage.results import Candidate, ClipFiles, JobResult, StoredPicture
from storage.tables import Job


def spec_of(job: Job) -> GenerationSpec:
    return GenerationSpec.model_validate(job.params)


def image_base(job: Job, index: int) -> GenerationSpec:
    """The job as the base of a remix or edit of its image `index`: with that image's wildcard
    picks as its prompt, so a Vary of "a {red|blue} fox" stays the colour it showed; of a
    /compare's cell, that cell's own job."""
    spec = spec_of(job)
    if spec.compare is not None:
        return picked(spec.compare.cells[index], 0)
    return picked(spec, index)


def picked(spec: GenerationSpec, index: int) -> GenerationSpec:
    """`spec` with the prompts its image `index` was drawn with (a wildcard job picks per image),
    and with `--chaos` the CFG too (its variation made: the picture's own settings)."""
    if not spec.chaos and not spec.wildcards and "{" not in spec.prompt + spec.negative_prompt:
        return spec
    picked = spec.image_spec(index)
    return spec.evolve(prompt=picked.prompt, negative_prompt=picked.negative_prompt, cfg=picked.cfg, wildcards={}, chaos=0)


def result_of(job: Job) -> JobResult:
    """What the job left besides its pictures (`storage.results.JobResult`), typed."""
    return JobResult.of(job)


def maps_of(job: Job) -> tuple[StoredPicture, ...]:
    """The control maps a picture job stored beside its outputs, in the order of its controls."""
    return result_of(job).maps if job.kind not in TEXT_KINDS else ()


def candidates_of(job: Job) -> tuple[Candidate, ...]:
    """The candidate prompts of a text job's (or an immediate answer's) result."""
    return result_of(job).candidates


def clip_of(job: Job) -> ClipFiles | None:
    """A clip job's files (its MP4 and GIF); None for every other job (a training run never has one)."""
    return result_of(job).clip if job.kind != "train" else None


def is_clip_job(job: Job) -> bool:
    return clip_of(job) is not None


def image_files(ctx: Context, job: Job, indexes: list[int] | None = None) -> tuple[ImageFile, ...]:
    chosen = job.outputs if indexes is None else [job.outputs[i] for i in indexes]
    return tuple(ImageFile(ctx.blobs.path(o.blob_key), o.width, o.height, o.seed, o.index) for o in chosen)
