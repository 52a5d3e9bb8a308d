"""/compare (A1111's X/Y/Z plot): which of a comparison's cells share a pipeline call, and the
labelled grid of its cells.

A comparison is one job whose spec holds its cells, each a whole one-picture job made when the
comparison was queued (commands.explore.compare). `render_job` draws each cell as that job would
be drawn alone (cells whose batch keys agree share a call, as the worker batches jobs: within
float rounding of alone, see docs/rules.md), then `grid` lays them out: x across, y down, one
block per z value side by side, each column, row and block headed with its axis title and value
(`Steps: 20`), as A1111 labels its plot. The cells are the job's outputs (U-buttons, PNGs with
their own parameters); the grid is the result's `grid` (storage.results.JobResult).

The labels are drawn with Pillow's bundled font (`ImageFont.load_default(size=...)`): nothing to
download, the same on every machine with the same Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from generation.parameters import infotext, settings_text
from generation.spec import CompareSpec, GenerationSpec

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
GAP = 4  # pixels between cells, and around labels
BLOCK_GAP = 24  # between the blocks of a z axis


def groups(plot: CompareSpec) -> list[list[int]]:
    """The cells in the order they are drawn: runs of up to `plot.batch` cells with one non-empty
    batch key share a pipeline call; every other cell is drawn alone. Cell order is kept within
    a group, and groups start in cell order."""
    found: list[list[int]] = []
    open_by_key: dict[str, list[int]] = {}
    for index, cell in enumerate(plot.cells):
        key = cell.batch_key() if plot.batch > 1 else ""
        if not key:
            found.append([index])
            continue
        group = open_by_key.get(key)
        if group is None or len(group) >= plot.batch:
            group = []
            open_by_key[key] = group
            found.append(group)
        group.append(index)
    return found


def cell_steps(cell: GenerationSpec) -> int:
    """The denoising steps a cell runs, for the comparison's progress (img2img runs a share)."""
    if cell.kind == "img2img" and cell.strength is not None:
        return max(1, int(cell.steps * cell.strength))
    return cell.steps


def shape(plot: CompareSpec) -> tuple[int, int, int]:
    """Columns (x values), rows (y values) and blocks (z values)."""
    sizes = [len(axis.values) for axis in plot.axes] + [1, 1]
    return sizes[0], sizes[1], sizes[2]


def grid_text(plot: CompareSpec, job_id: int | None) -> str:
    """The grid PNG's `parameters`, as A1111 writes its plot's: the first cell's, then the axes
    (`Script: X/Y/Z plot, X Type: Steps, X Values: "10, 20"`)."""
    first = plot.cells[0]
    fields: list[tuple[str, object]] = [("Script", "X/Y/Z plot")]
    for letter, axis in zip("XYZ", plot.axes, strict=False):
        fields += [(f"{letter} Type", axis.title), (f"{letter} Values", ", ".join(axis.values))]
    return f"{infotext(first, first.seed, job_id=job_id)}, {settings_text(fields)}"


def grid(plot: CompareSpec, pictures: Sequence[Image.Image]) -> Image.Image:
    """The labelled grid of the cells' `pictures` (in cell order)."""
    return place(plot, pictures)[0]


def place(plot: CompareSpec, pictures: Sequence[Image.Image]) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """The labelled grid, and where each cell lies in it: (left, top, right, bottom), in cell order."""
    columns, rows, blocks = shape(plot)
    cell_w = max(picture.width for picture in pictures)
    cell_h = max(picture.height for picture in pictures)
    size = max(10, (cell_w + cell_h) // 25)
    font = ImageFont.load_default(size=size)
    line = int(size * 1.3)
    x_axis = plot.axes[0]
    y_axis = plot.axes[1] if len(plot.axes) > 1 else None
    z_axis = plot.axes[2] if len(plot.axes) > 2 else None
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    column_labels = [_wrap(measure, f"{x_axis.title}: {value}", font, cell_w) for value in x_axis.values]
    header = GAP + line * max(len(lines) for lines in column_labels) + GAP
    side = 0  # the row labels' margin
    row_labels: list[list[str]] = []
    if y_axis is not None:
        side = max(cell_w * 3 // 4, 4 * size)
        row_labels = [_wrap(measure, f"{y_axis.title}: {value}", font, side - 2 * GAP) for value in y_axis.values]
    block_w = side + columns * cell_w + (columns - 1) * GAP
    block_labels: list[list[str]] = []
    top = 0  # the z label's band
    if z_axis is not None:
        block_labels = [_wrap(measure, f"{z_axis.title}: {value}", font, block_w) for value in z_axis.values]
        top = GAP + line * max(len(lines) for lines in block_labels) + GAP
    canvas = Image.new("RGB", (blocks * block_w + (blocks - 1) * BLOCK_GAP, top + header + rows * cell_h + (rows - 1) * GAP), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    boxes: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * len(pictures)
    for z in range(blocks):
        left = z * (block_w + BLOCK_GAP)
        if block_labels:
            _text(draw, block_labels[z], font, line, left, GAP, block_w)
        for x in range(columns):
            _text(draw, column_labels[x], font, line, left + side + x * (cell_w + GAP), top + GAP, cell_w)
        for y in range(rows):
            y0 = top + header + y * (cell_h + GAP)
            if row_labels:
                lines = row_labels[y]
                _text(draw, lines, font, line, left + GAP, y0 + max(0, cell_h - line * len(lines)) // 2, side - 2 * GAP)
            for x in range(columns):
                index = x + columns * (y + rows * z)
                picture = pictures[index]
                at = (left + side + x * (cell_w + GAP) + (cell_w - picture.width) // 2, y0 + (cell_h - picture.height) // 2)
                canvas.paste(picture.convert("RGB"), at)
                boxes[index] = (at[0], at[1], at[0] + picture.width, at[1] + picture.height)
    return canvas, boxes


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """`text` in lines no wider than `width` (a word longer than that is cut), at most 4 lines
    (the last ending in … when more was there)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
        while draw.textlength(current, font=font) > width and len(current) > 1:
            cut = len(current) - 1
            while cut > 1 and draw.textlength(current[:cut], font=font) > width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    lines.append(current)
    if len(lines) > 4:
        lines = [*lines[:3], lines[3][:-1] + "…"]
    return lines


def _text(
    draw: ImageDraw.ImageDraw,
    lines: list[str],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    line: int,
    left: int,
    top: int,
    width: int,
) -> None:
    """`lines` centred in a column `width` wide from (`left`, `top`)."""
    for number, text in enumerate(lines):
        shift = max(0, (width - int(draw.textlength(text, font=font))) // 2)
        draw.text((left + shift, top + number * line), text, fill=INK, font=font)
