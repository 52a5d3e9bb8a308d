"""Shared test set-up: offline by force, a clean environment, and one tiny model per session."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

# --- offline: no Hub, and no connection to anything but this machine --------------------------
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["SDBOT_CONFIG"] = "/nonexistent/sdbot.toml"  # never pick up a developer's config
for _name in [n for n in os.environ if n.startswith("SDBOT_") and n != "SDBOT_CONFIG"]:
    del os.environ[_name]

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address) -> None:  # type: ignore[no-untyped-def]
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            is_local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            is_local = host == "localhost"
        if not is_local:
            raise ConnectionRefusedError(f"tests are offline: connection to {address!r} blocked")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only  # type: ignore[method-assign]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with the tiny model built once for the whole session."""
    from generation.models.tiny import ensure_tiny

    folder = tmp_path_factory.mktemp("models")
    ensure_tiny(folder)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for the tiny text models (hidden size 32): on a busy 2-core machine,
    torch's thread pool made each tiny op wait ~15 ms (a 5-word caption took 16 s; 0.1 s with one
    thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path):  # type: ignore[no-untyped-def]
    from config import Settings

    return Settings(
        _env_file=None,
        model="tiny",
        data_dir=tmp_path / "data",
        models_dir=models_dir,
        default_steps=4,
        poll_seconds=0.2,
        progress_seconds=0.2,
        # Live previews are tested in tests/test_previews*.py. Elsewhere they would put a picture
        # on a status message whenever a busy machine draws a job for longer than 1.5 s.
        preview="off",
    )


@pytest.fixture
async def bot(settings):  # type: ignore[no-untyped-def]
    """The command layer with a real worker on the tiny model, driven as an adapter would
    (`tests.test_service.Bot`)."""
    from tests.test_service import make_bot

    made = await make_bot(settings)
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


def bot_env(data_dir: Path, models_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a bot subprocess on the tiny model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")}
    env.update(
        SDBOT_CONFIG="/nonexistent/sdbot.toml",
        SDBOT_MODEL="tiny",
        SDBOT_DATA_DIR=str(data_dir),
        SDBOT_MODELS_DIR=str(models_dir),
        SDBOT_POLL_SECONDS="0.2",
        SDBOT_PROGRESS_SECONDS="0.2",
        SDBOT_PREVIEW="off",  # as in `settings`: live previews are tested in tests/test_previews*.py
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _no_bot_process_outlives_its_test():  # type: ignore[no-untyped-def]
    """A failed assertion must not leave a console subprocess running (it would poll forever)."""
    yield
    from tests.support.console_process import ConsoleProcess

    while ConsoleProcess.running:
        process = ConsoleProcess.running.pop()
        if process.proc.poll() is None:
            process.kill()


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    from tests.support import postgres_cluster

    postgres_cluster.stop()  # the throwaway PostgreSQL cluster, if a test started one
