"""The durable queue on real SQLite files and on PostgreSQL: claims, leases, fencing, the outbox, migrations."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage import outbox, queue, users
from storage.blobs import LocalBlobStore
from storage.db import Database
from storage.queue import LeaseLost, OutputRecord
from storage.tables import Base, Delivery, JobStatus, utcnow
from tests.support import postgres_cluster


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The same tests on both backends: a real SQLite file, and a fresh database on a throwaway
    PostgreSQL cluster (tests.support.postgres_cluster)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    else:
        url = await postgres_cluster.cluster().new_database()
    database = Database(url)
    await database.migrate()
    yield database
    await database.close()


async def add_job(db: Database, user: str = "alice", model: str = "tiny", priority: int = 0, key: str = "k", n: int = 1) -> int:
    async with db.transaction() as s:
        u = await users.get_or_create(s, "console", user)
        job = await queue.enqueue(
            s,
            user_id=u.id,
            platform="console",
            chat_id="c",
            source_message_id="u1",
            kind="txt2img",
            model=model,
            batch_key=key,
            params={"prompt": "x", "n": n},
            max_attempts=2,
            priority=priority,
        )
        return job.id


async def claim(db: Database, owner: str = "w1", lease: float = 30, prefer: str | None = None) -> list:
    async with db.transaction() as s:
        return await queue.claim(s, owner, lease, prefer_model=prefer)


def output(index: int = 0) -> OutputRecord:
    return OutputRecord(index=index, seed=1, blob_key="a" * 64 + ".png", width=8, height=8, parameters="p", size=10)


DESCENDING_INDEXES = {"ix_jobs_claim", "ix_jobs_batch"}  # claim order: priority DESC


async def test_migrations_match_the_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        if db.is_sqlite:  # SQLite's reflection drops an index column's DESC: compare those by PRAGMA instead
            diff = [d for d in diff if not (d[0] in ("add_index", "remove_index") and d[1].name in DESCENDING_INDEXES)]
            for name in DESCENDING_INDEXES:
                columns = [(row[2], row[3]) for row in await conn.exec_driver_sql(f"PRAGMA index_xinfo({name})") if row[5]]
                assert ("priority", 1) in columns, (name, columns)  # (column, descending)
    assert diff == []
    await db.migrate()  # idempotent


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    await db.migrate()
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    await db.close()


async def test_claim_complete_and_outbox(db: Database) -> None:
    job_id = await add_job(db)
    [job] = await claim(db)
    assert (job.id, job.status, job.attempt, job.lease_owner) == (job_id, "running", 1, "w1")
    assert await claim(db, "w2") == []
    async with db.transaction() as s:
        await queue.complete(s, job, 1, "w1", [output(0), output(1)], run_seconds=0.5)
    async with db.transaction() as s:
        done = await queue.get(s, job_id)
        assert done.status == JobStatus.SUCCEEDED and [o.index for o in done.outputs] == [0, 1]
        [(delivery, owner_job)] = await outbox.pending(s, "console")
        assert delivery.kind == "result" and owner_job.id == job_id
        await outbox.mark_sent(s, delivery.id, "m9")
        await outbox.record_ref(s, "console", "c", "m9", job_id, None, "result")
    async with db.transaction() as s:
        assert await outbox.pending(s, "console") == []
        ref = await outbox.find_ref(s, "console", "c", "m9")
        assert ref.job_id == job_id and ref.role == "result"


async def test_stale_worker_cannot_write_after_its_lease_is_taken(db: Database) -> None:
    await add_job(db)
    [job] = await claim(db, "w1", lease=0.01)
    await asyncio.sleep(0.05)
    async with db.transaction() as s:
        reaped = await queue.reap_expired(s)
    assert [j.status for j in reaped] == ["queued"]
    [again] = await claim(db, "w2")
    assert again.attempt == 2
    with pytest.raises(LeaseLost):
        async with db.transaction() as s:
            await queue.heartbeat(s, job.id, 1, "w1", 30, 1, 4)
    with pytest.raises(LeaseLost):
        async with db.transaction() as s:
            await queue.complete(s, job, 1, "w1", [output()], run_seconds=1)
    async with db.transaction() as s:  # the failed complete wrote nothing
        assert (await queue.get(s, job.id)).outputs == []
        assert await outbox.pending(s, "console") == []
        assert await queue.heartbeat(s, job.id, 2, "w2", 30, 2, 4) == "ok"


async def test_attempts_run_out_into_a_failure_owed_to_the_user(db: Database) -> None:
    job_id = await add_job(db)  # max_attempts=2
    for _ in range(2):
        await claim(db, lease=0.01)
        await asyncio.sleep(0.03)
        async with db.transaction() as s:
            await queue.reap_expired(s)
    async with db.transaction() as s:
        job = await queue.get(s, job_id)
        assert job.status == JobStatus.FAILED and "2 times" in job.error
        [(delivery, _)] = await outbox.pending(s, "console")
        assert delivery.kind == "failure"


async def test_dead_owner_is_reaped_before_its_lease_ends(db: Database) -> None:
    await add_job(db)
    await claim(db, "host:1:dead", lease=3600)
    async with db.transaction() as s:
        assert await queue.running_owners(s) == ["host:1:dead"]
        [job] = await queue.reap_expired(s, owners=["host:1:dead"])
        assert job.status == "queued"


async def test_fair_order_and_positions(db: Database) -> None:
    a1, a2, a3 = [await add_job(db, "alice") for _ in range(3)]
    b1 = await add_job(db, "bob")
    urgent = await add_job(db, "carol", priority=5)
    async with db.transaction() as s:
        positions = {i: await queue.position(s, await queue.get(s, i)) for i in (a1, a2, a3, b1, urgent)}
    assert positions == {urgent: 1, a1: 2, b1: 3, a2: 4, a3: 5}
    order = [(await claim(db))[0].id for _ in range(5)]
    assert order == [urgent, a1, b1, a2, a3]


async def test_claim_prefers_the_loaded_model_among_equals(db: Database) -> None:
    first = await add_job(db, "alice", model="sdxl")
    second = await add_job(db, "bob", model="tiny")
    [job] = await claim(db, prefer="tiny")
    assert job.id == second
    [job] = await claim(db, prefer="tiny")
    assert job.id == first


async def test_affinity_yields_to_a_job_that_has_waited(db: Database) -> None:
    """The loaded model goes first, even before a person with fewer jobs waiting, but only until
    another job has waited `affinity_seconds`: a job for a model no worker has loaded is not starved."""
    a1, a2 = await add_job(db, "alice"), await add_job(db, "alice")
    other = await add_job(db, "bob", model="sdxl")

    async def take() -> int:
        async with db.transaction() as s:
            [job] = await queue.claim(s, "w1", 30, prefer_model="tiny", affinity_seconds=30)
            return job.id

    assert await take() == a1
    async with db.transaction() as s:
        (await queue.get(s, other)).created_at = utcnow() - timedelta(seconds=31)
    assert await take() == other  # waited long enough: ahead of alice's job for the loaded model
    assert await take() == a2


async def test_a_worker_for_some_models_takes_only_theirs(db: Database) -> None:
    await add_job(db, "alice", model="tiny")
    xl = await add_job(db, "bob", model="sdxl")
    async with db.transaction() as s:
        assert [job.id for job in await queue.claim(s, "w1", 30, models=("sdxl", "flux"))] == [xl]
        assert await queue.claim(s, "w1", 30, models=("sdxl",)) == []


async def test_compatible_jobs_are_claimed_together_within_the_limits(db: Database) -> None:
    lead = await add_job(db, "alice", key="k", n=2)
    same = await add_job(db, "bob", key="k", n=4)
    await add_job(db, "carol", key="other")
    too_big = await add_job(db, "dave", key="k", n=4)  # 2 + 4 + 4 > 8 images
    small = await add_job(db, "erin", key="k", n=1)
    alone = await add_job(db, "fay", key="")
    async with db.transaction() as s:
        [leader] = await queue.claim(s, "w1", 30)
        more = await queue.claim_compatible(s, leader, "w1", 30, max_jobs=7, max_images=8)
    assert leader.id == lead and [job.id for job in more] == [same, small]
    assert all((job.status, job.attempt, job.lease_owner) == ("running", 1, "w1") for job in more)
    async with db.transaction() as s:
        [next_leader] = await queue.claim(s, "w2", 30)
        assert next_leader.id == too_big - 1  # carol's
        assert await queue.claim_compatible(s, next_leader, "w2", 30, max_jobs=7, max_images=8) == []
        [last] = await queue.claim(s, "w2", 30)
        assert last.id == too_big
        assert await queue.claim_compatible(s, last, "w2", 30, max_jobs=1, max_images=8) == []  # nothing left with k
        [lone] = await queue.claim(s, "w2", 30)
        assert lone.id == alone and await queue.claim_compatible(s, lone, "w2", 30, max_jobs=7, max_images=8) == []


async def test_a_batch_completes_at_once_but_only_jobs_still_held(db: Database) -> None:
    for user in ("alice", "bob", "carol"):
        await add_job(db, user)
    async with db.transaction() as s:
        jobs = await queue.claim(s, "w1", 30, limit=3)
    async with db.transaction() as s:  # bob's lease ran out and another worker holds it now
        (await queue.get(s, jobs[1].id)).attempt, (await queue.get(s, jobs[1].id)).lease_owner = 2, "w2"
    outputs = {job.id: [output()] for job in jobs}
    async with db.transaction() as s:
        done = await queue.complete_batch(s, [(job, 1) for job in jobs], "w1", outputs, run_seconds=1.5)
    assert done == {jobs[0].id, jobs[2].id}
    async with db.transaction() as s:
        statuses = [(await queue.get(s, job.id)).status for job in jobs]
        delivered = sorted((await s.execute(select(Delivery.job_id))).scalars())
        again = await queue.complete_batch(s, [(jobs[0], 1)], "w1", outputs, run_seconds=1.0)  # already done
    assert statuses == ["succeeded", "running", "succeeded"] and again == set()
    assert delivered == [jobs[0].id, jobs[2].id]


async def test_cancel_queued_and_running(db: Database) -> None:
    queued_id = await add_job(db)
    running_id = await add_job(db, "bob")
    [running] = await claim(db)
    assert running.id == queued_id  # oldest first
    async with db.transaction() as s:
        assert await queue.request_cancel(s, await queue.get(s, running_id)) == "cancelled"
        assert await queue.request_cancel(s, await queue.get(s, queued_id)) == "requested"
        assert await queue.heartbeat(s, queued_id, 1, "w1", 30, 1, 2) == "cancel"
        await queue.finish_cancelled(s, running, 1, "w1")
        assert (await queue.get(s, queued_id)).status == "cancelled"
        assert await queue.request_cancel(s, await queue.get(s, queued_id)) == "finished"


async def test_release_hands_back_without_counting(db: Database) -> None:
    await add_job(db)
    [job] = await claim(db)
    async with db.transaction() as s:
        await queue.release(s, job, 1, "w1")
    [again] = await claim(db)
    assert again.attempt == 1


async def test_one_delivery_per_job_and_target(db: Database) -> None:
    job_id = await add_job(db)
    async with db.transaction() as s:
        s.add(Delivery(job_id=job_id, platform="console", chat_id="c", kind="result"))
    with pytest.raises(IntegrityError, match="(?i)unique"):
        async with db.transaction() as s:
            s.add(Delivery(job_id=job_id, platform="console", chat_id="c", kind="result"))


async def test_concurrent_claimers_never_share_a_job(tmp_path: Path) -> None:
    """Two databases (two connection pools, as two processes would have) racing for 20 jobs."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
    first, second = Database(url), Database(url)
    await first.migrate()
    for _ in range(20):
        await add_job(first, "alice")

    async def drain(db: Database, owner: str) -> list[int]:
        taken = []
        while jobs := await claim(db, owner):
            taken.append(jobs[0].id)
        return taken

    a, b = await asyncio.gather(drain(first, "a"), drain(second, "b"))
    assert sorted(a + b) == list(range(1, 21)) and not set(a) & set(b)
    await first.close()
    await second.close()


async def test_users_are_created_once(db: Database) -> None:
    async with db.transaction() as s:
        one = await users.get_or_create(s, "telegram", "42", "Ann")
        two = await users.get_or_create(s, "telegram", "42", "Ann B")
        assert one.id == two.id and two.display_name == "Ann B"
        other = await users.get_or_create(s, "discord", "42")
        assert other.id != one.id


def test_blob_store_is_content_addressed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    key = store.put(b"hello", "png")
    assert store.put(b"hello", "PNG") == key and store.read(key) == b"hello"
    assert store.path(key).parent.name == key[:2]
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


async def test_times_are_utc_aware(db: Database) -> None:
    job_id = await add_job(db)
    async with db.transaction() as s:
        job = await queue.get(s, job_id)
        await s.refresh(job)
        assert job.created_at.tzinfo is not None
        assert abs(job.created_at - utcnow()) < timedelta(minutes=1)
        assert (await s.execute(select(Delivery))).first() is None
