"""The README is the user's way in: it must match CI, be short, and its links must lead somewhere;
docs/configuration.md must document every setting."""

from __future__ import annotations

import re

from config import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    """Each setting has its own row with a meaning, and each row is a setting (the page is generated:
    tests/test_settings_docs.py checks it is current; this reads the page as a reader would)."""
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    found = re.findall(r"^\| `(SDBOT_\w+)` \| [^|]+ \| (.*) \|$", configuration, re.M)
    rows = dict(found)
    assert len(rows) == len(found), "a setting with two rows"
    settings = {f"SDBOT_{name.upper()}" for name in Settings.model_fields}
    assert sorted(settings - rows.keys()) == [], "settings without a row"
    assert sorted(rows.keys() - settings) == [], "rows for no setting"
    assert [name for name, meaning in rows.items() if not meaning.strip()] == [], "rows without a meaning"


def test_the_readme_is_short_and_its_links_lead_somewhere() -> None:
    """A newcomer reads it in five minutes; each link to a page of the repository finds the page,
    and each link to a heading finds the heading."""
    assert len(README.encode()) < 15_000, len(README.encode())
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            page, _, anchor = target.partition("#")
            linked = (path.parent / page).resolve() if page else path
            assert linked.exists(), f"{path.name} links to {target}: no such file"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
                assert anchor in {_slug(heading) for heading in headings}, f"{path.name} links to {target}: no such heading"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n\s*(.+?)\n\s*```", README)
    test_command = next(command for command in commands if "pytest" in command)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_every_source_path_the_docs_name_exists() -> None:
    """A file moved or renamed leaves no stale path in the README or docs/ (`generation/x/y.py`)."""
    texts = [README, *(path.read_text() for path in (ROOT / "docs").glob("*.md"))]
    named = {m for text in texts for m in re.findall(r"\b((?:bot|commands|config|generation|storage|bench|tests)/[\w/]+\.py)\b", text)}
    assert named and sorted(p for p in named if not (ROOT / p).exists()) == []
