"""Many processes, one queue, on PostgreSQL: two `run_bot.py worker` processes and one
`run_bot.py console --no-worker` (the chat alone, no torch) on one database serve the console
chat end to end: every job is drawn by one of the workers and delivered once, to the chat."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from storage.db import Database
from tests.conftest import ROOT, bot_env
from tests.support import postgres_cluster
from tests.support.console_process import ConsoleProcess

JOBS = 8


async def test_two_workers_and_a_chat_process_on_one_postgresql(tmp_path: Path, models_dir: Path) -> None:
    url = await postgres_cluster.cluster().new_database()
    env = bot_env(tmp_path / "data", models_dir, SDBOT_DATABASE_URL=url)
    workers = []
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    for log in logs:  # each with its own data dir: they share only the database and the blob store
        worker_env = {**env, "SDBOT_DATA_DIR": str(tmp_path / f"worker-{log.stem}"), "SDBOT_BLOBS_DIR": str(tmp_path / "data" / "blobs")}
        handle = open(log, "ab")  # noqa: SIM115 - closed below
        workers.append(
            (
                subprocess.Popen(
                    [sys.executable, str(ROOT / "run_bot.py"), "worker"], cwd=ROOT, env=worker_env, stdout=handle, stderr=handle
                ),
                handle,
            )
        )
    chat = ConsoleProcess(env, tmp_path / "chat.log", "--no-worker")
    try:
        deadline = asyncio.get_running_loop().time() + 180
        for log in logs:  # both workers up (the model loaded) before the jobs come
            while "model tiny is loaded" not in log.read_text():
                assert asyncio.get_running_loop().time() < deadline, log.read_text()[-2000:]
                await asyncio.sleep(0.2)
        asked = [chat.say(text=f"/imagine a fox number {i} --steps 12 --seed {i} --size 64x64", user=f"user{i % 3}") for i in range(JOBS)]
        # two workers finish out of order: wait for all the results, whatever their order
        chat.wait_for(lambda event: len(chat.messages("result")) >= JOBS, timeout=240)
        results = chat.messages("result")
        assert sorted(result["reply_to"] for result in results) == sorted(asked)
        assert chat.finish() == 0
    finally:
        for proc, handle in workers:
            proc.terminate()
            proc.wait(60)
            handle.close()
    assert all(len(result["images"]) == 1 for result in results)
    assert len({result["job"] for result in results}) == JOBS
    # "job 3 attempt 1: succeeded in", or for a batch "job 3, 4 attempt 1, 1: succeeded in"
    drawn = [
        sum(len(ids.split(",")) for ids in re.findall(r"job ([\d, ]+) attempt [\d, ]+: succeeded in", log.read_text())) for log in logs
    ]
    assert sum(drawn) == JOBS and all(count >= 1 for count in drawn), drawn
    assert "model tiny is loaded" not in (tmp_path / "chat.log").read_text()  # the chat process drew nothing
    db = Database(url)
    async with db.transaction() as session:
        rows = (await session.execute(text("select count(*), count(distinct job_id) from deliveries where status = 'sent'"))).one()
    await db.close()
    assert tuple(rows) == (JOBS, JOBS)
