"""What a reader returns: `ImageMetadata`, and `Result`, the builder every reader fills in.

`Result` keeps the display settings bounded (MAX_SETTINGS entries of at most MAX_VALUE
characters) and turns raw steps / CFG / seed / size / model values into the canonical options of
`commands.jobs.options`, or into a note where a value is not one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from commands.jobs.options import MAX_SEED
from commands.pictures.metadata.limits import MAX_SETTINGS, MAX_TEXT, MAX_VALUE
from commands.pictures.metadata.values import add_note, number_text, short, to_float, to_int

Source = Literal["sdbot", "a1111", "comfyui", "novelai"]


@dataclass(frozen=True)
class ImageMetadata:
    source: Source  # which tool wrote it (Forge counts as a1111)
    prompt: str
    negative: str
    settings: dict[str, str]  # what the image says, for display; A1111 key names where they exist
    options: dict[str, Any]  # canonical raw option values for commands.jobs.options.read_options
    notes: tuple[str, ...]  # what could not be carried over, for the user
    job_id: int | None  # ours: the `Job: N` of an sdbot image
    raw: str  # the text or JSON as found (at most MAX_TEXT characters)


def with_note(found: ImageMetadata, note: str) -> ImageMetadata:
    return ImageMetadata(
        found.source,
        found.prompt,
        found.negative,
        found.settings,
        found.options,
        (*found.notes, note),
        found.job_id,
        found.raw,
    )


class Result:
    """An ImageMetadata under construction."""

    def __init__(self, source: Source, raw: str, notes: list[str]):
        self.source = source
        self.raw = raw[:MAX_TEXT]
        self.prompt = ""
        self.negative = ""
        self.settings: dict[str, str] = {}
        self.options: dict[str, Any] = {}
        self.notes = list(notes)
        self.job_id: int | None = None

    def note(self, text: str) -> None:
        add_note(self.notes, text)

    def show(self, key: str, value: object) -> None:
        if value is None or value == "" or len(self.settings) >= MAX_SETTINGS:
            return
        text = number_text(value) if isinstance(value, float) else str(value)
        self.settings[key] = text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"

    def steps(self, value: object) -> None:
        steps = to_int(value)
        if steps is not None and steps >= 1:
            self.options["steps"] = steps
        elif value is not None:
            self.note(f"Steps `{short(value)}` is not a step count; not carried over.")

    def cfg(self, value: object) -> None:
        cfg = to_float(value)
        if cfg is not None:
            self.options["cfg"] = cfg
        elif value is not None:
            self.note(f"CFG scale `{short(value)}` is not a number; not carried over.")

    def seed(self, value: object) -> None:
        seed = to_int(value)
        if seed is not None and 0 <= seed <= MAX_SEED:
            self.options["seed"] = seed
        elif seed is not None and seed > MAX_SEED:
            self.note(f"Seed {seed} is above {MAX_SEED}, the largest seed here; a new seed is drawn.")
        elif value is not None and seed != -1:
            self.note(f"Seed `{short(value)}` is not a seed; not carried over.")

    def sampler(self, mapped: tuple[str | None, str | None]) -> None:
        """Our sampler for another program's (name, note), from `commands.pictures.metadata.samplers`."""
        name, note = mapped
        if name:
            self.options["sampler"] = name
        if note:
            self.note(note)

    def size(self, width: object, height: object) -> None:
        w, h = to_int(width), to_int(height)
        if w is not None and h is not None and w > 0 and h > 0:
            self.options["size"] = f"{w}x{h}"

    def model(self, name: object) -> None:
        if isinstance(name, str) and name.strip():
            self.options["model"] = name.strip()

    def build(self) -> ImageMetadata:
        return ImageMetadata(
            source=self.source,
            prompt=self.prompt[:MAX_TEXT],
            negative=self.negative[:MAX_TEXT],
            settings=self.settings,
            options=self.options,
            notes=tuple(self.notes),
            job_id=self.job_id,
            raw=self.raw,
        )
