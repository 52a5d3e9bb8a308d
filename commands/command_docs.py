"""docs/commands.md and the README's command index, written from `commands.registry`: one entry
per command with its forms, what it does and its other names. `tests/test_command_registry.py`
fails when either is stale.

    .venv/bin/python -m commands.command_docs          # rewrite both
"""

from __future__ import annotations

import sys
from pathlib import Path

from commands.frame.declare import Option
from commands.registry import COMMANDS
from config import Settings

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "commands.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- commands: written by `python -m commands.command_docs` from commands/registry.py -->", "<!-- /commands -->"


def commands_page() -> str:
    lines = [
        "# Commands",
        "",
        "<!-- Written by `python -m commands.command_docs` from commands/registry.py: edit the registry, not this page. -->",
        "",
        "Every command, in the order of the chat menus. `/help COMMAND` in a chat says the same, and `/help`",
        "adds this installation's options and limits. Each command links to where the reference explains it in full.",
        "",
        "| Command | What it does | How to write it |",
        "| --- | --- | --- |",
    ]
    for command in COMMANDS:
        name = f"[`/{command.name}`]({command.reference})"
        if command.aliases:
            name += " (" + ", ".join(f"`/{alias}`" for alias in command.aliases) + ")"
        forms = "<br>".join(f"`{_cell(form)}`" for form in command.usage)
        lines.append(f"| {name} | {_cell(command.summary)} | {forms} |")
    lines += [
        "",
        "## Options",
        "",
        "Each command's options, with the bounds and defaults of a default configuration (`/help COMMAND`",
        "shows this installation's). An option's other spellings work too; `—` works for `--`.",
        "",
    ]
    settings = Settings.model_construct()  # the defaults, whatever this machine's environment says
    for command in COMMANDS:
        if not command.options:
            continue
        lines += [f"### /{command.name}", ""]
        lines += [f"- {_option(option, settings)}" for option in command.options]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _option(option: Option, settings: Settings) -> str:
    line = option.line(settings)
    spellings = sorted(f"--{name}" for name in option.aliases)
    return line + (f" (also {', '.join(f'`{s}`' for s in spellings)})" if spellings and not option.positional else "")


def readme_index(readme: str) -> str:
    """`readme` with its command index (between BEGIN and END) written from the registry: one
    line per command, linked to its entry in the reference."""
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    lines = [f"- [`/{command.name}`](docs/{command.reference}): {command.summary}" for command in COMMANDS]
    return "\n".join([head + BEGIN, *lines, END + tail])


def _cell(text: str) -> str:
    """Text inside a Markdown table cell: its pipes escaped."""
    return text.replace("|", "\\|")


if __name__ == "__main__":
    PAGE.write_text(commands_page())
    README.write_text(readme_index(README.read_text()))
    sys.stdout.write(f"wrote {PAGE} and the index in {README}\n")
