"""/compare (A1111's X/Y/Z plot): a 2×3 comparison returns a 2×3 labelled grid whose cells are
the pixels of the same jobs queued alone with /imagine; cells that can share a pipeline call do,
within float rounding of alone; U-buttons give each cell and its edits; every bad axis is
answered before anything is queued; and the Discord slash command comes from the declaration."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from commands.frame.types import Reply
from config import Settings
from generation.jobs import compare
from generation.spec import CompareAxis, CompareSpec, GenerationSpec
from tests.fakes.discord import FakeDiscord
from tests.test_discord import answer_to, dc_settings, discord_bot, seen, server  # noqa: F401 - fixtures
from tests.test_service import Bot


def rows(bot: Bot) -> list[tuple[int, str, dict[str, Any], dict[str, Any] | None]]:
    with sqlite3.connect(bot.core.ctx.settings.data_dir / "sdbot.db") as db:
        return [
            (row[0], row[1], json.loads(row[2]), json.loads(row[3]) if row[3] else None)
            for row in db.execute("select id, kind, params, result from jobs order by id")
        ]


def pixels(path_or_png: Path | bytes | Image.Image) -> np.ndarray:
    if isinstance(path_or_png, Path):
        picture = Image.open(path_or_png)
    elif isinstance(path_or_png, bytes):
        picture = Image.open(io.BytesIO(path_or_png))
    else:
        picture = path_or_png
    return np.asarray(picture.convert("RGB")).astype(int)


async def drawn(bot: Bot, text: str) -> tuple[str, Reply]:
    """The result of `text` once drawn, and the id of its message."""
    [(_, status)] = await bot.send(text)
    assert status.kind == "status", status.text
    [(message_id, item)] = await bot.finish()
    return message_id, item.reply


def cells_in(grid: Reply, spec: GenerationSpec) -> list[np.ndarray]:
    """The cells cut back out of the delivered grid, where `compare.place` lays them."""
    plot = spec.compare
    assert plot is not None
    sizes = [Image.new("RGB", (cell.width, cell.height)) for cell in plot.cells]
    layout, boxes = compare.place(plot, sizes)
    picture = Image.open(grid.images[0].path)
    assert picture.size == layout.size
    return [pixels(picture.crop(box)) for box in boxes]


async def test_a_2x3_comparison_is_a_labelled_grid_of_the_jobs_drawn_alone(bot: Bot) -> None:
    grid_id, grid = await drawn(bot, "/compare a red fox --x steps=2,3 --y cfg=3,5,7 --seed 11 --size 64x64 --sampler euler_a")
    assert grid.kind == "result" and len(grid.images) == 1
    assert "2×3 cells · Steps: 2, 3 · CFG: 3, 5, 7" in grid.text
    assert [action.label for action in grid.actions] == ["U1", "U2", "U3", "U4", "U5", "U6"]
    assert {action.row for action in grid.actions} == {0, 1}  # five a row: Discord's rows take five
    [(job_id, kind, params, result)] = rows(bot)
    spec = GenerationSpec.model_validate(params)
    assert kind == "compare" and spec.compare is not None and len(spec.compare.cells) == 6
    assert result is not None and result["grid"]["blob"] in str(grid.images[0].path)
    cut = cells_in(grid, spec)

    # The labels: ink in the column headers and in the row margin, the cells' pictures in place
    picture = pixels(grid.images[0].path)
    first = compare.place(spec.compare, [Image.new("RGB", (64, 64))] * 6)[1][0]
    assert (picture[: first[1]] < 128).any(), "no column labels"
    assert (picture[first[1] :, : first[0]] < 128).any(), "no row labels"
    parameters = Image.open(grid.images[0].path).text["parameters"]  # type: ignore[attr-defined]
    assert "Script: X/Y/Z plot, X Type: Steps, X Values: " in parameters

    # Each cell: the same job queued alone (x fastest: steps vary across, cfg down)
    for index, (cfg, steps) in enumerate((cfg, steps) for cfg in (3, 5, 7) for steps in (2, 3)):
        _, alone = await drawn(bot, f"/imagine a red fox --steps {steps} --cfg {cfg} --seed 11 --size 64x64 --sampler euler_a")
        assert np.array_equal(cut[index], pixels(alone.images[0].path)), index
    assert [row[1] for row in rows(bot)] == ["compare"] + ["txt2img"] * 6

    # U3: the third cell alone, its own job's seed and settings, with the edits under it
    [(single_id, single)] = await bot.press(grid_id, "U3")
    assert single.kind == "single" and "Cell 3 of job" in single.text and "CFG 5" in single.text and "2 steps" in single.text
    assert np.array_equal(pixels(single.images[0].path), cut[2])
    [(_, varied)] = await bot.press(single_id, "Vary (Subtle)")
    assert varied.kind == "status"
    base = GenerationSpec.model_validate(rows(bot)[-1][2])
    assert base.kind == "img2img" and base.cfg == 5 and base.prompt == "a red fox"


async def test_cells_with_one_batch_key_share_a_call_within_rounding_of_alone(bot: Bot) -> None:
    _, grid = await drawn(bot, "/compare a fox in the snow --x seed=1,2,3 --y prompt=fox,owl --size 64x64 --steps 3")
    [(_, _, params, _)] = rows(bot)
    spec = GenerationSpec.model_validate(params)
    assert spec.compare is not None and spec.compare.batch == 4
    assert compare.groups(spec.compare) == [[0, 1, 2, 3], [4, 5]]  # one key: the default batch of 4, then the rest
    cut = cells_in(grid, spec)
    for index, (prompt, seed) in enumerate((p, s) for p in ("fox", "owl") for s in (1, 2, 3)):
        _, alone = await drawn(bot, f"/imagine a {prompt} in the snow --seed {seed} --size 64x64 --steps 3")
        assert np.abs(cut[index] - pixels(alone.images[0].path)).max() <= 2, index  # docs/rules.md: a batch within 2/255


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/compare a fox", "at least one axis"),
        ("/compare a fox --x foo=1,2", "NAME one of steps"),
        ("/compare a fox --x steps", "`--x` is `NAME=values`"),
        ("/compare a fox --x steps=", "`--x steps` needs values"),
        ("/compare a fox --x steps=2,500", "`--x steps 500` is out of bounds"),
        ("/compare a fox --x cfg=3,99", "`--x cfg 99` is out of bounds"),
        ("/compare a fox --x sampler=euler_a,nope", "Unknown sampler"),
        ("/compare a fox --x model=tiny,nope", "Unknown model `nope`"),
        ("/compare a fox --x seed=1,-5", "`--x seed -5` is out of bounds"),
        ("/compare a fox --x strength=0.3,0.6", "needs an image"),
        ("/compare a fox --x lora=foxy", "lora=NAME:W1,W2"),
        ("/compare a fox --x lora=foxy:0,9", "`--x lora 9` is out of bounds"),
        ("/compare a fox --x lora=foxy:0,1", "foxy"),  # no such LoRA of yours
        ("/compare a fox --x prompt=cat,dog", "`cat` is not in the prompt"),
        ("/compare a fox --x steps=2,3 --steps 4", "both set steps"),
        ("/compare a fox --x steps=2,3 --y steps=4,5", "Two axes both change steps"),
        ("/compare a fox --x steps=2", "at least two cells"),
        ("/compare a fox --x seed=1,2,3,4,5 --y cfg=1,2,3,4", "20 cells"),  # SDBOT_MAX_COMPARE_CELLS: 16
        ("/compare a fox --x steps=2,3 --n 2", "--n"),
        ("/compare a fox --x steps=2,3 --chaos 5", "--chaos"),
    ],
)
async def test_bad_axes_are_answered_before_anything_is_queued(bot: Bot, text: str, says: str) -> None:
    [(_, reply)] = await bot.send(text)
    assert reply.kind == "error" and says in reply.text, reply.text
    assert rows(bot) == []


def test_the_grid_lays_x_across_y_down_and_z_side_by_side() -> None:
    base = GenerationSpec(kind="txt2img", prompt="a fox", model="tiny", width=32, height=48, steps=2, cfg=7, sampler="Euler a", seed=1)
    axes = (
        CompareAxis(name="steps", title="Steps", values=("2", "3")),
        CompareAxis(name="cfg", title="CFG", values=("3", "5", "7")),
        CompareAxis(name="seed", title="Seed", values=("1", "2")),
    )
    plot = CompareSpec(axes=axes, cells=tuple(base.evolve(seed=i) for i in range(12)))
    pictures = [Image.new("RGB", (32, 48), (i * 20, 255 - i * 20, 7)) for i in range(12)]
    canvas, boxes = compare.place(plot, pictures)
    for index, box in enumerate(boxes):
        assert np.array_equal(pixels(canvas.crop(box)), pixels(pictures[index]))
    assert boxes[1][0] > boxes[0][0] and boxes[1][1] == boxes[0][1]  # x across
    assert boxes[2][1] > boxes[0][1] and boxes[2][0] == boxes[0][0]  # y down
    assert boxes[6][0] > boxes[5][0] and boxes[6][1] == boxes[0][1]  # z: the next block, to the right
    with pytest.raises(ValueError):
        CompareSpec(axes=axes, cells=tuple(base for _ in range(11)))  # one cell per combination


async def test_compare_in_discord_is_a_slash_command_with_its_axes(dc_settings: Settings, server: FakeDiscord) -> None:  # noqa: F811
    async with discord_bot(dc_settings, server):
        [command] = [c for c in server.commands["global"] if c["name"] == "compare"]
        assert [o["name"] for o in command["options"]][:5] == ["prompt", "image", "x", "y", "z"]
        asked = server.slash("compare", {"prompt": "a fox", "x": "steps=1,2", "size": "64x64"})
        result = await seen(dc_settings, await server.await_for(answer_to(asked, files=True)))
        assert "2 cells · Steps: 1, 2" in result.content and result.labels()[:2] == ["U1", "U2"]
        [grid] = result.files.values()
        assert Image.open(io.BytesIO(grid)).size[0] > 2 * 64  # the labelled grid, not a cell
        single = await server.await_for(answer_to(server.press(result, "U2"), files=True))
        assert "Cell 2 of job" in single.content and "2 steps" in single.content
