"""The one reader of numbers that people type, for the whole command layer.

Python's own readers accept more than a person means and fail in ways that are not a user's
mistake: `"²".isdigit()` is true but `int("²")` raises, `int("٣")` is 3, `int("1_000")` is
1000, and `int()` of 4,300 digits raises its own ValueError. A number here is ASCII digits
(with a sign, a decimal point and an exponent for decimals), at most MAX_DIGITS long, finite,
and within the bounds its caller names. Anything else gets a reply that says what to write,
with the bounds printed as people write them (`4294967295`, not `4.29497e+09`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from commands.frame.errors import UserError
from commands.frame.words import short

MAX_DIGITS = 24  # longer than any bound we have (a seed is 10 digits); more is not a number people mean
MAX_JOB_ID = 2**31 - 1  # the jobs table's integer id (PostgreSQL's INTEGER)
_INT = re.compile(rf"[+-]?[0-9]{{1,{MAX_DIGITS}}}")
_DECIMAL = re.compile(rf"[+-]?(?=[.]?[0-9])[0-9]{{0,{MAX_DIGITS}}}(?:[.][0-9]{{0,{MAX_DIGITS}}})?(?:[eE][+-]?[0-9]{{1,3}})?")


def read_int(text: str) -> int | None:
    """`text` as a whole number, or None when it is not one as people write it."""
    stripped = text.strip()
    return int(stripped) if _INT.fullmatch(stripped) else None


def read_float(text: str) -> float | None:
    """`text` as a finite decimal number (`0.8`, `-1`, `.5`, `2e-3`), or None."""
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped):
        return None
    number = float(stripped)
    return number if math.isfinite(number) else None


def bound_text(bound: float) -> str:
    """A bound as people write it: `4294967295`, `30`, `0.01`."""
    if float(bound).is_integer():
        return str(int(bound))
    return f"{bound:.6f}".rstrip("0")


def quoted(value: object, limit: int = 40) -> str:
    """What the person wrote, shortened for a reply (a pasted wall of digits stays out of chat)."""
    return short(str(value), limit)


def check_number(value: Any, flag: str, kind: type, low: float, high: float) -> tuple[Any, str | None]:
    """`value` (typed text, or a number from a platform's typed option) as `kind` (int or float)
    from `low` to `high`: `(number, None)`, or `(None, the problem in the words every option
    uses)`."""
    what = "a whole number" if kind is int else "a number"
    number: int | float | None = None
    if isinstance(value, str):
        number = read_int(value) if kind is int else read_float(value)
        first, _, rest = value.strip().partition(" ")
        if number is None and rest and (read_int(first) if kind is int else read_float(first)) is not None:
            return None, options_first(flag, first, rest)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if kind is float and math.isfinite(value):
            number = float(value)
        elif kind is int and float(value).is_integer():
            number = int(value)
    bounds = f"{bound_text(low)} to {bound_text(high)}"
    if number is None:
        return None, f"`{flag}` must be {what} from {bounds}; you wrote `{quoted(value)}`."
    if not low <= number <= high:
        return None, f"`{flag} {quoted(value)}` is out of bounds: use {bounds}."
    return number, None


def options_first(flag: str, value: str, rest: str) -> str:
    """`/imagine --steps 4 a cat`: an option's value runs to the next option, so the prompt was
    read as part of it. Say where options go, with the line rewritten."""
    return (
        f"`{flag} {quoted(value)}` is followed by `{quoted(rest)}`: options go after the prompt, "
        f"e.g. `{quoted(rest)} {flag} {quoted(value)}`."
    )


def job_number(text: str) -> int | None:
    """A job number as people write it (`12`, `#12`); None when `text` is not a number. A number
    no job can have is answered here, as a job we can't find."""
    number = read_int(text.strip().removeprefix("#"))
    if number is None:
        return None
    if not 1 <= number <= MAX_JOB_ID:
        raise UserError(f"There is no job {quoted(number)}. `/history` lists yours with their numbers.")
    return number
