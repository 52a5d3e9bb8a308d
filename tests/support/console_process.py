"""Drive `run_bot.py console --jsonl` as a real subprocess, the way a script would."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

Event = dict[str, Any]


class ConsoleProcess:
    """One bot process. An autouse fixture in tests/conftest.py kills any left running after a test."""

    running: list[ConsoleProcess] = []

    def __init__(self, env: dict[str, str], log_path: Path, *extra_args: str):
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_bot.py"), "console", "--jsonl", *extra_args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        ConsoleProcess.running.append(self)
        self.events: list[Event] = []
        self.inputs = 0  # non-blank lines sent: the console's input ids count them
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, **fields: Any) -> None:
        self.send_raw(json.dumps(fields))

    def say(self, **fields: Any) -> str:
        """Send one input line; returns its id (`u1`, `u2`, ...: the console numbers non-blank lines)."""
        self.send(**fields)
        return f"u{self.inputs}"

    def send_raw(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        if line.strip():
            self.inputs += 1

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 120) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching event in {timeout}s; saw {self.events[-5:]}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"the bot exited ({self.proc.wait()}); saw {self.events[-5:]}")
            event = json.loads(line)
            self.events.append(event)
            if predicate(event):
                return event

    def message(self, kind: str | tuple[str, ...], timeout: float = 120, **match: Any) -> Event:
        kinds = (kind,) if isinstance(kind, str) else kind

        def wanted(event: Event) -> bool:
            return event["event"] == "message" and event["kind"] in kinds and all(event.get(k) == v for k, v in match.items())

        return self.wait_for(wanted, timeout)

    def finish(self, timeout: float = 120) -> int:
        """Close stdin and collect everything until the bot exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        while (line := self._lines.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
            self.events.append(json.loads(line))
        code = self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        self.log.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def messages(self, kind: str | None = None) -> list[Event]:
        return [e for e in self.events if e["event"] == "message" and (kind is None or e["kind"] == kind)]
