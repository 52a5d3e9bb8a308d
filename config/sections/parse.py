"""How settings written as text (the environment, `.env`) become lists and tables.

TOML and JSON give lists and tables whole; `NoDecode` stops pydantic-settings from reading an
environment value as JSON first, so `a,b` and `name=path` forms reach these parsers as written.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode


def comma_list(value: Any) -> Any:
    """`a, b,c` -> ["a", "b", "c"]; a TOML array is kept, its items as text (TOML may give numbers)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(part).strip() for part in value]
    return value


def name_pairs(value: Any) -> Any:
    """`name=path,name2=path2` (or a JSON object) from the environment; TOML and JSON give a table."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return json.loads(value)
    if isinstance(value, str):
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("expected name=path pairs separated by commas")
        return {name.strip(): path.strip() for name, path in pairs}
    return value


# Ids and labels: comma-separated in the environment, an array in TOML.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(comma_list)]
# Named files (upscalers, VAEs, ...): `name=path` pairs in the environment, a table in TOML.
NamedFiles = Annotated[dict[str, str], NoDecode, BeforeValidator(name_pairs)]
