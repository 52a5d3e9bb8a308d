"""The README is the user's way in: it must document every setting and match CI."""

from __future__ import annotations

import re

from config import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [f"SDBOT_{name.upper()}" for name in Settings.model_fields if f"SDBOT_{name.upper()}" not in README]
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n\s*(.+?)\n\s*```", README)
    test_command = next(command for command in commands if "pytest" in command)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_every_source_path_the_docs_name_exists() -> None:
    """A file moved or renamed leaves no stale path in the README or docs/ (`generation/x/y.py`)."""
    texts = [README, *(path.read_text() for path in (ROOT / "docs").glob("*.md"))]
    named = {m for text in texts for m in re.findall(r"\b((?:bot|commands|config|generation|storage|bench|tests)/[\w/]+\.py)\b", text)}
    assert named and sorted(p for p in named if not (ROOT / p).exists()) == []
