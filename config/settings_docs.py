"""Write docs/configuration.md from the settings themselves: `python -m config.settings_docs`.

Each section of `Settings` (config/sections/) becomes a `##` heading, its docstring's paragraph
and a table of its fields: the variable, the default as people write it, and the field's
description. `--check` writes nothing and exits 1 when the page is stale (tests/test_settings_docs.py
runs the same comparison).
"""

from __future__ import annotations

import argparse
import inspect
import math
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from config.settings import Settings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
COMMAND = "python -m config.settings_docs"

INTRO = f"""# Configuration

<!-- Written by `{COMMAND}` from the settings in config/sections/: edit a field's description
there and run it again; a test fails while this page is stale. -->

Settings come from `SDBOT_*` environment variables, a `.env` file, and an optional TOML file
(`SDBOT_CONFIG`, default `./sdbot.toml`), in that order of precedence. A setting that is not
valid stops the bot at start with a message naming it.

`SDBOT_CONFIG` (default `sdbot.toml`) names the TOML file to read, if it exists; only the
environment sets it. In that file a setting's key is its variable's name without `SDBOT_`, in
lower case (`max_steps = 60`). Lists such as `SDBOT_ADMIN_IDS` are comma-separated in the
environment and arrays in TOML; named files such as `SDBOT_UPSCALERS` are `name=path` pairs in
the environment and tables in TOML (see the [example](#an-example-sdbottoml) at the end).
"""

OUTRO = """## An example sdbot.toml

```toml
model = "stable-diffusion-v1-5/stable-diffusion-v1-5"
admin_ids = ["telegram:12345"]
max_steps = 60

[models.dreamshaper]
source = "/models/dreamshaper_8.safetensors"
config = "/models/sd15-diffusers"   # component configs, so loading needs no network
vae = "mse"                         # this model's VAE by default: a name from [vaes]
steps = 30                          # this model's default --steps (SDBOT_DEFAULT_STEPS, when set, wins)

[vaes]
mse = "/models/vae-ft-mse-840000-ema-pruned.safetensors"

[upscalers]
realesrgan = "/models/RealESRGAN_x4plus.safetensors"

[face_restorers]
gfpgan = "/models/GFPGANv1.4.safetensors"
```
"""

# Exact multiples shown beside a byte count, binary units first (the defaults are mostly MiB).
_BYTE_UNITS = ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"), (1000**3, "GB"), (1000**2, "MB"), (1000, "kB"))


def sections() -> list[type[BaseModel]]:
    """The sections of `Settings`, in the order of its bases (the page's order)."""
    return [base for base in Settings.__bases__ if base is not BaseSettings]


def section_title(section: type[BaseModel]) -> tuple[str, str]:
    """A section's title (its docstring's first line) and paragraph (the rest)."""
    title, _, paragraph = inspect.cleandoc(section.__doc__ or "").partition("\n")
    return title.strip(), paragraph.strip()


def variable(name: str) -> str:
    return f"SDBOT_{name.upper()}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def documented_default(name: str, field: FieldInfo) -> str:
    """The default as the page shows it: the field's `doc_default` where it declares one (a computed
    default, or one that needs words), else its value as people would type it."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "doc_default" in extra:
        return str(extra["doc_default"])
    return _shown(name, field.get_default(call_default_factory=True))


def _shown(name: str, value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return _count(name, value)
    if isinstance(value, Path):
        text = value.as_posix()
        return f"`{text if value.is_absolute() or text.startswith('.') else './' + text}`"
    if isinstance(value, (list, tuple)):
        return f"`{','.join(str(item) for item in value)}`"  # as the environment takes it
    return f"`{value}`"


def _count(name: str, value: int) -> str:
    """An integer, with its size in units for bytes and its sides for a square number of pixels."""
    if name.endswith("_bytes"):
        unit = next((f"{value // size} {unit}" for size, unit in _BYTE_UNITS if value and value % size == 0), None)
        return f"{value} ({unit})" if unit else str(value)
    if name.endswith("_pixels") and math.isqrt(value) ** 2 == value:
        return f"{value} ({math.isqrt(value)}×{math.isqrt(value)})"
    return str(value)


def _cell(text: str) -> str:
    """One table cell: a single line, with `|` escaped so it can't split the row."""
    return " ".join(text.split()).replace("|", "\\|")


def section_markdown(section: type[BaseModel]) -> str:
    title, paragraph = section_title(section)
    rows = [
        f"| `{variable(name)}` | {_cell(documented_default(name, field))} | {_cell(field.description or '')} |"
        for name, field in section.model_fields.items()
    ]
    table = ["| Variable | Default | Meaning |", "| --- | --- | --- |", *rows]
    return "\n\n".join([f"## {title}", paragraph, "\n".join(table)]) + "\n"


def contents() -> str:
    titles = [section_title(section)[0] for section in sections()]
    return "The settings by section: " + " · ".join(f"[{title}](#{slug(title)})" for title in titles) + ".\n"


def render() -> str:
    """The whole page, as docs/configuration.md should hold it."""
    return "\n".join([INTRO, contents(), *(section_markdown(section) for section in sections()), OUTRO])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the page is stale")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        stale = not PAGE.exists() or PAGE.read_text(encoding="utf-8") != page
        print(f"{PAGE} is stale: run `{COMMAND}`" if stale else f"{PAGE} is up to date")
        return 1 if stale else 0
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
