"""Deforum's schedules: `0:(1.0), 30:(1.05)` keyframes for zoom, angle, translation, strength, and
`0: a forest, 24: a city` prompts by frame.

Values follow Deforum's `get_inbetweens` (deforum-for-automatic1111-webui, animation_key_frames.py):
- a number at a keyframe is held there, and frames between two numbers are interpolated
  linearly; before the first keyframe the first value holds, after the last the last;
- an expression of `t` (the frame index) is evaluated at its keyframe and at every frame after it
  until the next keyframe, e.g. `0:(1 + 0.002*sin(t/10))`; `max_f` is the last frame's index.

Deforum evaluates expressions with numexpr; here a small evaluator walks Python's own parse tree
and allows only numbers, `t`, `max_f`, `pi`, `e`, arithmetic and a list of math functions, with
bounds on length, depth and size. Nothing is ever passed to `eval`, so a schedule from a chat
cannot run code or exhaust the machine.

A problem is a `ScheduleError` that says where: the character position in the text as written.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from dataclasses import dataclass

MAX_SCHEDULE_CHARS = 2000
MAX_EXPRESSION_CHARS = 200
MAX_EXPRESSION_DEPTH = 20
MAX_MAGNITUDE = 1e9  # a value beyond this is a mistake (and keeps `**` from building huge numbers)

FUNCTIONS = {
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "sqrt": math.sqrt,
    "abs": abs,
    "exp": math.exp,
    "log": math.log,
    "floor": math.floor,
    "ceil": math.ceil,
    "min": min,
    "max": max,
    "round": round,
}
CONSTANTS = {"pi": math.pi, "e": math.e}


class ScheduleError(ValueError):
    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at character {position + 1})")
        self.message, self.position = message, position


@dataclass(frozen=True)
class Keyframe:
    frame: int
    text: str  # the value as written: a number or an expression of t
    position: int  # where the value starts in the schedule text
    number: float | None  # the value when it is a plain number


# `12:(1.05)`: a frame number, a colon, a value in parentheses (nested parentheses allowed inside)
_KEY = re.compile(r"\s*(-?\d+)\s*:\s*\(")


def parse_keyframes(text: str) -> list[Keyframe]:
    """`0:(1.0), 30:(1.05)` → its keyframes, in frame order. Raises ScheduleError."""
    if len(text) > MAX_SCHEDULE_CHARS:
        raise ScheduleError(f"a schedule may be {MAX_SCHEDULE_CHARS} characters long", MAX_SCHEDULE_CHARS)
    keyframes: list[Keyframe] = []
    at = 0
    while at < len(text):
        match = _KEY.match(text, at)
        if match is None:
            raise ScheduleError("expected a keyframe like `0:(1.02)`", _skip_space(text, at))
        frame = int(match.group(1))
        if frame < 0:
            raise ScheduleError("frame numbers start at 0", match.start(1))
        start = match.end()
        end = _closing(text, start - 1)
        value = text[start:end].strip()
        if not value:
            raise ScheduleError("a keyframe needs a value inside its parentheses", start)
        if any(k.frame == frame for k in keyframes):
            raise ScheduleError(f"frame {frame} has two keyframes", match.start(1))
        number = _number(value)
        if number is None:
            _check_expression(value, start + (len(text[start:end]) - len(text[start:end].lstrip())))
        keyframes.append(Keyframe(frame, value, start, number))
        at = _skip_space(text, end + 1)
        if at < len(text):
            if text[at] != ",":
                raise ScheduleError("keyframes are separated by commas", at)
            at += 1
            if not text[at:].strip():
                raise ScheduleError("a keyframe should follow the comma", at)
    if not keyframes:
        raise ScheduleError("a schedule needs at least one keyframe, like `0:(1.02)`", 0)
    return sorted(keyframes, key=lambda k: k.frame)


def schedule_values(text: str, frames: int) -> list[float]:
    """The value of the schedule `text` at each of `frames` frames, as Deforum computes it."""
    keyframes = {k.frame: k for k in parse_keyframes(text)}
    last = frames - 1
    values: list[float | None] = [None] * frames
    expression: Keyframe | None = None  # the expression in force, until the next keyframe
    for frame in range(frames):
        if frame in keyframes:
            key = keyframes[frame]
            expression = None if key.number is not None else key
            if key.number is not None:
                values[frame] = key.number
        if expression is not None:
            values[frame] = evaluate(expression.text, t=frame, max_f=last, position=expression.position)
    known = [i for i, v in enumerate(values) if v is not None]
    if not known:  # every keyframe lies beyond the clip: the first one holds throughout
        first = min(keyframes.values(), key=lambda k: k.frame)
        value = first.number if first.number is not None else evaluate(first.text, t=0, max_f=last, position=first.position)
        return [value] * frames
    values[0] = values[0] if values[0] is not None else values[known[0]]
    values[last] = values[last] if values[last] is not None else values[known[-1]]
    return _interpolate(values)


def _interpolate(values: list[float | None]) -> list[float]:
    """Linear between known values (pandas' `interpolate(method="linear")` on a frame index)."""
    known = [i for i, v in enumerate(values) if v is not None]
    result = list(values)
    for left, right in itertools.pairwise(known):
        a, b = values[left], values[right]
        assert a is not None and b is not None
        for i in range(left + 1, right):
            result[i] = a + (b - a) * (i - left) / (right - left)
    return [float(v) for v in result]  # type: ignore[arg-type]


# --- prompts by frame ---------------------------------------------------------------------------

# `24: a city` starts a new prompt: a frame number and a colon at the start or after a comma
_PROMPT_KEY = re.compile(r"(?:^|,)\s*([0-9]+)\s*:")
# What looks like a key but is no frame number (`x: a city`, `1.5: a city`), in a schedule
_OTHER_KEY = re.compile(r"(?:^|,)\s*([^\s,:()\[\]<>]{1,24})\s*:")


def parse_prompt_schedule(text: str) -> list[tuple[int, str]]:
    """`0: a forest, misty, 24: a city` → [(0, "a forest, misty"), (24, "a city")]. A text with no
    frame numbers is one prompt from frame 0. Commas inside a prompt are kept; only a comma
    followed by `N:` starts the next one. Raises ScheduleError."""
    if len(text) > MAX_SCHEDULE_CHARS:
        raise ScheduleError(f"a prompt schedule may be {MAX_SCHEDULE_CHARS} characters long", MAX_SCHEDULE_CHARS)
    matches = list(_PROMPT_KEY.finditer(text))
    if not matches:
        if not text.strip():
            raise ScheduleError("the prompt is empty", 0)
        return [(0, text.strip())]
    if text[: matches[0].start()].strip():
        raise ScheduleError("a prompt schedule starts with a frame number, like `0: a forest`", 0)
    for other in _OTHER_KEY.finditer(text):
        key = other.group(1)
        # `(fox:1.2)`, `[a:b:10]`, `<lora:x:1>` are prompt syntax, not keys
        if not (key.isascii() and key.isdigit()) and _bracket_depth(text, other.start(1)) == 0:
            raise ScheduleError(
                f"`{key}:` is not a frame number; each prompt starts with a whole frame number, like `24: a city`",
                other.start(1),
            )
    prompts: list[tuple[int, str]] = []
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        frame = int(match.group(1))
        end = following.start() if following else len(text)
        prompt = text[match.end() : end].strip()
        if not prompt:
            raise ScheduleError(f"frame {frame} has no prompt after its colon", match.end())
        if any(f == frame for f, _ in prompts):
            raise ScheduleError(f"frame {frame} has two prompts", match.start(1))
        prompts.append((frame, prompt))
    return sorted(prompts)


def _bracket_depth(text: str, position: int) -> int:
    """How many (, [ or < are open at `position`."""
    depth = 0
    for char in text[:position]:
        if char in "([<":
            depth += 1
        elif char in ")]>" and depth:
            depth -= 1
    return depth


def prompt_at(schedule: list[tuple[int, str]], frame: int) -> str:
    """The prompt in force at `frame`: the last one that started at or before it (the first one
    before its frame comes)."""
    current = schedule[0][1]
    for start, prompt in schedule:
        if start <= frame:
            current = prompt
    return current


# --- the expression evaluator -------------------------------------------------------------------


def evaluate(expression: str, *, t: float, max_f: float, position: int = 0) -> float:
    tree = _check_expression(expression, position)
    value = _value(tree.body, {"t": float(t), "max_f": float(max_f), **CONSTANTS}, expression, position)
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise ScheduleError(f"`{expression}` is {value} at frame {t:g}, not a usable number", position)
    return value


def _check_expression(expression: str, position: int) -> ast.Expression:
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ScheduleError(f"an expression may be {MAX_EXPRESSION_CHARS} characters long", position)
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as error:
        offset = max(0, (error.offset or 1) - 1)
        raise ScheduleError(f"`{expression}` is not a number or an expression of t", position + offset) from None
    _walk(tree.body, expression, position, depth=0)
    return tree


_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Mod: lambda a, b: a % b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Pow: pow,
}


def _walk(node: ast.AST, expression: str, position: int, depth: int) -> None:
    """Allow only what the evaluator knows; everything else is refused with its position."""
    where = position + getattr(node, "col_offset", 0)
    if depth > MAX_EXPRESSION_DEPTH:
        raise ScheduleError("the expression is nested too deeply", where)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return
    if isinstance(node, ast.Name):
        if node.id not in ("t", "max_f", *CONSTANTS):
            raise ScheduleError(f"`{node.id}` is not known here: use t (the frame), max_f, pi, e", where)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _walk(node.operand, expression, position, depth + 1)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        _walk(node.left, expression, position, depth + 1)
        return _walk(node.right, expression, position, depth + 1)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in FUNCTIONS:
            raise ScheduleError(f"`{node.func.id}` is not a function here: {', '.join(FUNCTIONS)}", where)
        for argument in node.args:
            _walk(argument, expression, position, depth + 1)
        return
    raise ScheduleError(f"`{ast.get_source_segment(expression, node) or expression}` is not allowed in an expression", where)


def _value(node: ast.AST, names: dict[str, float], expression: str, position: int) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, names, expression, position)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left, names, expression, position), _value(node.right, names, expression, position)
        if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > MAX_MAGNITUDE):
            raise ScheduleError(f"`{expression}`: a power that large is not allowed", position + node.col_offset)
        try:
            raw = _OPERATORS[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError, ValueError) as error:
            raise ScheduleError(f"`{expression}` cannot be computed ({error})", position + node.col_offset) from None
        if isinstance(raw, complex):  # a negative number to a fractional power
            raise ScheduleError(f"`{expression}` is not a real number at frame {names['t']:g}", position + node.col_offset)
        result = float(raw)
        if abs(result) > MAX_MAGNITUDE:
            raise ScheduleError(f"`{expression}` grows too large", position + node.col_offset)
        return result
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    arguments = [_value(argument, names, expression, position) for argument in node.args]
    try:
        return float(FUNCTIONS[node.func.id](*arguments))
    except (TypeError, ValueError, OverflowError) as error:
        raise ScheduleError(f"`{expression}`: {node.func.id}() {error}", position + node.col_offset) from None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _closing(text: str, opening: int) -> int:
    """The index of the parenthesis closing the one at `opening`."""
    depth = 0
    for index in range(opening, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ScheduleError("a parenthesis is not closed", opening)


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at
