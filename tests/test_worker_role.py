"""`run_bot.py worker --gpu N --models a,b`: bad values are refused with a clear line at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, bot_env


def run_worker(tmp_path: Path, models_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_bot.py"), "worker", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=bot_env(tmp_path / "data", models_dir),
    )


def test_a_gpu_is_a_number(tmp_path: Path, models_dir: Path) -> None:
    done = run_worker(tmp_path, models_dir, "--gpu", "first")
    assert done.returncode == 2 and "--gpu takes a GPU number (0, 1, ...), not 'first'" in done.stderr


def test_models_must_be_configured(tmp_path: Path, models_dir: Path) -> None:
    done = run_worker(tmp_path, models_dir, "--models", "tiny,sdxl-typo")
    assert done.returncode == 2
    assert "worker --models: sdxl-typo is not a configured model (known: tiny)" in done.stderr
