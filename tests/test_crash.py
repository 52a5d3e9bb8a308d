"""Kill the bot with SIGKILL in the middle of a job: after a restart the job finishes and its
result is delivered exactly once, and charged once; a third start owes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PIL import Image

from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess


def test_sigkill_mid_job_then_restart(tmp_path: Path, models_dir: Path) -> None:
    data = tmp_path / "data"
    # A long job (tiny takes ~50 ms a step on this CPU), so the kill surely lands mid-job.
    env = bot_env(data, models_dir, SDBOT_MAX_STEPS="1000")
    first = ConsoleProcess(env, tmp_path / "bot.log")
    first.send(text="/imagine a slow fox --steps 150 --seed 5 --sampler euler")
    status = first.message("status", reply_to="u1")
    first.wait_for(lambda e: e["event"] == "edit" and e["id"] == status["id"] and "step" in e["text"])
    first.kill()
    assert first.messages("result") == []

    with sqlite3.connect(data / "sdbot.db") as db:
        assert db.execute("select status, attempt from jobs").fetchall() == [("running", 1)]

    second = ConsoleProcess(env, tmp_path / "bot.log")  # no input: it only finishes what is owed
    assert second.finish(timeout=240) == 0
    [result] = second.messages("result")
    assert result["job"] == 1 and result["reply_to"] == "u1" and len(result["images"]) == 1
    assert "Seed: 5," in Image.open(result["images"][0]).text["parameters"]

    third = ConsoleProcess(env, tmp_path / "bot.log")
    assert third.finish() == 0
    assert third.messages() == []

    with sqlite3.connect(data / "sdbot.db") as db:
        assert db.execute("select status, attempt from jobs").fetchall() == [("succeeded", 2)]
        assert db.execute("select kind, status from deliveries").fetchall() == [("result", "sent")]
        assert db.execute("select count(*) from job_outputs").fetchone() == (1,)
        # The GPU-seconds quota is charged once, what the finishing attempt measured: the attempt
        # the kill cut short is not charged.
        [(gpu_seconds, run_seconds)] = db.execute("select gpu_seconds, run_seconds from jobs").fetchall()
        assert gpu_seconds == run_seconds and gpu_seconds > 0
    log = (tmp_path / "bot.log").read_text()
    assert "took back 1 job(s) from dead worker(s)" in log
