"""Texts cut to a platform's message limits, shared by the chat adapters."""

from __future__ import annotations


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chunks(text: str, limit: int) -> list[str]:
    """Split a long text at line ends into pieces of at most `limit` characters (a line longer
    than that is cut). Joined, the pieces give the text back."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            pieces.append(current)
            current = ""
        current += line
    if current or not pieces:
        pieces.append(current)
    return pieces
