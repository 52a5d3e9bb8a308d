"""What a finished job left besides its pictures: `JobResult`, the typed form of the `jobs.result`
JSON column, declared once for everyone who writes or reads it.

Every key in the column, and who writes it:
- a picture job (the worker, `generation.worker.outputs.store`): `maps`, the ControlNet maps that
  steered it, for a clip `clip`, its MP4 and GIF (its frames are the job's outputs), and `notes`
  (a `--detail` that found nothing), and for a /compare `grid`, the labelled grid of its cells
  (the job's outputs); a job with none of these stores no result (NULL), and so does every job of
  a batch;
- a text job (/enhance, /describe; `generation.jobs.answer_job`, stored by the worker): `candidates`;
- an answer made at once (/describe of a picture that carries its settings, `queue.record_answer`):
  `heading`, `candidates`, `notes` and `source` (which tool wrote the picture's settings);
- a training run (`generation.training.run.TrainingTask.finish`): `method`, `name`, `captions`,
  `notes`, and `preview` for a `/train preview`; a run that trained also `asset`, `kind` (the
  asset's), `format`, `steps_done`, `loss`, `losses`, `stopped_early`, `sample`, `bytes`, `held_out`,
  and a hypernetwork's `document` (its A1111 `.pt`, sent with the result).

The JSON is the one older versions wrote, flat and key for key: a row written before this type
existed reads (tests/test_job_result.py), and code that still reads the column as a dict reads
rows written through it, because `to_json` writes exactly the keys the writer gave
(`exclude_unset`), no defaults besides. Keys this version does not know (a newer version's) are
kept, not dropped (`extra="allow"`); a reader never writes the column back.

Why in storage: the worker writes it, `storage.queue.complete` stores it (and records the blobs it
names), and the command layer reads it; storage imports nothing of the engine
(`bot → commands → storage ← generation`), so the type sits beside the column, importable from
both sides without a circle and without torch (pydantic only). It imports `storage.tables` only
for the `Job` it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from storage.tables import Job


class _Stored(BaseModel):
    """A part of the column: immutable, and keeping keys it does not know."""

    model_config = ConfigDict(frozen=True, extra="allow")


class StoredPicture(_Stored):
    """A PNG in the blob store, with what a reply needs to send it without opening it: a control
    map (`JobResult.maps`), a training run's last sample (`TrainingSample`)."""

    blob: str  # the blob store's key
    width: int
    height: int
    size: int  # bytes of the blob


class TrainingSample(StoredPicture):
    """The picture a training run drew at its last step (earlier samples are deliveries of their own)."""

    step: int


class StoredFile(_Stored):
    """A file in the blob store sent as it is, under the name people save it as (a trained
    hypernetwork's A1111 `.pt`)."""

    blob: str  # the blob store's key
    filename: str
    size: int  # bytes of the blob


class ClipFiles(_Stored):
    """A clip's playable files, made from its frames (the job's outputs) by generation.animation.video."""

    mp4: str  # the blob store's keys
    gif: str
    fps: int
    width: int
    height: int
    frames: int  # frames drawn; with `loop` the files play them forward, then backward
    loop: bool
    mp4_size: int  # bytes of each blob
    gif_size: int


class Candidate(_Stored):
    """A prompt a text job (or an answer made at once) offers, and what its Imagine button draws:
    `spec`, one of our own pictures' job exactly (a GenerationSpec's JSON; validate it with
    `GenerationSpec.model_validate`), else `prompt` with `negative` and `options` (raw option
    values for `commands.jobs.options.read_options`)."""

    prompt: str
    negative: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any] | None = None


class JobResult(_Stored):
    """The `jobs.result` column. One flat model, as the JSON is: each field belongs to the kinds
    of job the module's docstring names, and is empty (its default) for the others."""

    # a picture job
    maps: tuple[StoredPicture, ...] = ()  # in the order of the spec's controls
    clip: ClipFiles | None = None
    grid: StoredPicture | None = None  # /compare: the labelled grid of its cells (the job's outputs)
    # a text job, or an answer made at once
    candidates: tuple[Candidate, ...] = ()
    heading: str | None = None  # an answer made at once: the line above its candidates
    source: str | None = None  # an answer made at once: the tool that wrote the picture's settings
    notes: tuple[str, ...] = ()  # lines for the person (an answer's, a training run's, a picture job's)
    # a training run
    method: str | None = None
    name: str | None = None  # the name asked for (`asset`: the one it got)
    captions: tuple[str, ...] = ()
    preview: bool = False  # a `/train preview`: captions only, nothing trained
    asset: str | None = None
    asset_kind: str | None = Field(None, validation_alias=AliasChoices("asset_kind", "kind"), serialization_alias="kind")
    asset_format: str | None = Field(None, validation_alias=AliasChoices("asset_format", "format"), serialization_alias="format")
    asset_bytes: int | None = Field(None, validation_alias=AliasChoices("asset_bytes", "bytes"), serialization_alias="bytes")
    steps_done: int | None = None
    loss: float | None = None
    losses: tuple[tuple[int | float, ...], ...] = ()  # (step, loss) pairs (int | float: a step stays as written)
    stopped_early: bool = False
    sample: TrainingSample | None = None
    held_out: tuple[float, ...] = ()  # the held-out loss before the first step and after the last, when measured
    document: StoredFile | None = None  # a file sent with the result (a hypernetwork's A1111 .pt)

    @classmethod
    def of(cls, job: Job) -> JobResult:
        """What `job` left: its column read (empty when NULL: not finished, a batch job, or a
        picture job without maps or clip)."""
        return cls.from_json(job.result)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> JobResult:
        """The column's JSON, as any version wrote it. Raises pydantic's ValidationError (a
        ValueError) when a known key holds something else."""
        return cls.model_validate(dict(data or {}))

    def to_json(self) -> dict[str, Any] | None:
        """The column's value: the keys the writer gave (no defaults), or None when it gave none."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True) or None
