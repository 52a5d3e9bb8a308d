"""GET /healthz (runtime/health.py): 200 and what the process is, 503 when its database or its
worker cannot work; in-process, and on real `run_bot.py` processes (two on one database: one
leader, and the other takes over when it is killed)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runtime.health import HealthEndpoint
from storage.db import Database
from storage.leader import RETRY_SECONDS, Leadership
from tests.conftest import ROOT, bot_env
from tests.support.console_process import ConsoleProcess

BOUND = re.compile(r"health endpoint on http://127\.0\.0\.1:(\d+)/healthz")


async def get(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def healthy_worker() -> dict[str, Any]:
    return {"ok": True, "owner": "host:1:ab", "gpu": None, "models": [], "loaded_model": "tiny", "jobs": [3], "last_loop_age_s": 0.1}


async def test_a_healthy_process_answers_200(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sdbot")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sdbot.db'}")
    leadership = Leadership(db.url)
    await leadership.start()
    endpoint = HealthEndpoint(role="worker", db=db, leadership=leadership, worker_health=healthy_worker, port=0)
    port = await endpoint.start()
    try:
        assert port > 0 and f"health endpoint on http://127.0.0.1:{port}/healthz" in caplog.text
        status, body = await get(port)
    finally:
        await endpoint.stop()
        await leadership.close()
        await db.close()
    assert status == 200
    assert body == {
        "ok": True,
        "role": "worker",
        "pid": os.getpid(),
        "host": body["host"],
        "leader": True,
        "database": "ok",
        "worker": healthy_worker(),
    }
    assert isinstance(body["host"], str) and body["host"]


async def test_a_database_that_does_not_answer_is_503(tmp_path: Path) -> None:
    db = Database("postgresql+asyncpg://postgres:hunter2secret@127.0.0.1:1/nothing")  # nothing listens on port 1
    endpoint = HealthEndpoint(role="serve", db=db, leadership=None, worker_health=None, port=0, secrets=["hunter2secret"])
    port = await endpoint.start()
    try:
        status, body = await get(port)
    finally:
        await endpoint.stop()
        await db.close()
    assert status == 503
    assert body["ok"] is False and body["role"] == "serve" and body["leader"] is False and body["worker"] is None
    assert body["database"] != "ok" and body["database"]  # the error, named
    assert "hunter2secret" not in json.dumps(body)


async def test_a_stale_or_broken_worker_is_503(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sdbot.db'}")
    report: dict[str, Any] = {**healthy_worker(), "ok": False, "last_loop_age_s": 600.0}

    def worker_health() -> dict[str, Any]:
        if report.get("broken"):
            raise RuntimeError("the report itself failed")
        return report

    endpoint = HealthEndpoint(role="worker", db=db, leadership=None, worker_health=worker_health, port=0)
    port = await endpoint.start()
    try:
        stale = await get(port)
        report["broken"] = True
        broken = await get(port)
    finally:
        await endpoint.stop()
        await db.close()
    assert stale[0] == 503 and stale[1]["database"] == "ok" and stale[1]["worker"]["last_loop_age_s"] == 600.0
    assert broken[0] == 503 and broken[1]["worker"] == {"ok": False, "error": "RuntimeError: the report itself failed"}


async def test_a_port_in_use_is_an_error(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sdbot.db'}")
    first = HealthEndpoint(role="serve", db=db, leadership=None, worker_health=None, port=0)
    port = await first.start()
    try:
        with pytest.raises(OSError):
            await HealthEndpoint(role="serve", db=db, leadership=None, worker_health=None, port=port).start()
    finally:
        await first.stop()
        await db.close()


# --- real processes ----------------------------------------------------------------------------


async def bound_port(log_path: Path, timeout: float = 60) -> int:
    """The port a process logged (JSON lines: the message field holds it)."""
    deadline = time.monotonic() + timeout
    while True:
        text = log_path.read_text() if log_path.exists() else ""
        if match := BOUND.search(text):
            return int(match.group(1))
        assert time.monotonic() < deadline, text[-2000:]
        await asyncio.sleep(0.1)


async def test_a_console_process_serves_healthz_and_logs_json(tmp_path: Path, models_dir: Path) -> None:
    env = bot_env(tmp_path / "data", models_dir, SDBOT_LOG_FORMAT="json")
    log_path = tmp_path / "console.log"
    chat = ConsoleProcess(env, log_path, "--no-worker", "--health-port", "0")
    port = await bound_port(log_path)
    status, body = await get(port)
    assert chat.finish() == 0
    assert status == 200
    assert body["ok"] is True and body["role"] == "console" and body["pid"] == chat.proc.pid
    assert body["leader"] is True and body["database"] == "ok" and body["worker"] is None  # alone: it leads
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    assert any(BOUND.search(record["message"]) for record in records)
    assert any("is now the leader" in record["message"] for record in records)


async def test_two_processes_one_leader_and_the_other_takes_over(tmp_path: Path, models_dir: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared' / 'sdbot.db'}"
    processes, ports = [], []
    for name in ("a", "b"):  # their own data dirs (console state), one database
        env = bot_env(tmp_path / name, models_dir, SDBOT_DATABASE_URL=url)
        processes.append(ConsoleProcess(env, tmp_path / f"{name}.log", "--no-worker", "--health-port", "0"))
        ports.append(await bound_port(tmp_path / f"{name}.log"))  # one after the other: a leads
    leaders = [(await get(port))[1]["leader"] for port in ports]
    assert leaders == [True, False]
    processes[0].kill()  # SIGKILL: no hand-over of its own
    deadline = time.monotonic() + RETRY_SECONDS * 3
    while not (await get(ports[1]))[1]["leader"]:
        assert time.monotonic() < deadline, (tmp_path / "b.log").read_text()[-2000:]
        await asyncio.sleep(0.2)
    assert processes[1].finish() == 0
    assert "is now the leader" in (tmp_path / "b.log").read_text()


async def test_a_worker_process_reports_its_worker(tmp_path: Path, models_dir: Path) -> None:
    log_path = tmp_path / "worker.log"
    with open(log_path, "ab") as handle:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "run_bot.py"), "worker", "--health-port", "0"],
            cwd=ROOT,
            env=bot_env(tmp_path / "data", models_dir),
            stdout=handle,
            stderr=handle,
        )
    try:
        port = await bound_port(log_path, timeout=120)
        deadline = time.monotonic() + 120
        while "model tiny is loaded" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            await asyncio.sleep(0.2)
        status, body = await get(port)
    finally:
        process.terminate()
        assert await asyncio.to_thread(process.wait, 60) == 0
    assert status == 200, body
    assert body["role"] == "worker" and body["pid"] == process.pid and body["leader"] is True
    worker = body["worker"]
    assert worker["ok"] is True and worker["owner"] and worker["jobs"] == [] and worker["loaded_model"]
