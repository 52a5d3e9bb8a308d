"""Regional prompting, the torch-free half: the layout (`--regions`) and how the prompt is split
into regions. The command layer validates with `check_regions` before queueing; the engine
(`generation.prompts.regions`) draws with it. Syntax and semantics follow A1111's Regional Prompter
extension (hako-mikan/sd-webui-regional-prompter), so prompts written for it work here.

Layout (`spec.regions`), case and spaces ignored:

    cols                 equal columns, as many as the prompt has regions (also `columns`)
    rows                 equal rows, as many as the prompt has regions
    cols:1,2             columns with widths in the ratio 1 : 2 (a bare `1,2` means the same:
                         Regional Prompter's default "Columns" mode)
    rows:1,2             rows with heights in the ratio 1 : 2
    1,2,1;2,1,1          a grid: `;` separates rows; the first number of each row is its height
                         ratio, the rest are the widths of the columns in that row (a row with one
                         number is one full-width region). Here: a top row of height 1 with two
                         columns 2 : 1 and a bottom row of height 2 with columns 1 : 1.
    rows:1,2,1;2,1,1     the same transposed: `;` separates columns; the first number of each is
                         its width ratio, the rest are the heights of the rows in that column.

Ratios are positive numbers (`1`, `1.5`, `.5`), at most 100. At most 8 regions and at least 2;
every region at least 5% of the picture's width and of its height. Regions are numbered row by
row, left to right (for `rows:` grids, column by column, top to bottom), and the prompt's
regions fill them in that order.

Prompt (Regional Prompter's keywords, upper case as written):

    common ADDCOMM base ADDBASE region 1 BREAK region 2 BREAK ...

- `ADDCOMM` (optional, first): the text before it is added (", ") to the front of every region's
  prompt and of the base prompt.
- `ADDBASE` (optional): the text before it is the base prompt, drawn over the whole picture and
  mixed into every region by the base ratio (default 0.2 when ADDBASE is present; without it
  there is no base pass).
- `BREAK` separates regions. So does `|`, at the top level only: inside (), [] or {} it keeps its
  usual meaning (`[cat|dog]` is A1111's alternation, `{a|b}` a wildcard choice), and `\\|` is a
  literal `|`. `ADDCOL` and `ADDROW` (Regional Prompter's own separators) are read as `BREAK`.
- With regions active, BREAK means "next region", not A1111's "start a new 75-token chunk".
  (Each region's prompt is still chunked, so long region prompts work.)
- The negative prompt is shared by all regions (a BREAK in it keeps A1111's meaning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MAX_REGIONS = 8
MAX_RATIO = 100.0
MIN_FRACTION = 0.05  # of the width and of the height, per region
MAX_LAYOUT_LENGTH = 200
DEFAULT_BASE_RATIO = 0.2

HELP = (
    "Write the layout as `cols`, `rows`, ratios like `1,2` (columns) or `rows:1,2`, or a grid like "
    "`1,2,1;2,1,1` (`;` separates rows; the first number of each row is its height, the rest its column widths)."
)

Mode = Literal["cols", "rows"]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1

_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)\Z")
_KEYWORD = re.compile(r"\b(ADDCOMM|ADDBASE|BREAK|ADDCOL|ADDROW)\b")


@dataclass(frozen=True)
class Group:
    """One row of a `cols` layout (one column of a `rows` layout): its size across the other axis
    and the sizes of its cells along it."""

    size: float
    cells: tuple[float, ...]


@dataclass(frozen=True)
class Layout:
    mode: Mode
    # None: equal cells along `mode`, as many as the prompt has regions (`cols`, `rows`).
    groups: tuple[Group, ...] | None

    @property
    def count(self) -> int | None:
        """The number of regions, or None when the prompt decides (`cols`, `rows`)."""
        return None if self.groups is None else sum(len(group.cells) for group in self.groups)

    @property
    def text(self) -> str:
        """A canonical spelling (for PNG parameters): `cols`, `rows:1,2`, `1,2,1;2,1,1`."""
        if self.groups is None:
            return self.mode
        if len(self.groups) == 1:
            cells = ",".join(_number(cell) for cell in self.groups[0].cells)
            return f"{self.mode}:{cells}" if self.mode == "rows" else cells
        grid = ";".join(",".join(_number(x) for x in (group.size, *group.cells)) for group in self.groups)
        return f"rows:{grid}" if self.mode == "rows" else grid

    def resolved(self, count: int) -> Layout:
        """This layout with `count` regions: fills in `cols` / `rows`; others must match."""
        if self.groups is not None:
            if count != self.count:
                raise ValueError(_count_message(self, count))
            return self
        return Layout(self.mode, (Group(1.0, (1.0,) * count),))

    def boxes(self, width: float = 1.0, height: float = 1.0) -> list[Box]:
        """Each region's (x0, y0, x1, y1), in the units of `width` and `height` (fractions of the
        picture by default), in region order."""
        if self.groups is None:
            raise ValueError("the layout has no regions yet: call resolved(count) first")
        boxes: list[Box] = []
        for (a0, a1), group in zip(_spans([g.size for g in self.groups]), self.groups, strict=True):
            for b0, b1 in _spans(list(group.cells)):
                if self.mode == "cols":  # groups are rows (a = y), cells are columns (b = x)
                    boxes.append((b0 * width, a0 * height, b1 * width, a1 * height))
                else:
                    boxes.append((a0 * width, b0 * height, a1 * width, b1 * height))
        return boxes


@dataclass(frozen=True)
class RegionPrompts:
    common: str  # before ADDCOMM ("" if none)
    base: str | None  # before ADDBASE (None if no ADDBASE)
    regions: list[str]  # the regions' own text, in order

    def region_prompts(self) -> list[str]:
        """Each region's full prompt: the common text, ", ", the region's text."""
        return [_join(self.common, region) for region in self.regions]

    def base_prompt(self) -> str | None:
        return None if self.base is None else _join(self.common, self.base)

    def plain(self) -> str:
        """One prompt for the whole picture (where regions cannot apply): all parts, joined."""
        parts = [self.common, self.base or "", *self.regions]
        return ", ".join(part for part in parts if part)


def parse_layout(text: str) -> Layout:
    """The layout written by a user. Raises ValueError with a message for the user."""
    raw = text
    text = re.sub(r"\s+", "", text).lower()
    if not text:
        raise ValueError(f"the regions layout is empty. {HELP}")
    if len(text) > MAX_LAYOUT_LENGTH:
        raise ValueError(f"the regions layout is too long (at most {MAX_LAYOUT_LENGTH} characters). {HELP}")
    mode: Mode = "cols"
    word, colon, rest = text.partition(":")
    if word in ("cols", "col", "columns", "rows", "row"):
        mode = "rows" if word.startswith("row") else "cols"
        if not colon:
            return Layout(mode, None)
        if not rest:
            raise ValueError(f"`{raw.strip()}`: give ratios after the colon, like `{mode}:1,2`, or just `{mode}`.")
        text = rest
    elif colon:
        raise ValueError(f"`{raw.strip()}`: `{word}` is not a layout mode; write `cols:...` or `rows:...`. {HELP}")
    elif not re.search(r"\d", text):
        raise ValueError(f"`{raw.strip()}` is not a regions layout. {HELP}")
    if ";" in text:
        groups = []
        for part in text.split(";"):
            numbers = _ratios(part, raw)
            groups.append(Group(numbers[0], tuple(numbers[1:]) or (1.0,)))
    else:
        groups = [Group(1.0, tuple(_ratios(text, raw)))]
    layout = Layout(mode, tuple(groups))
    count = layout.count or 0
    if count > MAX_REGIONS:
        raise ValueError(f"`{raw.strip()}` makes {count} regions; at most {MAX_REGIONS} are allowed.")
    if count < 2:
        raise ValueError(f"`{raw.strip()}` makes only one region; give at least two, like `1,1` or `rows:1,1`.")
    across, along = ("height", "width") if mode == "cols" else ("width", "height")
    if _too_small([g.size for g in groups]):
        unit = "row" if mode == "cols" else "column"
        raise ValueError(f"`{raw.strip()}`: a {unit} would be under 5% of the {across}; make the ratios closer.")
    if any(_too_small(list(g.cells)) for g in groups):
        raise ValueError(f"`{raw.strip()}`: a region would be under 5% of the {along}; make the ratios closer.")
    return layout


def split_regions(prompt: str) -> RegionPrompts:
    """The prompt's common part, base part and regions. Raises ValueError (for the user) when the
    keywords are out of order."""
    tokens = _split_keywords(prompt)  # [text, keyword, text, keyword, ..., text]
    keywords = tokens[1::2]
    texts = [text.strip() for text in tokens[0::2]]
    common, base = "", None
    position = 0
    if keywords and keywords[0] == "ADDCOMM":
        common = texts[0]
        position = 1
    if len(keywords) > position and keywords[position] == "ADDBASE":
        base = texts[position]
        position += 1
    misplaced = [k for k in keywords[position:] if k in ("ADDCOMM", "ADDBASE")]
    if misplaced:
        raise ValueError(
            f"`{misplaced[0]}` is out of place: write `common ADDCOMM base ADDBASE region 1 BREAK region 2`, "
            "each of ADDCOMM and ADDBASE at most once and in that order, before the first BREAK."
        )
    return RegionPrompts(common, base, texts[position:])


def check_regions(layout_text: str | None, prompt: str, base_ratio: float | None = None) -> list[str]:
    """Problems with a regional job, as messages for the user; empty when it can run."""
    if layout_text is None:
        if base_ratio is not None:
            return ["a base ratio only applies with regions (`--regions`)."]
        return []
    try:
        layout = parse_layout(layout_text)
        parts = split_regions(prompt)
    except ValueError as error:
        return [str(error)]
    problems = []
    count = len(parts.regions)
    if layout.count is None and count < 2:
        problems.append(
            f"`--regions {layout.text}` splits the picture into as many {'columns' if layout.mode == 'cols' else 'rows'} "
            "as the prompt has regions, but it has only one: separate the regions' prompts with BREAK, "
            "like `a red fox BREAK a blue bird`."
        )
    elif layout.count is None and count > MAX_REGIONS:
        problems.append(f"the prompt has {count} regions; at most {MAX_REGIONS} are allowed.")
    elif layout.count is not None and count != layout.count:
        problems.append(_count_message(layout, count))
    if base_ratio is not None and parts.base is None:
        problems.append("a base ratio needs a base prompt: write `base prompt ADDBASE region 1 BREAK region 2`.")
    return problems


def _regions_text(count: int) -> str:
    return f"{count} region{'s' if count != 1 else ''}"


# --- helpers ---------------------------------------------------------------------------------


def _count_message(layout: Layout, count: int) -> str:
    return (
        f"the layout `{layout.text}` has {_regions_text(layout.count or 0)} but the prompt has {count}: "
        f"give one prompt per region, separated by BREAK (`a red fox BREAK a blue bird`), or change the layout."
    )


def _ratios(part: str, raw: str) -> list[float]:
    if not part:
        raise ValueError(f"`{raw.strip()}` has an empty part (two separators in a row?). {HELP}")
    numbers = []
    for item in part.split(","):
        if not _NUMBER.match(item):
            shown = item or "(nothing)"
            raise ValueError(f"`{raw.strip()}`: `{shown}` is not a ratio; ratios are positive numbers like 1 or 1.5. {HELP}")
        value = float(item)
        if not 0 < value <= MAX_RATIO:
            raise ValueError(f"`{raw.strip()}`: ratios must be above 0 and at most {MAX_RATIO:g} (got `{item}`).")
        numbers.append(value)
    return numbers


def _too_small(sizes: list[float]) -> bool:
    total = sum(sizes)
    return any(size / total < MIN_FRACTION - 1e-9 for size in sizes)


def _spans(sizes: list[float]) -> list[tuple[float, float]]:
    total, start, spans = sum(sizes), 0.0, []
    for i, size in enumerate(sizes):
        end = 1.0 if i == len(sizes) - 1 else start + size / total
        spans.append((start, end))
        start = end
    return spans


def _number(value: float) -> str:
    return f"{value:g}"


def _join(common: str, text: str) -> str:
    return f"{common}, {text}" if common and text else common or text


def _split_keywords(prompt: str) -> list[str]:
    """[text, keyword, text, ...]: the keywords anywhere, and `|` at the top level (outside
    (), [], {}; not escaped) as BREAK."""
    out: list[str] = []
    current: list[str] = []
    depth = 0
    i = 0
    while i < len(prompt):
        char = prompt[i]
        if char == "\\" and i + 1 < len(prompt):
            current.append(prompt[i : i + 2])
            i += 2
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == "|" and depth == 0:
            out += ["".join(current), "BREAK"]
            current = []
            i += 1
            continue
        match = _KEYWORD.match(prompt, i) if char in "AB" and (i == 0 or not _word(prompt[i - 1])) else None
        if match:
            keyword = match.group(1)
            out += ["".join(current), "BREAK" if keyword in ("ADDCOL", "ADDROW") else keyword]
            current = []
            i = match.end()
            continue
        current.append(char)
        i += 1
    out.append("".join(current))
    return out


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"
