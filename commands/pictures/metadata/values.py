"""Small, forgiving conversions shared by the readers: numbers out of whatever a tool wrote, short
display forms, de-duplicated notes and a JSON object that may not be one."""

from __future__ import annotations

import json
import math
import re
from typing import Any


def add_note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def to_int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,30}\s*", value):
        return int(value)
    return None


def to_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and len(value) < 40:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def number_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def short(value: object, limit: int = 60) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def json_dict(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
