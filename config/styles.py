"""Prompt styles: named templates that wrap a prompt and its negative (`--style NAME`). Torch-free.

A style has a `prompt` template and a `negative` one. Applying it follows A1111
(`modules/styles.py`, `merge_prompts`):
- a template holding `{prompt}` has it replaced by the current text;
- a template without it is appended to the current text with ", ";
- several styles apply in the order given, each to the result of the one before, so the second
  wraps the first; the negative prompt goes through the same steps with the negative templates.
Unlike A1111, empty parts leave no stray ", ": an empty template changes nothing, an empty text
takes only the template, and an empty prompt dropped into `{prompt}` leaves no leading or doubled
comma (`{prompt}, bokeh` gives `bokeh`; `photo of {prompt}, bokeh` gives `photo of, bokeh`).

Style files (the shipped config/styles.toml, an admin's SDBOT_STYLES_FILE) are TOML, one table per
style:

    [styles.film-noir]
    description = "Black-and-white crime film"      # optional
    prompt = "film noir still of {prompt}, hard shadows"
    negative = "color"                                # optional

Names: lowercase letters and digits with single `-` between them, 2 to 32 characters, not a word of
the /style command. In files and in `/style save`, `{prompt}` may appear at most once in each template (none: the
template is appended).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

PLACEHOLDER = "{prompt}"
MIN_NAME_CHARS = 2
MAX_NAME_CHARS = 32
MAX_TEMPLATE_CHARS = 1000
# Words of `/style VERB ...` and of `--style`, which a style name would shadow or confuse.
RESERVED_NAMES = frozenset(
    {"list", "save", "add", "delete", "remove", "rm", "show", "help", "none", "off", "clear", "all", "default", "reset"}
)
BUILTIN_FILE = "styles.toml"

_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_FIELDS = {"prompt", "negative", "description"}


class StyleError(ValueError):
    """A style file that cannot be used; the message names the file and the style."""


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str
    negative: str
    description: str = ""
    owner: str | None = None  # None: built-in or global (everyone's)


# --- applying -----------------------------------------------------------------------------------------


def apply_styles(styles: Sequence[Style], prompt: str, negative: str) -> tuple[str, str]:
    """(prompt, negative) with each style applied in order (A1111's rule; see the module doc)."""
    for style in styles:
        prompt = merge(style.prompt, prompt)
        negative = merge(style.negative, negative)
    return prompt, negative


def merge(template: str, text: str) -> str:
    """One template applied to one text: `{prompt}` replaced, or the template appended with ", "."""
    template, text = template.strip(), text.strip()
    if not template:
        return text
    if PLACEHOLDER not in template:
        return ", ".join(part for part in (text, template) if part)
    if text:
        return template.replace(PLACEHOLDER, text)
    return _tidy(template.replace(PLACEHOLDER, ""))


def _tidy(text: str) -> str:
    """What an empty `{prompt}` leaves: `of , bokeh` -> `of, bokeh`, `, bokeh` -> `bokeh`."""
    text = re.sub(r"\s*,(?:\s*,)*", ",", text)  # runs of commas (and spaces before them) -> one
    text = re.sub(r",(?=\S)", ", ", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text.strip(" \t,")


# --- checks (None: fine; else a message for the user) ----------------------------------------------


def check_style_name(name: str) -> str | None:
    """Whether `name` can name a style. Names are lower case: lowercase what the user typed first."""
    if not MIN_NAME_CHARS <= len(name) <= MAX_NAME_CHARS:
        return f"A style name has {MIN_NAME_CHARS} to {MAX_NAME_CHARS} characters; `{name[:40]}` has {len(name)}."
    if not _NAME.fullmatch(name):
        return f"A style name is lowercase letters and digits with single `-` between them (like `film-noir`); `{name}` is not."
    if name in RESERVED_NAMES:
        return f"`{name}` is a word of the /style command; pick another name."
    return None


def check_template(template: str) -> str | None:
    """Whether a user may save `template` as a style's prompt: `{prompt}` at most once (without
    it the template is appended after ", ", as in style files and A1111), and more."""
    template = template.strip()
    example = "e.g. `{prompt}, black and white film noir, hard shadows`"
    if not template:
        return f"Write the style's template after its name, {example}."
    if len(template) > MAX_TEMPLATE_CHARS:
        return f"The template is {len(template)} characters; the limit is {MAX_TEMPLATE_CHARS}."
    count = template.count(PLACEHOLDER)
    if count > 1:
        return f"`{PLACEHOLDER}` may appear only once in a template; it appears {count} times."
    if template == PLACEHOLDER:
        return f"A template of only `{PLACEHOLDER}` adds nothing; write the style's words around it, {example}."
    return None


def check_negative(negative: str) -> str | None:
    """Whether `negative` can be a style's negative template (may be empty)."""
    if len(negative.strip()) > MAX_TEMPLATE_CHARS:
        return f"The negative prompt is {len(negative.strip())} characters; the limit is {MAX_TEMPLATE_CHARS}."
    if negative.count(PLACEHOLDER) > 1:
        return f"`{PLACEHOLDER}` may appear only once in the negative prompt."
    return None


# --- files --------------------------------------------------------------------------------------------


def load_builtin_styles() -> dict[str, Style]:
    """The styles shipped in config/styles.toml, in file order (a fresh dict each call)."""
    text = resources.files(__package__ or "config").joinpath(BUILTIN_FILE).read_text(encoding="utf-8")
    return parse_styles(text, f"config/{BUILTIN_FILE}")


def load_styles_file(path: Path | str) -> dict[str, Style]:
    """An admin's extra styles file (SDBOT_STYLES_FILE), in the built-in file's format."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise StyleError(f"Styles file {path}: cannot read it ({error}).") from None
    return parse_styles(text, str(path))


def parse_styles(text: str, source: str) -> dict[str, Style]:
    """Styles from TOML text; `source` names it in errors. Raises StyleError on the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StyleError(f"Styles file {source}: not valid TOML ({error}).") from None
    extra = set(data) - {"styles"}
    if extra:
        raise StyleError(f"Styles file {source}: unknown top-level key(s) {sorted(extra)}; styles go in `[styles.NAME]` tables.")
    table = data.get("styles", {})
    if not isinstance(table, dict):
        raise StyleError(f"Styles file {source}: `styles` must be tables, `[styles.NAME]`.")
    return {name: _style(name, entry, source) for name, entry in table.items()}


def _style(name: str, entry: Any, source: str) -> Style:
    where = f"Styles file {source}, style `{name}`"
    problem = check_style_name(name)
    if problem:
        raise StyleError(f"{where}: {problem}")
    if not isinstance(entry, dict):
        raise StyleError(f"{where}: must be a table with `prompt` (and optionally `negative`, `description`).")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise StyleError(f"{where}: unknown key(s) {sorted(unknown)}; a style has {sorted(_FIELDS)}.")
    if "prompt" not in entry:
        raise StyleError(f"{where}: no `prompt`.")
    for key in _FIELDS & set(entry):
        if not isinstance(entry[key], str):
            raise StyleError(f"{where}: `{key}` must be a string.")
    prompt, negative = entry["prompt"].strip(), entry.get("negative", "").strip()
    if not prompt:
        raise StyleError(f"{where}: `prompt` is empty.")
    for key, value in (("prompt", prompt), ("negative", negative)):
        if value.count(PLACEHOLDER) > 1:
            raise StyleError(f"{where}: `{PLACEHOLDER}` appears more than once in `{key}`.")
        if len(value) > MAX_TEMPLATE_CHARS:
            raise StyleError(f"{where}: `{key}` is {len(value)} characters; the limit is {MAX_TEMPLATE_CHARS}.")
    return Style(name, prompt, negative, entry.get("description", "").strip())
