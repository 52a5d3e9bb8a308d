"""GET /healthz on each process, for a supervisor (systemd, Kubernetes, a load balancer) to
restart what is stuck and to see who does what: 200 when the process can do its work, 503 when
it cannot (its database does not answer `SELECT 1`, or its worker's loop has not come round for
too long), and in both cases a JSON body saying why:

    {"ok": true, "role": "worker", "pid": 4242, "host": "gpu-3", "leader": false,
     "database": "ok", "worker": {"ok": true, "owner": "...", "jobs": [17], ...}}

The port comes from SDBOT_HEALTH_PORT or `--health-port` (0: any free port; the bound one is
logged). It listens on SDBOT_HEALTH_HOST, 127.0.0.1 by default: the body names hosts, models
and job ids, which is nothing for the internet."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy import text

from config.logs import Redactor
from storage.db import Database
from storage.leader import Leadership

log = logging.getLogger("sdbot")

DATABASE_TIMEOUT_SECONDS = 5.0  # a probe must answer before the supervisor's own timeout
MAX_ERROR_CHARS = 300


class HealthEndpoint:
    def __init__(
        self,
        *,
        role: str,
        db: Database,
        leadership: Leadership | None,
        worker_health: Callable[[], dict[str, Any]] | None,
        host: str = "127.0.0.1",
        port: int = 0,
        secrets: list[str] | None = None,
    ):
        self.role = role
        self.db = db
        self.leadership = leadership
        self.worker_health = worker_health
        self.host = host
        self.port = port
        self.redact = Redactor(secrets or [])  # a database error may quote its URL
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen; returns the bound port. Raises OSError when the port is taken."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        # no access log: a supervisor probing every few seconds would drown the real lines
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        log.info("health endpoint on http://%s:%d/healthz", shown, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def report(self) -> dict[str, Any]:
        database = await self._check_database()
        worker = self._check_worker()
        return {
            "ok": database == "ok" and (worker is None or bool(worker.get("ok"))),
            "role": self.role,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "leader": bool(self.leadership and self.leadership.is_leader),
            "database": database,
            "worker": worker,
        }

    async def _healthz(self, _request: web.Request) -> web.Response:
        body = await self.report()
        return web.Response(text=json.dumps(body, default=str), status=200 if body["ok"] else 503, content_type="application/json")

    async def _check_database(self) -> str:
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS), self.db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except TimeoutError:
            return f"no answer to SELECT 1 in {DATABASE_TIMEOUT_SECONDS:.0f} s"
        except Exception as error:  # any failure is the answer
            return self._error_text(error)
        return "ok"

    def _check_worker(self) -> dict[str, Any] | None:
        if self.worker_health is None:
            return None
        try:
            return dict(self.worker_health())
        except Exception as error:  # a broken report is an unhealthy worker
            log.exception("the worker's health report failed")
            return {"ok": False, "error": self._error_text(error)}

    def _error_text(self, error: BaseException) -> str:
        first_line = (str(error).strip().splitlines() or [""])[0]
        return self.redact(f"{type(error).__name__}: {first_line}"[:MAX_ERROR_CHARS])
