"""Text as chats show it: shortened lines and byte counts. A leaf module, so every part of the
command layer (`render`, `training_text`, ...) can use it without importing the others."""

from __future__ import annotations


def short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def size_text(count: int) -> str:
    """A byte count as people read it: 512 bytes, 8 KiB, 1.5 MiB, 20 MiB."""
    if count < 1024:
        return f"{count} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024  # type: ignore[assignment]
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}".replace(".0 ", " ")
    raise AssertionError("unreachable")
