"""Run `run_bot.py serve` as a real process, the way a user starts it; SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


class ServeProcess:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_bot.py"), "serve"], cwd=ROOT, env=env, stdout=self.log, stderr=self.log
        )

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after a minute if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code
