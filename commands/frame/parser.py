"""The text syntax shared by every platform, Midjourney-style:

    /imagine a red fox in the snow --no blurry --ar 3:2 --seed 42 --steps 30

A message is an optional `/command` (with an optional `@botname`, as Telegram sends in groups),
then free text, then `--flags`. A flag's value is everything up to the next flag, so `--no` takes
a whole phrase. Phones turn `--` into an em dash; `—no` works too. This module only splits text;
`commands.jobs.options` checks the values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_COMMAND = re.compile(r"^/(?P<name>[A-Za-z][\w-]*)(?:@(?P<bot>\w+))?(?=\s|$)")
_FLAG = re.compile(r"(?:(?<=\s)|^)(?:--|—|–)(?P<name>[A-Za-z][\w-]*)(?=\s|$)")


@dataclass(frozen=True)
class CommandText:
    name: str | None  # "imagine", or None for plain text
    args: str
    bot: str | None = None  # the @botname it was addressed to, if any


@dataclass
class Flags:
    text: str  # the free text before the first flag
    values: dict[str, str] = field(default_factory=dict)  # canonical name -> raw value ("" when bare)
    written: dict[str, str] = field(default_factory=dict)  # canonical name -> what the user typed
    problems: list[str] = field(default_factory=list)  # unknown or repeated flags


def flag_name(canonical: str) -> str:
    """How an option is written in help, the docs and every reply: `--clip-skip` for the
    canonical `clip_skip` (people may type either)."""
    return "--" + canonical.replace("_", "-")


def split_command(text: str) -> CommandText:
    stripped = text.strip()
    match = _COMMAND.match(stripped)
    if not match:
        return CommandText(None, stripped)
    return CommandText(match["name"].lower(), stripped[match.end() :].strip(), match["bot"])


# Flags that may be given more than once; their values are joined with ", " (`--style a --style b`,
# `--lora fox:0.8 --lora owl`, `--control canny:0.8 --control depth:0.5`).
REPEATABLE = frozenset({"style", "lora", "control"})


def parse_flags(args: str, aliases: dict[str, str], repeatable: frozenset[str] = REPEATABLE) -> Flags:
    """Split `args` into free text and flags. `aliases` maps every accepted flag name (without
    dashes, lower case) to its canonical name. Unknown and repeated flags (other than `repeatable`
    ones) are collected in `problems`, so that one reply can list them with any bad values
    (`commands.jobs.options`)."""
    matches = list(_FLAG.finditer(args))
    flags = Flags(text=(args[: matches[0].start()] if matches else args).strip())
    problems = flags.problems
    for i, match in enumerate(matches):
        written = match["name"].lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(args)
        value = args[match.end() : end].strip()
        canonical = aliases.get(written)
        if canonical is None:
            known = ", ".join(flag_name(name) for name in dict.fromkeys(aliases.values()))
            problems.append(f"I don't know the option `--{written}`. Options here: {known}.")
            continue
        if canonical in flags.values and canonical in repeatable:
            flags.values[canonical] = f"{flags.values[canonical]}, {value}"
            continue
        if canonical in flags.values:
            problems.append(f"`--{written}` is given twice; keep one.")
            continue
        flags.values[canonical] = value
        flags.written[canonical] = f"--{written}"
    return flags
