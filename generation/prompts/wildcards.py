r"""Wildcards: random parts of a prompt, in the syntax of A1111's sd-dynamic-prompts extension.
Torch-free and pure (only `read_wildcard_file` / `read_wildcard_folder` touch the disk).

    {a|b|c}          one of the options; options may be empty (`{|red }`) and nest (`{a {red|blue}|c}`)
    {2::a|b}         weighted: `a` twice as likely as `b` (an option without a weight weighs 1)
    {2$$a|b|c}       two different options, joined with ", "; `{1-3$$a|b|c}` one to three of them
    __name__         one line of the wildcard list `name` (`__colors/warm__` for subfolders)
    {2$$__name__}    two different lines of the list `name`

Rules, precisely:
- A `{...}` is a choice only when it holds a `|` of its own (not one inside a nested `{}` or an
  A1111 `[a|b]`). Balanced braces without one are ordinary text, kept with the braces, though what
  is inside them is still expanded: `{prompt}` and `{"a": 1}` stay as written. The exceptions are
  `{N$$__name__}`, which picks N lines of a list, and `{__name__}`, which is `__name__`.
- Every `{` needs its `}` and every `}` its `{`; otherwise expansion fails with a message that says
  where. Write `\{` or `\}` for a lone brace.
- A backslash makes the next character ordinary text, and expansion leaves both in place: `\{a|b}`
  stays `\{a|b}`. A1111's prompt parser then drops the backslash, as it does for `\(`; and because
  the output keeps its escapes, expanding an expanded prompt changes nothing.
- Everything else is A1111's and passes through untouched: `(x:1.2)`, `[x]`, `[a:b:10]`, `BREAK`,
  and the alternation `[a|b]`, whose `|` never splits a choice: `{[cat|dog]|bird}` has two options.
- Options are trimmed of the spaces around them; what an empty option leaves behind is not tidied.
- List names are letters, digits, `-` and `_` (never two `_` in a row), with `/` between folder
  names, at most 64 characters, and case-insensitive: `__Colors__` is the list `colors`. Anything
  else between `__` is ordinary text.
- A list's lines are prompts themselves: they may hold choices and other lists, up to
  MAX_FILE_DEPTH lists deep. A list that leads back to itself is an error, whether or not that
  line happens to be picked, as are unknown and empty lists: such errors do not depend on the seed.
- In list files, lines are trimmed; blank lines and lines starting with `#` are skipped.

Picks are deterministic: `random.Random(f"{salt}:{seed}")` (string seeds go through sha512, the
same on every machine) drives every choice, from left to right, and only its `random()` is used,
the one method whose sequence Python promises to keep across versions.
"""

from __future__ import annotations

import difflib
import logging
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 64
MAX_FILE_BYTES = 1_000_000  # one list file (or an uploaded list), UTF-8
MAX_FILE_LINES = 10_000  # lines of one list, comments and blank lines not counted
MAX_LINE_CHARS = 2_000  # one line: longer is no prompt (the prompt limit is 1500 by default)
MAX_FOLDER_FILES = 2_000  # list files read from one folder
MAX_NESTING = 20  # `{` inside `{` in one text
MAX_FILE_DEPTH = 10  # lists inside lists
MAX_EXPANDED_CHARS = 50_000  # what one expansion may produce: lists naming lists can multiply

_SEGMENT = r"[a-z0-9]+(?:[-_][a-z0-9]+)*"
_NAME = rf"{_SEGMENT}(?:/{_SEGMENT})*"
_NAME_RE = re.compile(_NAME, re.I | re.A)
_REF = re.compile(rf"__({_NAME})__", re.I | re.A)
_PLAIN = re.compile(r"[^\\{}\[\]|_]+")  # text with nothing of ours in it
_COUNT = re.compile(r"\s*(\d+)(?:\s*-\s*(\d+))?\s*\$\$")
_WEIGHT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*::")
_ONLY_REF = re.compile(rf"\s*__({_NAME})__\s*", re.I | re.A)
_JOIN = ", "

_LIST_HINT = "`/wildcard list` shows the lists you can use"


class WildcardError(ValueError):
    """A prompt or list that cannot be expanded; the message is meant for the user."""


# --- the parsed form --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    name: str  # lower case


@dataclass(frozen=True)
class _Choice:
    options: tuple[tuple[_Node, ...], ...]
    weights: tuple[float, ...]
    low: int = 1  # how many options to pick: between low and high, joined with ", "
    high: int = 1
    several: bool = False  # written with `N$$`: the picks are joined even when N is 1


@dataclass(frozen=True)
class _ListPick:  # `{N$$__name__}`
    name: str
    low: int
    high: int


_Node = str | _Ref | _Choice | _ListPick


class _Problem(Exception):
    """A syntax problem, worded for the user; WildcardError adds where it is."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def sequence(self, pos: int, in_option: bool, depth: int) -> tuple[list[_Node], int]:
        """Nodes from pos to the end, or (in an option) to the `|` or `}` that ends the option."""
        text, nodes = self.text, []
        brackets: list[int] = []  # where the A1111 `[...]` we are inside end: their `|` is theirs
        while pos < len(text):
            if brackets and pos == brackets[-1]:
                nodes.append("]")
                brackets.pop()
                pos += 1
                continue
            char = text[pos]
            if char == "\\":
                nodes.append(text[pos : pos + 2])
                pos += 2
            elif char == "{":
                node, pos = self.brace(pos, depth + 1)
                nodes.extend(node)
            elif char == "}":
                if in_option:
                    break
                raise _Problem(f"The `}}` at character {pos + 1} has no `{{` before it. Write `\\}}` for a lone brace.")
            elif char == "|":
                if in_option and not brackets:
                    break
                nodes.append(char)
                pos += 1
            elif char == "[" and in_option:
                end = self.bracket_end(pos)
                if end is not None:
                    brackets.append(end)
                nodes.append(char)
                pos += 1
            elif char == "_":
                match = _REF.match(text, pos)
                if match:
                    nodes.append(_Ref(match.group(1).lower()))
                    pos = match.end()
                else:
                    nodes.append(char)
                    pos += 1
            elif char in "[]":
                nodes.append(char)
                pos += 1
            else:
                match = _PLAIN.match(text, pos)
                assert match is not None
                nodes.append(match.group())
                pos = match.end()
        return nodes, pos

    def bracket_end(self, pos: int) -> int | None:
        """Where the `[` at pos closes, inside the current option; None when the option ends first.
        Braces between must balance, so a choice inside an A1111 bracket is whole."""
        text, squares, braces, pos = self.text, 1, 0, pos + 1
        while pos < len(text):
            char = text[pos]
            if char == "\\":
                pos += 1
            elif char == "{":
                braces += 1
            elif char == "}":
                if braces == 0:
                    return None
                braces -= 1
            elif char == "[" and braces == 0:
                squares += 1
            elif char == "]" and braces == 0:
                squares -= 1
                if squares == 0:
                    return pos
            pos += 1
        return None

    def brace(self, start: int, depth: int) -> tuple[list[_Node], int]:
        if depth > MAX_NESTING:
            raise _Problem(f"Braces nest more than {MAX_NESTING} deep.")
        text = self.text
        count = _COUNT.match(text, start + 1)
        pos = count.end() if count else start + 1
        options: list[tuple[_Node, ...]] = []
        weights: list[float] = []
        prefixes: list[str] = []  # as written, in case this turns out to be plain text
        first: list[_Node] = []
        while True:
            weight = _WEIGHT.match(text, pos)
            body = weight.end() if weight else pos
            nodes, end = self.sequence(body, True, depth)
            if end >= len(text):
                raise _Problem(f"The `{{` at character {start + 1} has no `}}`. Close it, or write `\\{{` for a lone brace.")
            if not options:
                first = nodes  # unstripped, for the plain-text form
            prefixes.append(text[pos:body])
            options.append(_strip(nodes))
            weights.append(float(weight.group(1)) if weight else 1.0)
            if text[end] == "}":
                close = end
                break
            pos = end + 1
        if len(options) == 1:
            only = _ONLY_REF.fullmatch(text, count.end() if count else start + 1, close)
            if only:  # `{N$$__name__}` picks N lines; `{__name__}` is one, as in sd-dynamic-prompts
                low, high = _bounds(count) if count else (1, 1)
                return [_ListPick(only.group(1).lower(), low, high)], close + 1
            # No `|`: ordinary text in braces, as written (the prefixes hold no syntax of ours).
            head = (text[start + 1 : count.end()] if count else "") + prefixes[0]
            return [node for node in ("{", head, *first, "}") if node != ""], close + 1
        if not any(weights):
            raise _Problem(f"Every option of the choice at character {start + 1} weighs 0, so none can be picked.")
        low, high = _bounds(count) if count else (1, 1)
        return [_Choice(tuple(options), tuple(weights), low, high, several=count is not None)], close + 1


def _bounds(count: re.Match[str]) -> tuple[int, int]:
    low = int(count.group(1))
    high = int(count.group(2)) if count.group(2) is not None else low
    if low > high:
        raise _Problem(f"`{count.group().strip()}` asks for {low} to {high} options; put the smaller number first.")
    return low, high


def _strip(nodes: list[_Node]) -> tuple[_Node, ...]:
    """An option without the spaces around it (`{ red | blue }` picks `red` or `blue`)."""
    out = list(nodes)
    if out and isinstance(out[0], str) and not out[0].startswith("\\"):
        out[0] = out[0].lstrip()
    if out and isinstance(out[-1], str) and not out[-1].startswith("\\"):
        out[-1] = out[-1].rstrip()
    return tuple(node for node in out if node != "")


@lru_cache(maxsize=8192)
def _parse(text: str) -> tuple[_Node, ...]:
    nodes, _ = _Parser(text).sequence(0, False, 0)
    return tuple(nodes)


def _parse_text(text: str) -> tuple[_Node, ...]:
    try:
        return _parse(text)
    except _Problem as problem:
        raise WildcardError(f"{problem} (in “{_short(text)}”)") from None


def _parse_line(name: str, line: str) -> tuple[_Node, ...]:
    try:
        return _parse(line)
    except _Problem as problem:
        raise WildcardError(f"In the wildcard list `__{name}__`, the line “{_short(line)}”: {problem}") from None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _walk(nodes: Sequence[_Node]) -> Iterator[str]:
    """The names of the lists `nodes` refer to, in every branch."""
    for node in nodes:
        if isinstance(node, _Ref | _ListPick):
            yield node.name
        elif isinstance(node, _Choice):
            for option in node.options:
                yield from _walk(option)


# --- checking: errors that do not depend on the seed ------------------------------------------------


def _fold(files: Mapping[str, Sequence[str]]) -> dict[str, Sequence[str]]:
    """Names are case-insensitive; callers store them lower case, but a stray capital must not matter."""
    return {name.lower(): lines for name, lines in files.items()}


def _unknown(name: str, files: Mapping[str, Sequence[str]]) -> WildcardError:
    message = f"There is no wildcard list `__{name}__`."
    close = difflib.get_close_matches(name, list(files), n=1)
    if close:
        message += f" Did you mean `__{close[0]}__`?"
    return WildcardError(f"{message} {_LIST_HINT}; add one with `/wildcard add {name}`.")


class _Checker:
    def __init__(self, files: Mapping[str, Sequence[str]]) -> None:
        self.files = files
        self.heights: dict[str, int] = {}  # lists checked: how many lists deep they go, themselves included

    def nodes(self, nodes: Sequence[_Node], chain: tuple[str, ...]) -> int:
        return max((self.list(name, chain) for name in _walk(nodes)), default=0)

    def list(self, name: str, chain: tuple[str, ...]) -> int:
        if name in chain:
            loop = " → ".join(f"`__{n}__`" for n in (*chain[chain.index(name) :], name))
            raise WildcardError(f"The wildcard list `__{name}__` leads back to itself ({loop}); a list may not.")
        height = self.heights.get(name)
        if height is None:
            if len(chain) >= MAX_FILE_DEPTH:
                self.too_deep(chain, name)
            lines = self.files.get(name)
            if lines is None:
                raise _unknown(name, self.files)
            if not lines:
                raise WildcardError(
                    f"The wildcard list `__{name}__` is empty (blank lines and # comments don't count). "
                    f"Add lines with `/wildcard add {name}`."
                )
            height = 1 + max(self.nodes(_parse_line(name, line), (*chain, name)) for line in lines)
            self.heights[name] = height
        if len(chain) + height > MAX_FILE_DEPTH:
            self.too_deep(chain, name)
        return height

    @staticmethod
    def too_deep(chain: tuple[str, ...], name: str) -> None:
        path = " → ".join(f"`__{n}__`" for n in (*chain, name))
        raise WildcardError(f"Wildcard lists nest more than {MAX_FILE_DEPTH} deep ({path} → …).")


def validate(text: str, files: Mapping[str, Sequence[str]]) -> None:
    """Raise WildcardError for anything in `text` that makes `expand` fail for some seed: broken
    braces (in the text or any line of a list it reaches), unknown or empty lists, a list that leads
    back to itself, lists nested too deep. Every branch counts, picked or not. (Only an expansion
    longer than MAX_EXPANDED_CHARS depends on the seed.)"""
    folded = _fold(files)
    _Checker(folded).nodes(_parse_text(text), ())


# --- the public interface ---------------------------------------------------------------------------


def has_wildcards(text: str) -> bool:
    """True when `expand` could change `text` or reject it: a choice, a list, or broken braces.
    False means every expansion is `text` itself."""
    try:
        return any(not isinstance(node, str) for node in _parse(text))
    except _Problem:
        return True


def referenced_files(text: str, files: Mapping[str, Sequence[str]] | None = None) -> set[str]:
    """The lists (lower-case names) that expanding `text` may read: those it names in any branch,
    and, for those found in `files`, the lists their lines name, and so on. Names missing from
    `files` are included, so the caller can fetch them and ask again. Never raises: broken braces
    are `expand`'s and `validate`'s to report, and the names are found the same way regardless."""
    folded = _fold(files or {})
    found: set[str] = set()
    todo = _scan_refs(text)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for line in folded.get(name, ()):
            todo.extend(_scan_refs(line))
    return found


def _scan_refs(text: str) -> list[str]:
    """Every `__name__` in text: the parser's tokens for `\\` and `_`, without its braces (which
    hold no `_` in their syntax), so this agrees with it even where the braces are broken."""
    names, pos = [], 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 2
        elif char == "_" and (match := _REF.match(text, pos)):
            names.append(match.group(1).lower())
            pos = match.end()
        else:
            pos += 1
    return names


def expand(text: str, seed: int, files: Mapping[str, Sequence[str]], *, salt: str = "") -> str:
    """`text` with every choice and list picked, from `seed` alone (and `salt`: the negative prompt
    uses "negative", so its picks do not mirror the prompt's). The same arguments give the same
    result on any machine and Python version. Raises WildcardError as `validate` does, for any seed,
    and when the result would pass MAX_EXPANDED_CHARS."""
    folded = _fold(files)
    nodes = _parse_text(text)
    _Checker(folded).nodes(nodes, ())
    expander = _Expander(random.Random(f"{salt}:{seed}"), folded)
    expander.nodes(nodes)
    return "".join(expander.out)


class _Expander:
    def __init__(self, rng: random.Random, files: Mapping[str, Sequence[str]]) -> None:
        self.rng, self.files = rng, files
        self.out: list[str] = []
        self.size = 0

    def nodes(self, nodes: Sequence[_Node]) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.write(node)
            elif isinstance(node, _Ref):
                lines = self.files[node.name]
                self.nodes(_parse_line(node.name, lines[self.index(len(lines))]))
            elif isinstance(node, _Choice):
                picks = self.pick(list(node.weights), node.low, node.high)
                if node.several:
                    self.joined([node.options[i] for i in picks])
                else:
                    self.nodes(node.options[picks[0]])
            else:
                lines = self.files[node.name]
                picks = self.pick([1.0] * len(lines), node.low, node.high)
                self.joined([_parse_line(node.name, lines[i]) for i in picks])

    def joined(self, options: list[tuple[_Node, ...]]) -> None:
        """The options one after another, ", " between those that gave any text."""
        first = True
        for option in options:
            mark = len(self.out)
            self.nodes(option)
            if "".join(self.out[mark:]):
                if not first:
                    self.out.insert(mark, _JOIN)
                first = False

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_EXPANDED_CHARS:
            raise WildcardError(f"The prompt expands to more than {MAX_EXPANDED_CHARS} characters; its lists name too many lists.")
        self.out.append(text)

    def index(self, n: int) -> int:
        # floor(random() * n), not randrange/choice: only random() is promised stable across versions.
        return min(int(self.rng.random() * n), n - 1)

    def pick(self, weights: list[float], low: int, high: int) -> list[int]:
        """Indexes of between low and high different options, drawn by weight, in drawing order."""
        count = low + self.index(high - low + 1) if high > low else low
        chosen: list[int] = []
        while len(chosen) < count:
            total = sum(weights)
            if total <= 0:  # fewer options (of any weight) than asked for: all of them
                break
            target, running = self.rng.random() * total, 0.0
            index = max(i for i, w in enumerate(weights) if w > 0)  # rounding at the very top lands here
            for i, weight in enumerate(weights):
                running += weight
                if weight > 0 and target < running:
                    index = i
                    break
            chosen.append(index)
            weights[index] = 0.0
        return chosen


# --- names and list files -----------------------------------------------------------------------------


def valid_name(name: str) -> bool:
    """A list name one can write as `__name__`: letters, digits, single `-` or `_` between them,
    `/` between folder names, at most MAX_NAME_CHARS. Case does not matter (store `name.lower()`)."""
    return len(name) <= MAX_NAME_CHARS and _NAME_RE.fullmatch(name) is not None


def clean_lines(text: str, *, check_syntax: bool = True) -> tuple[str, ...]:
    """A list's options from its text (an upload, or a file): lines trimmed, blank lines and lines
    starting with `#` dropped. Raises WildcardError past MAX_FILE_BYTES, MAX_FILE_LINES or
    MAX_LINE_CHARS, and (unless check_syntax is False) for a line with broken braces: the uploader
    hears it now rather than when a prompt picks that line. `__other__` lists a line names are not
    checked here: they may be added later."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise WildcardError(f"The list is larger than {MAX_FILE_BYTES // 1_000_000} MB.")
    lines = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_LINE_CHARS:
            raise WildcardError(f"Line {number} is {len(line)} characters long; the limit is {MAX_LINE_CHARS}.")
        if check_syntax:
            try:
                _parse(line)
            except _Problem as problem:
                raise WildcardError(f"Line {number} (“{_short(line)}”): {problem}") from None
        lines.append(line)
        if len(lines) > MAX_FILE_LINES:
            raise WildcardError(f"The list has more than {MAX_FILE_LINES} lines.")
    return tuple(lines)


def read_wildcard_file(path: Path) -> tuple[str, ...]:
    """One list file, UTF-8 (a BOM is fine), by `clean_lines`' rules; the size is checked before
    reading. Broken braces are reported when a prompt uses the line, not here. Raises WildcardError
    naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WildcardError(f"is {size} bytes; the limit is {MAX_FILE_BYTES}")
        return clean_lines(path.read_bytes().decode("utf-8"), check_syntax=False)
    except UnicodeDecodeError as error:
        raise WildcardError(f"Wildcard file {path}: not UTF-8 text ({error.reason} at byte {error.start}).") from None
    except (WildcardError, OSError) as error:
        raise WildcardError(f"Wildcard file {path}: {error}") from None


def read_wildcard_folder(folder: Path) -> dict[str, tuple[str, ...]]:
    """Every `*.txt` under `folder`, by name: its path relative to the folder, without `.txt`, with
    `/` separators, lower case (`Colors/Warm.txt` is `colors/warm`). A file that cannot be a list
    (a name `__...__` cannot spell, too large, not UTF-8, a name that differs from another only by
    case) is skipped with a warning in the log, so one bad file in a downloaded collection does not
    take the others with it. At most MAX_FOLDER_FILES files are read."""
    lists: dict[str, tuple[str, ...]] = {}
    for path in sorted(folder.rglob("*.txt")):
        if not path.is_file():
            continue
        name = path.relative_to(folder).with_suffix("").as_posix()
        if not valid_name(name):
            log.warning("wildcard file %s skipped: `__%s__` is not a valid list name", path, name)
            continue
        if name.lower() in lists:
            log.warning("wildcard file %s skipped: another file is also named `__%s__`", path, name.lower())
            continue
        if len(lists) >= MAX_FOLDER_FILES:
            log.warning("wildcard folder %s: more than %d files; the rest are skipped", folder, MAX_FOLDER_FILES)
            break
        try:
            lists[name.lower()] = read_wildcard_file(path)
        except WildcardError as error:
            log.warning("wildcard file skipped: %s", error)
    return lists
