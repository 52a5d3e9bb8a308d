"""What the worker runs for a `train` job: the bridge between the training loop (engine thread)
and the database (event loop), and the run's end.

- `prepare` (event loop): the run's row: its last checkpoint (to resume from) and its captions.
- `work` (engine thread): captions (once per run), DreamBooth's class pictures (once per class),
  then `trainer.train`, whose hooks call back into the event loop and wait: a checkpoint blob
  and its row, a sample (a PNG whose `parameters` name the run, the step and how it was drawn)
  and its delivery, each fenced on the job's attempt (`queue.hold`), so a worker whose lease was
  taken over writes nothing.
- `finish` (event loop): the file checked as an upload would be, stored as the person's private
  asset, and the job completed with its outbox row, in one transaction. A hypernetwork's A1111
  `.pt` is kept beside it and sent with the result as a document (A1111 loads the `.pt`).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from generation.assets.adapters import model_architecture
from generation.assets.files import inspect_asset, valid_asset_name
from generation.assets.safetensors_header import addnet_hash
from generation.engine import Engine
from generation.errors import EngineUserError
from generation.parameters import VERSION, png, settings_text
from generation.training import dataset, export, trainer
from generation.training.hooks import Stopping
from generation.training.spec import METHOD_LABELS, TrainingSpec
from storage import assets, queue, training
from storage.blobs import BlobStore, key_of
from storage.db import Database
from storage.results import JobResult, StoredFile, TrainingSample
from storage.tables import Job

log = logging.getLogger(__name__)

HOOK_TIMEOUT_SECONDS = 120.0  # longest the training thread waits on one database write


@dataclass
class Produced:
    """What the engine thread hands back: the file, or (preview) just the captions."""

    captions: list[str]
    notes: list[str]
    data: bytes | None = None
    learned: trainer.Learned | None = None
    sample: TrainingSample | None = None  # the last sample, which comes with the result
    preview: bool = False
    document: bytes | None = None  # a file sent with the result: a hypernetwork's A1111 .pt


@dataclass
class TrainingTask:
    """A `train` job as the worker runs it: a `generation.worker.tasks.Task[Produced]` (by its
    shape; this package does not import the worker), whose `work` also raises TrainingYielded
    when the worker wants it to give way, and LeaseLost from a fenced write."""

    db: Database
    engine: Engine
    blobs: BlobStore
    job: Job
    attempt: int
    owner: str
    loop: asyncio.AbstractEventLoop
    wake: Callable[[], None]
    spec: TrainingSpec = field(init=False)
    resume: trainer.Resume | None = field(init=False, default=None)
    captions: list[str] | None = field(init=False, default=None)
    last_sample: TrainingSample | None = field(init=False, default=None)
    a1111_pt: bytes | None = field(init=False, default=None)  # a hypernetwork's .pt, written by `_export`

    def __post_init__(self) -> None:
        self.spec = TrainingSpec.model_validate(self.job.params)  # ValueError: written by an incompatible version

    def describe(self) -> str:
        spec = self.spec
        return f"train {spec.method} `{spec.name}` on {spec.model}, {len(spec.images)} pictures, {spec.steps} steps"

    async def prepare(self) -> None:
        async with self.db.transaction() as session:
            run = await training.of_job(session, self.job.id)
            if run is None:
                raise EngineUserError("this training run's record is missing; start it again with /train.")
            loose = await training.take_loose_checkpoint(session, self.job, self.attempt, self.owner)
            self.captions = list(run.captions) if run.captions else None
            if run.checkpoint_blob and run.checkpoint_step > 0:
                self.resume = trainer.Resume(run.checkpoint_step, self.blobs.path(run.checkpoint_blob).read_bytes())
                log.info("job %s: resuming the training from step %d", self.job.id, run.checkpoint_step)
        if loose is not None:  # an earlier attempt died between writing a checkpoint and deleting the one before
            await asyncio.to_thread(self.blobs.delete, loose)
            log.info("job %s: deleted checkpoint %s, which an earlier attempt left behind", self.job.id, loose)

    # --- the engine thread ---------------------------------------------------------------------

    def work(
        self, progress: Callable[[int, int, str], None], stopping: Callable[[], Stopping], should_yield: Callable[[], bool]
    ) -> Produced:
        spec = self.spec
        notes: list[str] = []
        progress(self.resume.step if self.resume else 0, spec.steps, "writing captions" if self.captions is None else "starting")
        if self.captions is None:
            self.captions, notes = dataset.captions_for(self.engine, spec, lambda: bool(stopping()))
            self._call(self._save_captions(self.captions))
        if spec.preview:
            return Produced(self.captions, notes, preview=True)
        hooks = trainer.Hooks(
            progress=progress,
            stopping=stopping,
            should_yield=should_yield,
            checkpoint=lambda step, data, losses: self._call(self._checkpoint(step, data, losses)),
            sample=lambda step, picture, last: self._call(self._sample(step, self._sample_png(step, picture), last)),
            class_images=lambda key: self._call(self._class_images(key)),
            save_class_images=lambda key, pngs: self._call(self._save_class_images(key, pngs)),
        )
        data, learned = trainer.train(self.engine, spec, hooks, captions=self.captions, resume=self.resume, export=self._export)
        return Produced(self.captions, notes, data=data, learned=learned, sample=self.last_sample, document=self.a1111_pt)

    def _sample_png(self, step: int, picture: Image.Image) -> bytes:
        """A sample as the PNG the chat gets, with its parameters (encoded here, on the engine
        thread, not on the event loop)."""
        return png(picture, sample_parameters(self.spec, step, picture.size, job_id=self.job.id))

    def _export(self, learned: trainer.Learned) -> bytes:
        spec = self.spec
        loaded = self.engine.models.get(spec.model)
        architecture = model_architecture(loaded.txt2img)
        metadata = export.training_metadata(
            spec,
            architecture=architecture,
            captions=learned.captions,
            steps_done=learned.steps_done,
            loss=learned.loss,
            base_model_name=loaded.entry.display_name,
        )
        if spec.method == "embedding":
            return export.embedding_file(learned.vectors, metadata)
        if spec.method == "hypernetwork":
            comment = metadata["ss_training_comment"]
            self.a1111_pt = export.hypernetwork_pt(
                learned.hypernetwork, name=spec.name, steps=learned.steps_done, model_name=loaded.entry.display_name, comment=comment
            )
            return export.hypernetwork_stored(self.a1111_pt, spec.name, metadata)
        method = "lora" if spec.method == "dreambooth" else spec.method
        return export.adapter_file(learned.components, trainer.ADAPTER, method, metadata, sdxl=architecture == "sdxl")  # type: ignore[arg-type]

    def _call(self, coroutine: Any) -> Any:
        """Run a coroutine on the event loop from the engine thread, and wait for it."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(HOOK_TIMEOUT_SECONDS)

    # --- the database side of the hooks --------------------------------------------------------

    async def _save_captions(self, captions: list[str]) -> None:
        async with self.db.transaction() as session:
            await training.save_captions(session, self.job, self.attempt, self.owner, captions)

    async def _checkpoint(self, step: int, data: bytes, losses: list[list[float]]) -> None:
        async with self.db.transaction() as session:  # first: a crash mid-write leaves a file the run knows of
            await training.writing_checkpoint(session, self.job, self.attempt, self.owner, blob=key_of(data, "ckpt"))
        key = await asyncio.to_thread(self.blobs.put, data, "ckpt")
        async with self.db.transaction() as session:
            superseded = await training.save_checkpoint(
                session, self.job, self.attempt, self.owner, step=step, blob=key, size=len(data), losses=losses
            )
        if superseded:
            await asyncio.to_thread(self.blobs.delete, superseded)
        log.info("job %s: checkpoint at step %d (%.1f MiB)", self.job.id, step, len(data) / 2**20)

    async def _sample(self, step: int, png: bytes, last: bool) -> None:
        key = await asyncio.to_thread(self.blobs.put, png, "png")
        with Image.open(io.BytesIO(png)) as picture:
            width, height = picture.size
        async with self.db.transaction() as session:
            await training.add_sample(
                session,
                self.job,
                self.attempt,
                self.owner,
                step=step,
                blob=key,
                width=width,
                height=height,
                size=len(png),
                deliver=not last,
            )
        if last:
            self.last_sample = TrainingSample(step=step, blob=key, width=width, height=height, size=len(png))
        else:
            self.wake()  # the adapters send the sample now

    async def _class_images(self, key: str) -> list[bytes] | None:
        async with self.db.transaction() as session:
            blobs = await training.class_images(session, key)
        return None if blobs is None else [self.blobs.path(blob).read_bytes() for blob in blobs]

    async def _save_class_images(self, key: str, pngs: list[bytes]) -> None:
        keys, sizes = [], []
        for data in pngs:
            keys.append(await asyncio.to_thread(self.blobs.put, data, "png"))
            with Image.open(io.BytesIO(data)) as picture:
                sizes.append((len(data), *picture.size))
        async with self.db.transaction() as session:
            await training.save_class_images(session, key, keys, sizes)

    # --- the end -----------------------------------------------------------------------------

    async def finish(self, produced: Produced, run_seconds: float) -> None:
        spec, job = self.spec, self.job
        if produced.preview:
            result = JobResult(method=spec.method, name=spec.name, captions=produced.captions, notes=produced.notes, preview=True)
            async with self.db.transaction() as session:
                await training.finish(session, job, self.attempt, self.owner, asset_id=None, result=result, run_seconds=run_seconds)
            return
        assert produced.data is not None and produced.learned is not None
        kind = spec.asset_kind
        info = inspect_asset(produced.data, f"{spec.name}.safetensors", kind=kind, max_bytes=len(produced.data) + 1)  # type: ignore[arg-type]
        key = await asyncio.to_thread(self.blobs.put, produced.data, "st")
        document_key = await asyncio.to_thread(self.blobs.put, produced.document, "pt") if produced.document else None
        learned = produced.learned
        notes = list(produced.notes)
        async with self.db.transaction() as session:
            name = spec.name
            if await assets.find_own(session, job.user_id, kind, name):  # made meanwhile, by hand or another run
                name = free_name(spec.name, job.id)
                notes.append(f"You have a {kind} named `{spec.name}` already, so this one is `{name}`.")
            await queue.record_blob(session, key, info.size, "application/octet-stream", None, None)
            document = None
            if produced.document and document_key:  # named as the asset is: A1111 lists a hypernetwork by its file's name
                await queue.record_blob(session, document_key, len(produced.document), "application/octet-stream", None, None)
                document = StoredFile(blob=document_key, filename=f"{name}.pt", size=len(produced.document))
            title = f"{METHOD_LABELS[spec.method]} trained by sdbot (job {job.id})"
            more = {"widths": list(info.widths)} if info.widths else {}  # as an upload records them
            fields = info.stored_fields(triggers=[spec.trigger], title=title, addnet_hash=addnet_hash(produced.data), trained=True, **more)
            asset = await assets.add(session, job.user_id, kind, name, blob_key=key, **fields)
            result = JobResult(
                method=spec.method,
                name=spec.name,
                captions=produced.captions,
                notes=notes,
                asset=asset.name,
                asset_kind=kind,
                asset_format=info.format,
                steps_done=learned.steps_done,
                loss=learned.loss,
                losses=learned.losses,
                stopped_early=learned.stopped_early,
                sample=produced.sample,
                asset_bytes=info.size,
                held_out=tuple(learned.held_out or ()),
                **({"document": document} if document else {}),
            )
            done_with = await training.finish(
                session, job, self.attempt, self.owner, asset_id=asset.id, result=result, run_seconds=run_seconds, losses=learned.losses
            )
        if done_with:
            await asyncio.to_thread(self.blobs.delete, done_with)


def sample_parameters(spec: TrainingSpec, step: int, size: tuple[int, int], *, job_id: int) -> str:
    """A sample's `parameters`, in A1111's form: its prompt, then how it was drawn (the settings
    of `trainer.Run.sample`) and what it shows: the run and the step it had reached."""
    fields: list[tuple[str, object]] = [
        ("Steps", spec.sample_steps),
        ("Sampler", dataset.SAMPLE_SAMPLER),
        ("CFG scale", f"{dataset.SAMPLE_CFG:g}"),
        ("Seed", spec.seed),
        ("Size", f"{size[0]}x{size[1]}"),
        ("Model", spec.model),
        ("Training", f"{METHOD_LABELS[spec.method]} {spec.name}"),
        ("Training step", f"{step}/{spec.steps}"),
        ("Job", job_id),
        ("Version", VERSION),
    ]
    return f"{spec.sample_prompt}\n{settings_text(fields)}"


def free_name(name: str, job_id: int) -> str:
    candidate = f"{name}-{job_id}"
    return candidate if valid_asset_name(candidate) else f"trained-{job_id}"
