r"""A1111's prompt editing and alternation: which text conditions which sampling step. Torch-free.

    [from:to:when]   `from` up to and including step `when`, then `to`
    [to:when]        nothing, then `to` after step `when`
    [from::when]     `from`, then nothing after step `when`
    [a|b|c]          a at step 1, b at step 2, c at step 3, a at step 4, ...

`when` is a step when written without a decimal point (`3`), a fraction of the steps when
written with one (`0.25`, `.5`, `1.`). `(x)`, `(x:1.2)` and a plain `[x]` are emphasis, not
editing: they stay in the text for the attention parser.

This reproduces `get_learned_conditioning_prompt_schedules` of AUTOMATIC1111's
`modules/prompt_parser.py` (its lark grammar, lark 1.1.2 as A1111 pins it), result for result,
without lark: prompts written for A1111 must switch at the same steps here. The grammar is

    start:      (prompt | /[][():]/+)*
    prompt:     (emphasized | scheduled | alternate | plain | WHITESPACE)*
    emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
    scheduled:  "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
    alternate:  "[" prompt ("|" [prompt])+ "]"
    plain:      /([^\\\[\]():|]|\\.)+/

Inside brackets it is unambiguous, so a bracket opened at a given position either has exactly one
parse or none, and a recursive-descent parser finds it. Only the top level is ambiguous, because a
stray `[ ] ( ) :` is allowed there: `[b:3]` could be a schedule or five characters of text. This
parser takes the bracket wherever it parses, which is what lark chooses (checked against A1111's
code on thousands of random prompts) except where lark has no fixed choice: where a complete bracket
at the top level is followed at once by a stray `] ) ( [ :` (`(x [a:b:5]))`, `[a:b:5]:x`), lark
breaks the tie by the iteration order of a set, so A1111 itself answers differently from one process
to the next (it follows Python's hash seed). Taking the bracket is one of its answers, and the one
the writer meant.

A `|` outside any alternation, or a `\` with nothing (or a line break) after it, makes the whole
prompt fail to parse, and then A1111 conditions every step on the prompt as written; so does this
module. So does a `when` too large to be a number (`1e999`), where A1111 raises, and brackets nested
more than 100 deep.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

# The terminals exactly as lark compiles them. NUMBER is lark's SIGNED_NUMBER: its alternatives are
# tried in this order and the first that matches wins (lark's dynamic lexer takes no shorter or
# longer match), so `1.5e]` reads `1.5` and then fails on `e`.
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_NUMBER = re.compile(r"[+\-]?(?:[0-9]+[eE][+\-]?[0-9]+|(?:[0-9]+\.(?:[0-9]+)?|\.[0-9]+)(?:[eE][+\-]?[0-9]+)?|[0-9]+)")
_WHITESPACE = re.compile(r"\s+")
_STRAY = frozenset("[]():")  # what the top level may hold outside any bracket construct

# Nesting deeper than this is no prompt a person writes; refusing it keeps the recursive parser and
# evaluator clear of Python's recursion limit (lark itself recurses when A1111 transforms the tree).
_MAX_DEPTH = 100


@dataclass(frozen=True)
class _Scheduled:
    before: tuple[_Node, ...] | None  # None for `[to:when]`, which shows nothing before `when`
    after: tuple[_Node, ...]
    number: str  # as written: whether it has a "." decides step or fraction


@dataclass(frozen=True)
class _Alternate:
    options: tuple[tuple[_Node, ...], ...]


_Node = str | _Scheduled | _Alternate


class _TooDeep(Exception):
    pass


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        # A bracket's parse does not depend on what surrounds it, so each position is parsed once
        # even when the top level retries brackets after a failed outer one.
        self.memo: dict[int, tuple[tuple[_Node, ...], int] | None] = {}

    def top(self) -> tuple[_Node, ...] | None:
        text, nodes, pos = self.text, [], 0
        while pos < len(text):
            char = text[pos]
            if char in "[(":
                parsed = self.bracket(pos, 1)
                if parsed is not None:
                    nodes.extend(parsed[0])
                    pos = parsed[1]
                    continue
            if char in _STRAY:
                nodes.append(char)
                pos += 1
                continue
            match = _PLAIN.match(text, pos)
            if match is None:  # `|` outside an alternation, or a `\` that escapes nothing
                return None
            nodes.append(match.group())
            pos = match.end()
        return tuple(nodes)

    def prompt(self, pos: int, depth: int) -> tuple[list[_Node], int] | None:
        """Items up to the next `] ) : |` or the end; None where a bracket inside fails."""
        text, nodes = self.text, []
        while pos < len(text):
            char = text[pos]
            if char in "]):|":
                break
            if char in "[(":
                parsed = self.bracket(pos, depth + 1)
                if parsed is None:
                    return None
                nodes.extend(parsed[0])
                pos = parsed[1]
                continue
            match = _PLAIN.match(text, pos)
            if match is None:
                return None
            nodes.append(match.group())
            pos = match.end()
        return nodes, pos

    def bracket(self, pos: int, depth: int) -> tuple[tuple[_Node, ...], int] | None:
        if depth > _MAX_DEPTH:
            raise _TooDeep
        if pos not in self.memo:
            self.memo[pos] = self._bracket(pos, depth)
        return self.memo[pos]

    def _bracket(self, pos: int, depth: int) -> tuple[tuple[_Node, ...], int] | None:
        text = self.text
        first = self.prompt(pos + 1, depth)
        if first is None:
            return None
        nodes, end = first
        closer = text[end] if end < len(text) else ""
        if text[pos] == "(":  # emphasis: kept as text, brackets and weight included
            if closer == ")":
                return ("(", *nodes, ")"), end + 1
            if closer == ":":
                second = self.prompt(end + 1, depth)
                if second is not None and second[1] < len(text) and text[second[1]] == ")":
                    return ("(", *nodes, ":", *second[0], ")"), second[1] + 1
            return None
        if closer == "]":
            return ("[", *nodes, "]"), end + 1
        if closer == "|":
            options = [tuple(nodes)]
            while end < len(text) and text[end] == "|":
                option = self.prompt(end + 1, depth)
                if option is None:
                    return None
                options.append(tuple(option[0]))
                end = option[1]
            if end < len(text) and text[end] == "]":
                return (_Alternate(tuple(options)),), end + 1
            return None
        if closer == ":":
            # `[to:when]` and `[from:to:when]` cannot both fit: the first needs `]` right after the
            # number, the second a second `:` before any `]`.
            when = self.when(end + 1)
            if when is not None:
                return (_Scheduled(None, tuple(nodes), when[0]),), when[1]
            second = self.prompt(end + 1, depth)
            if second is None or second[1] >= len(text) or text[second[1]] != ":":
                return None
            when = self.when(second[1] + 1)
            if when is None:
                return None
            return (_Scheduled(tuple(nodes), tuple(second[0]), when[0]),), when[1]
        return None

    def when(self, pos: int) -> tuple[str, int] | None:
        """`[WHITESPACE] NUMBER [WHITESPACE] "]"` at pos: the number as written, and the end."""
        text = self.text
        space = _WHITESPACE.match(text, pos)
        number = _NUMBER.match(text, space.end() if space else pos)
        if number is None:
            return None
        space = _WHITESPACE.match(text, number.end())
        end = space.end() if space else number.end()
        if end < len(text) and text[end] == "]":
            return number.group(), end + 1
        return None


@functools.lru_cache(maxsize=256)
def _parse(prompt: str) -> tuple[_Node, ...] | None:
    """The prompt's parse, or None where A1111 would condition on the prompt as written."""
    try:
        return _Parser(prompt).top()
    except _TooDeep:
        return None


def _walk(nodes: tuple[_Node, ...]) -> Iterator[_Scheduled | _Alternate]:
    """Every edit and alternation, nested ones included, shown at some step or not (as A1111's
    visitor collects them)."""
    for node in nodes:
        if isinstance(node, _Scheduled):
            yield node
            yield from _walk(node.before or ())
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            yield node
            for option in node.options:
                yield from _walk(option)


def _text_at(nodes: tuple[_Node, ...], step: int, whens: dict[int, int], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            # `[to:when]` shows nothing up to and including `when`, as A1111's `before or ()`.
            chosen = node.before if step <= whens[id(node)] else node.after
            _text_at(chosen or (), step, whens, out)
        else:
            _text_at(node.options[(step - 1) % len(node.options)], step, whens, out)


def has_schedule(prompt: str) -> bool:
    """True when the prompt holds editing (`[a:b:when]`, `[a:when]`, `[a::when]`) or alternation
    (`[a|b]`) that A1111 would act on. False means `prompt_schedule` is `[(steps, prompt)]` for any
    steps, so callers can encode the prompt once; True does not promise more than one entry
    (`[a:b:0]` never switches)."""
    nodes = _parse(prompt)
    return nodes is not None and next(_walk(nodes), None) is not None


def prompt_schedule(prompt: str, steps: int, *, hires_steps: int | None = None, use_old_scheduling: bool = False) -> list[tuple[int, str]]:
    """[(end_at_step, text)] for one prompt: the text to condition with up to and including step
    end_at_step (1-based), as A1111 returns.

    `steps` is the (first pass) sampling steps. For a hires-fix second pass give its steps as
    `hires_steps`: there, as in A1111, a whole number `when` counts on from the first pass
    (`[a:b:25]` after 20 base steps switches at hires step 5) and a fraction runs 1..2 over the
    second pass (`1.5` is its middle). `use_old_scheduling` is A1111's "use old prompt editing
    timelines" setting: `when` < 1 is a fraction of `steps`, anything else a step, and hires steps
    are ignored.

    One entry per step where some edit in the prompt switches (every step where it alternates),
    the last at the pass's steps. As A1111, consecutive entries may hold the same text: an edit
    whose branch is not shown still ends an entry. A prompt that does not parse, or whose `when`
    is too large to be a number of steps, conditions every step as written."""
    if steps < 1 or (hires_steps is not None and hires_steps < 1):
        raise ValueError("steps must be at least 1")
    if hires_steps is None or use_old_scheduling:
        int_offset, float_offset, total = 0, 0.0, steps
    else:
        int_offset, float_offset, total = steps, 1.0, hires_steps
    nodes = _parse(prompt)
    if nodes is None:
        return [(total, prompt)]
    ends = {total}
    whens: dict[int, int] = {}
    for node in _walk(nodes):
        if isinstance(node, _Alternate):
            ends.update(range(1, total + 1))
            continue
        value = float(node.number)
        if use_old_scheduling:
            value = value * total if value < 1 else value
        elif "." in node.number:
            value = (value - float_offset) * total
        else:
            value = value - int_offset
        try:
            when = min(total, int(value))
        except OverflowError:  # `1e999`: A1111 crashes here; the prompt as written is kinder
            return [(total, prompt)]
        whens[id(node)] = when
        if when >= 1:
            ends.add(when)
    schedule = []
    for end in sorted(ends):
        out: list[str] = []
        _text_at(nodes, end, whens, out)
        schedule.append((end, "".join(out)))
    return schedule
