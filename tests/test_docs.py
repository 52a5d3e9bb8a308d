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
