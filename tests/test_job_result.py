"""`storage.results.JobResult`, the typed `jobs.result`: rows as older versions wrote them read key
for key and write back unchanged; what the worker writes (`generation.worker.outputs.store`)
and what the queue stores and records (`queue.complete`, `queue.record_answer`), on both backends."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import select

from generation.worker.outputs import store
from storage import queue, users
from storage.blobs import LocalBlobStore
from storage.db import Database
from storage.results import Candidate, ClipFiles, JobResult, StoredPicture, TrainingSample
from storage.tables import Blob, Job
from tests.test_storage import add_job, claim, db  # noqa: F401 - `db`: the fixture, on SQLite and PostgreSQL

KEY = "ab" * 32

# Each dict exactly as the code before JobResult wrote it (generation/worker.py, generation/training/run.py,
# commands/describe.py, tests/support/null_worker.py).
OLD_ROWS: dict[str, dict[str, Any]] = {
    "control maps": {"maps": [{"blob": f"{KEY}.png", "width": 64, "height": 48, "size": 321}]},
    "clip": {
        "clip": {
            "mp4": f"{KEY}.mp4",
            "gif": f"{KEY}.gif",
            "fps": 8,
            "width": 64,
            "height": 64,
            "frames": 16,
            "loop": True,
            "mp4_size": 1000,
            "gif_size": 2000,
        }
    },
    "enhance": {"candidates": [{"prompt": "a red fox in the snow"}, {"prompt": "a fox, detailed"}]},
    "describe": {"candidates": [{"prompt": "a fox", "options": {"size": "512x768"}}]},
    "an answer made at once": {
        "heading": "📋 This picture carries its settings (A1111). Prompt:",
        "candidates": [{"prompt": "a fox", "negative": "blurry", "options": {"steps": 20, "cfg": 7.0}}],
        "notes": ["Negative prompt: blurry"],
        "source": "a1111",
    },
    "our own picture": {
        "heading": "📋 This picture carries its settings (sdbot). Prompt:",
        "candidates": [{"prompt": "a fox", "spec": {"kind": "txt2img", "prompt": "a fox", "seed": 5}}],
        "notes": [],
        "source": "sdbot",
    },
    "training preview": {"method": "lora", "name": "fox", "captions": ["a fox", "a fox sitting"], "notes": [], "preview": True},
    "training run": {
        "method": "lora",
        "name": "fox",
        "captions": ["a fox"],
        "notes": ["You have a lora named `fox` already, so this one is `fox-7`."],
        "asset": "fox-7",
        "kind": "lora",
        "format": "kohya",
        "steps_done": 6,
        "loss": 0.0812,
        "losses": [[1, 0.2], [6, 0.0812]],
        "stopped_early": False,
        "sample": {"step": 6, "blob": f"{KEY}.png", "width": 64, "height": 64, "size": 555},
        "bytes": 4096,
        "held_out": [0.3, 0.25],
    },
    "training run without sample": {
        "method": "embedding",
        "name": "fox",
        "captions": ["a fox"],
        "notes": [],
        "asset": "fox",
        "kind": "embedding",
        "format": "a1111",
        "steps_done": 3,
        "loss": None,
        "losses": [],
        "stopped_early": True,
        "sample": None,
        "bytes": 100,
        "held_out": [],
    },
    "a test's own keys": {"by": "host:1:abcd", "attempt": 2},
}


@pytest.mark.parametrize("row", OLD_ROWS.values(), ids=OLD_ROWS.keys())
def test_a_row_an_older_version_wrote_reads_and_writes_back_unchanged(row: dict[str, Any]) -> None:
    result = JobResult.from_json(row)
    assert result.to_json() == row
    assert JobResult.from_json(result.to_json()) == result


def test_old_rows_read_typed() -> None:
    maps = JobResult.from_json(OLD_ROWS["control maps"])
    assert maps.maps == (StoredPicture(blob=f"{KEY}.png", width=64, height=48, size=321),) and maps.clip is None
    clip = JobResult.from_json(OLD_ROWS["clip"]).clip
    assert clip is not None and (clip.mp4, clip.frames, clip.loop, clip.gif_size) == (f"{KEY}.mp4", 16, True, 2000)
    answer = JobResult.from_json(OLD_ROWS["an answer made at once"])
    [candidate] = answer.candidates
    assert (candidate.prompt, candidate.negative, candidate.options, candidate.spec) == ("a fox", "blurry", {"steps": 20, "cfg": 7.0}, None)
    assert answer.heading and answer.notes == ("Negative prompt: blurry",) and answer.source == "a1111"
    assert JobResult.from_json(OLD_ROWS["our own picture"]).candidates[0].spec == {"kind": "txt2img", "prompt": "a fox", "seed": 5}
    assert JobResult.from_json(OLD_ROWS["enhance"]).candidates[0] == Candidate(prompt="a red fox in the snow")
    run = JobResult.from_json(OLD_ROWS["training run"])
    assert (run.asset, run.asset_kind, run.asset_format, run.asset_bytes, run.steps_done) == ("fox-7", "lora", "kohya", 4096, 6)
    assert run.sample == TrainingSample(step=6, blob=f"{KEY}.png", width=64, height=64, size=555)
    assert run.losses[-1] == (6, 0.0812) and run.held_out == (0.3, 0.25) and not run.preview and not run.stopped_early
    preview = JobResult.from_json(OLD_ROWS["training preview"])
    assert preview.preview and preview.captions == ("a fox", "a fox sitting") and preview.asset is None
    assert JobResult.from_json(OLD_ROWS["a test's own keys"]).model_extra == {"by": "host:1:abcd", "attempt": 2}


def test_nothing_stored_reads_empty_and_writes_null() -> None:
    for stored in (None, {}):
        empty = JobResult.of(Job(result=stored))
        assert empty == JobResult() and empty.maps == () and empty.candidates == () and empty.clip is None
        assert empty.to_json() is None


def test_a_known_key_holding_something_else_is_refused() -> None:
    with pytest.raises(ValidationError):
        JobResult.from_json({"maps": [{"blob": "x.png", "width": "wide"}]})
    with pytest.raises(ValueError):  # pydantic's ValidationError is one
        JobResult.from_json({"candidates": [{"options": {}}]})  # no prompt


def test_a_new_result_writes_exactly_the_keys_it_was_given() -> None:
    """The old flat shape, so code that still reads the column as a dict reads it."""
    picture = StoredPicture(blob=f"{KEY}.png", width=8, height=8, size=10)
    assert JobResult(maps=(picture,)).to_json() == {"maps": [{"blob": f"{KEY}.png", "width": 8, "height": 8, "size": 10}]}
    assert JobResult(candidates=(Candidate(prompt="a fox"),)).to_json() == {"candidates": [{"prompt": "a fox"}]}
    trained = JobResult(method="lora", name="fox", asset_kind="lora", asset_format="kohya", asset_bytes=9, sample=None, stopped_early=False)
    assert trained.to_json() == {
        "method": "lora",
        "name": "fox",
        "kind": "lora",
        "format": "kohya",
        "bytes": 9,
        "sample": None,
        "stopped_early": False,
    }
    assert JobResult.from_json(trained.to_json()) == trained
    with pytest.raises(ValidationError):  # frozen: a result is written whole
        picture.width = 9  # type: ignore[misc]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, "PNG")
    return buffer.getvalue()


def rendered(maps: list[bytes], clip: Any = None) -> Any:
    """What `generation.jobs.render_job` returns, by its shape (importing it would load torch)."""
    image = SimpleNamespace(index=0, seed=5, png=png(8, 8), width=8, height=8, parameters="a fox", safety_score=None)
    return SimpleNamespace(images=[image], maps=maps, clip=clip, notes=(), grid=None)


def test_the_worker_stores_maps_and_clips_as_typed_results(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    outputs, result = store(blobs, rendered([]))
    assert [o.width for o in outputs] == [8] and result is None  # a plain picture job: no result, as always
    _, result = store(blobs, rendered([png(16, 12)]))
    assert result is not None and result.to_json() == {
        "maps": [{"blob": result.maps[0].blob, "width": 16, "height": 12, "size": len(png(16, 12))}]
    }
    assert blobs.read(result.maps[0].blob) == png(16, 12)
    encoded = SimpleNamespace(mp4=b"mp4 bytes", gif=b"gif bytes!", fps=8, width=8, height=8, frames=2, loop=False)
    _, result = store(blobs, rendered([], encoded))
    assert result is not None and set(result.to_json() or {}) == {"clip"}
    assert result.clip == ClipFiles(
        mp4=result.clip.mp4, gif=result.clip.gif, fps=8, width=8, height=8, frames=2, loop=False, mp4_size=9, gif_size=10
    )
    assert blobs.read(result.clip.gif) == b"gif bytes!"


async def test_the_queue_stores_the_json_and_records_the_blobs_it_names(db: Database) -> None:  # noqa: F811
    await add_job(db)
    [job] = await claim(db)
    clip = ClipFiles(mp4=f"{KEY}.mp4", gif=f"{KEY}.gif", fps=8, width=64, height=64, frames=16, loop=True, mp4_size=1000, gif_size=2000)
    result = JobResult(maps=(StoredPicture(blob=f"{KEY}.png", width=64, height=48, size=321),), clip=clip)
    async with db.transaction() as s:
        await queue.complete(s, job, 1, "w1", [], run_seconds=0.5, result=result)
    async with db.transaction() as s:
        done = await queue.get(s, job.id)
        assert done is not None and done.result == OLD_ROWS["control maps"] | OLD_ROWS["clip"]
        assert JobResult.of(done) == result
        blobs = {row.key: (row.content_type, row.size, row.width, row.height) for row in (await s.execute(select(Blob))).scalars()}
    assert blobs == {
        f"{KEY}.png": ("image/png", 321, 64, 48),
        f"{KEY}.mp4": ("video/mp4", 1000, 64, 64),
        f"{KEY}.gif": ("image/gif", 2000, 64, 64),
    }


async def test_an_answer_made_at_once_is_stored_as_its_old_shape(db: Database) -> None:  # noqa: F811
    row = OLD_ROWS["an answer made at once"]
    async with db.transaction() as s:
        user = await users.get_or_create(s, "console", "alice")
        made = {}
        for name, result in (("typed", JobResult.from_json(row)),):
            job = await queue.record_answer(
                s,
                user_id=user.id,
                platform="console",
                chat_id="c",
                source_message_id=None,
                kind="describe",
                model="tiny",
                params={},
                result=result,
            )
            made[name] = job.id
    async with db.transaction() as s:
        for job_id in made.values():
            job = await queue.get(s, job_id)
            assert job is not None and job.result == row and JobResult.of(job).candidates[0].negative == "blurry"
