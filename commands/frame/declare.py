"""Options, declared once, in the spirit of ComfyUI's `INPUT_TYPES`.

An `Option` says what a command takes: its name, the other spellings people type, its kind,
bounds (read from the settings where they are settings), default, help and what it applies to.
From that one declaration come

- the text syntax's flags (`aliases`: `--clip-skip`, `—clip-skip`, `--clip_skip`, `--clipskip`);
- the one checker of plain values (`check`: numbers within bounds, switches, choices, text);
- what `/help COMMAND`, docs/commands.md and Discord's slash options say (`describe`);
- Discord's typed slash options (`bot.discord.slash` builds them), whose values reach the command
  layer typed (`read_flags` merges them with any `--flags` typed in the text).

Values whose check needs more than bounds (a size, a sampler, a LoRA list) keep their own
checker beside their command (`commands.jobs.options`); their declaration still says how they are
written and what they do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from commands.frame.numbers import bound_text, check_number, quoted
from commands.frame.parser import Flags, flag_name, parse_flags
from commands.frame.words import short
from config import Settings

# int/float: a number within bounds; switch: on or off (a bare `--loop` is on); choice: one of
# `choices`; text: words (checked by the command when they need more); file: an attachment (a
# slash command's file option; in the text syntax, the message's attachment).
Kind = Literal["int", "float", "switch", "choice", "text", "file"]
Bounds = tuple[float, float]
INVALID: Any = object()  # a value that failed its check (the problem is already recorded)
SWITCH_WORDS = {"": True, "on": True, "yes": True, "true": True, "1": True, "off": False, "no": False, "false": False, "0": False}


@dataclass(frozen=True)
class Option:
    name: str  # canonical, snake_case (`clip_skip`); written `--clip-skip` in help and replies
    kind: Kind
    help: str  # what it does, in a few words; bounds and default are added from the fields below
    aliases: tuple[str, ...] = ()  # other names people type (`cfg-scale`, `clipskip`); dashed and snake forms come free
    bounds: Bounds | Callable[[Settings], Bounds] | None = None  # int/float: lowest and highest
    default: Any | Callable[[Settings], Any] = None  # what "not given" means (None: nothing, or the command decides)
    choices: tuple[str, ...] | Callable[[Settings], tuple[str, ...]] = ()  # choice: the values it takes
    example: str = ""  # a value, for "needs a value, e.g. `--steps 30`"
    # What it applies to, when not everything the command does ("with an image", "SD 1.x/2.x"), or
    # limits that are no bounds (a size's sides), read from the settings.
    applies: str | Callable[[Settings], str] = ""
    positional: bool = False  # written without a flag, in its place in the command's forms (`/upscale 4`)
    rest: bool = False  # positional text that takes the rest of the line (a prompt), `--flags` after it
    required: bool = False
    repeatable: bool = False  # may be given more than once; the values are joined with ", "
    autocomplete: str | None = None  # "models": Discord suggests the configured models as people type
    slash: str = ""  # its name among Discord's slash options, where not `name` (`negative` for `no`)

    @property
    def slash_name(self) -> str:
        return self.slash or self.name

    @property
    def flag(self) -> str:
        return self.name if self.positional else flag_name(self.name)

    def spellings(self) -> set[str]:
        """Every name the text syntax takes for it (lower case, without dashes)."""
        names = {self.name, self.name.replace("_", "-"), self.name.replace("_", "")}
        return names | {alias.replace("_", "-") for alias in self.aliases} | set(self.aliases)

    def bounds_of(self, settings: Settings) -> Bounds | None:
        return self.bounds(settings) if callable(self.bounds) else self.bounds

    def default_of(self, settings: Settings) -> Any:
        return self.default(settings) if callable(self.default) else self.default

    def choices_of(self, settings: Settings) -> tuple[str, ...]:
        return tuple(self.choices(settings) if callable(self.choices) else self.choices)

    def limits_text(self, settings: Settings) -> str:
        """Bounds or choices and the default, as people write them: `1–100, default 25`."""
        parts = []
        bounds = self.bounds_of(settings)
        if bounds is not None:
            dash = " to " if bounds[0] < 0 else "–"  # `-1–4294967295` reads as a typo
            parts.append(f"{bound_text(bounds[0])}{dash}{bound_text(bounds[1])}")
        elif self.choices_of(settings):
            parts.append("|".join(self.choices_of(settings)))
        elif self.kind == "switch":
            parts.append("on|off")
        default = self.default_of(settings)
        if default is not None and default != "":
            shown = (
                ("on" if default else "off")
                if isinstance(default, bool)
                else bound_text(default)
                if isinstance(default, int | float)
                else default
            )
            parts.append(f"default {shown}")
        return ", ".join(parts)

    def line(self, settings: Settings) -> str:
        """How help and the docs list it: `--steps`: Sampling steps (1–100, default 25)."""
        if self.kind == "file":
            written = f"{self.name} (an attached file)"
        elif self.positional:
            written = self.name.upper()
        else:
            written = f"`{self.flag}`"
        return f"{written}: {self.describe(settings)}"

    def describe(self, settings: Settings, limit: int | None = None) -> str:
        """Help, then limits (`Sampling steps (1–100, default 25)`), then what it applies to."""
        limits = self.limits_text(settings)
        applies = self.applies(settings) if callable(self.applies) else self.applies
        text = self.help + (f" ({limits})" if limits else "") + (f"; {applies}" if applies else "")
        return short(text, limit) if limit else text


def aliases(options: Iterable[Option]) -> dict[str, str]:
    """Every spelling of every flag option -> its canonical name, for `parse_flags`."""
    return {
        spelling: option.name for option in options if not option.positional and option.kind != "file" for spelling in option.spellings()
    }


def repeatable(options: Iterable[Option]) -> frozenset[str]:
    return frozenset(option.name for option in options if option.repeatable)


def read_flags(typed: Mapping[str, Any] | None, args: str, options: Iterable[Option]) -> Flags:
    """The flags of `args` (the text syntax) and the typed values a platform sent (Discord's slash
    options, by canonical name), in one Flags. The same option given both ways is a problem."""
    options = tuple(options)
    flags = parse_flags(args, aliases(options), repeatable(options))
    for option in options:
        if option.positional or option.kind == "file" or typed is None or typed.get(option.name) is None:
            continue
        if option.name in flags.values:
            flags.problems.append(f"`{option.slash_name}:` and `{flags.written[option.name]}` in the text say the same thing; keep one.")
            continue
        flags.values[option.name] = typed[option.name]
        flags.written[option.name] = f"{option.slash_name}:"
    return flags


def check(option: Option, value: Any, settings: Settings, problems: list[str], written: str | None = None) -> Any:
    """`value` (text people typed, or a platform's typed value) checked against its declaration:
    the value, or INVALID with the problem recorded in the words every option uses."""
    flag = written or option.flag
    if isinstance(value, str) and not value.strip() and option.kind not in ("switch",):
        example = f", e.g. `{flag} {option.example}`" if option.example else ""
        problems.append(f"`{flag}` needs a value{example}.")
        return INVALID
    if option.kind in ("int", "float"):
        bounds = option.bounds_of(settings)
        assert bounds is not None, f"{option.name} is a number without bounds"
        number, problem = check_number(value, flag, int if option.kind == "int" else float, *bounds)
        if problem is not None:
            problems.append(problem)
            return INVALID
        return number
    if option.kind == "switch":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in SWITCH_WORDS:
            return SWITCH_WORDS[word]
        problems.append(f"`{flag}` is on or off (`{flag}` alone means on); you wrote `{quoted(value)}`.")
        return INVALID
    if option.kind == "choice":
        word = str(value).strip().lower()
        choices = option.choices_of(settings)
        for choice in choices:
            if word == choice.lower():
                return choice
        problems.append(f"`{flag}` is one of {', '.join(choices)}; you wrote `{quoted(value)}`.")
        return INVALID
    return str(value).strip()


def read_value(
    option: Option,
    values: Mapping[str, Any],
    settings: Settings,
    problems: list[str],
    written: Mapping[str, str] | None = None,
    default: Any = None,
) -> Any:
    """`option`'s checked value in `values` (a Flags' values), or `default` (the declared default
    when None) when it was not given or is not valid (then the problem is recorded)."""
    if default is None:
        default = option.default_of(settings)
    if option.name not in values or values[option.name] is None:
        return default
    value = check(option, values[option.name], settings, problems, (written or {}).get(option.name))
    return default if value is INVALID else value
