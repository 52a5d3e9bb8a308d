"""Regional prompting: the layout and prompt syntax (torch-free), the blend masks, and in a running
job the main property, checked through a hook on the UNet: inside each region the noise
prediction the sampler gets at a step is that region's prompt's own prediction on the same
latents and timestep (recomputed here by running the UNet ourselves)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.errors import EngineUserError, JobCancelled
from generation.jobs import run_job
from generation.models.loader import ModelCache
from generation.prompts.encoder import encode_texts
from generation.prompts.region_layout import (
    Group,
    Layout,
    RegionPrompts,
    check_regions,
    parse_layout,
    split_regions,
)
from generation.prompts.regions import RegionalConditions, applied, region_weights
from generation.spec import GenerationSpec
from storage.blobs import LocalBlobStore

# --- layout syntax -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode", "groups"),
    [
        ("cols", "cols", None),
        ("Columns", "cols", None),
        ("rows", "rows", None),
        ("cols:1,2", "cols", ((1, (1, 2)),)),
        ("1,2", "cols", ((1, (1, 2)),)),  # Regional Prompter's default: columns
        (" 1 , 1.5 ", "cols", ((1, (1, 1.5)),)),
        ("rows:1,2", "rows", ((1, (1, 2)),)),
        ("1,2,1;2,1,1", "cols", ((1, (2, 1)), (2, (1, 1)))),
        ("1;1,1,1", "cols", ((1, (1,)), (1, (1, 1)))),  # a row with one number is one region
        ("1;2", "cols", ((1, (1,)), (2, (1,)))),
        ("rows:1,2,1;2,1,1", "rows", ((1, (2, 1)), (2, (1, 1)))),
        (".5,1", "cols", ((1, (0.5, 1)),)),
    ],
)
def test_layouts(text: str, mode: str, groups: Any) -> None:
    layout = parse_layout(text)
    assert layout.mode == mode
    if groups is None:
        assert layout.groups is None and layout.count is None
    else:
        assert layout.groups == tuple(Group(size, tuple(cells)) for size, cells in groups)
        assert parse_layout(layout.text) == layout  # the canonical spelling reads back


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("diagonal", "not a regions layout"),
        ("diag:1,2", "not a layout mode"),
        ("cols:", "give ratios after the colon"),
        ("1,0", "above 0"),
        ("1,-2", "not a ratio"),
        ("1,x", "`x` is not a ratio"),
        ("1e3,1", "`1e3` is not a ratio"),
        ("1,,2", "not a ratio"),
        ("1,2;", "empty part"),
        ("1,101", "at most 100"),
        ("1", "only one region"),
        ("cols:1", "only one region"),
        ("1,1,1,1,1,1,1,1,1", "at most 8"),
        ("1,1,1,1,1,1;1,1,1,1,1", "at most 8"),  # 5 + 4
        ("1,30", "under 5% of the width"),
        ("1,1,1;30,1,1", "under 5% of the height"),
        ("1" + ",1" * 150, "too long"),
    ],
)
def test_layout_errors_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_layout(text)
    assert says in str(error.value)


def test_boxes_tile_the_picture() -> None:
    assert parse_layout("1,3").boxes(64, 32) == [(0, 0, 16, 32), (16, 0, 64, 32)]
    assert parse_layout("rows:1,1").boxes() == [(0, 0, 1, 0.5), (0, 0.5, 1, 1)]
    grid = parse_layout("1,2,1;2,1,1").boxes(90, 60)
    assert grid == [(0, 0, 60, 20), (60, 0, 90, 20), (0, 20, 45, 60), (45, 20, 90, 60)]
    transposed = parse_layout("rows:1,2,1;2,1,1").boxes(60, 90)
    assert transposed == [(0, 0, 20, 60), (0, 60, 20, 90), (20, 0, 60, 45), (20, 45, 60, 90)]
    assert parse_layout("cols").resolved(4).boxes(4, 1) == [(i, 0, i + 1, 1) for i in range(4)]
    with pytest.raises(ValueError, match="has 2 regions but the prompt has 3"):
        parse_layout("1,1").resolved(3)


# --- prompt syntax -----------------------------------------------------------------------------


def test_split_regions() -> None:
    assert split_regions("a fox BREAK a bird") == RegionPrompts("", None, ["a fox", "a bird"])
    parts = split_regions("masterpiece ADDCOMM a meadow ADDBASE a fox BREAK a bird")
    assert parts == RegionPrompts("masterpiece", "a meadow", ["a fox", "a bird"])
    assert parts.region_prompts() == ["masterpiece, a fox", "masterpiece, a bird"]
    assert parts.base_prompt() == "masterpiece, a meadow"
    assert parts.plain() == "masterpiece, a meadow, a fox, a bird"
    assert split_regions("a meadow ADDBASE a fox BREAK a bird").region_prompts() == ["a fox", "a bird"]
    assert split_regions("style ADDCOMM a fox BREAK a bird").base is None
    assert split_regions("a fox ADDCOL a bird ADDROW a cat").regions == ["a fox", "a bird", "a cat"]
    assert split_regions("BREAKFAST BREAK xBREAK").regions == ["BREAKFAST", "xBREAK"]  # whole words only


def test_pipe_splits_only_at_the_top_level() -> None:
    parts = split_regions("a [fox|cat] | a {red|blue} bird | (x|y), a \\| b | [a:b:3]")
    assert parts.regions == ["a [fox|cat]", "a {red|blue} bird", "(x|y), a \\| b", "[a:b:3]"]
    assert split_regions("a (nested [x|y] z) | b").regions == ["a (nested [x|y] z)", "b"]


@pytest.mark.parametrize(
    "prompt", ["a BREAK b ADDBASE c", "a ADDBASE b ADDCOMM c BREAK d", "a ADDCOMM b ADDCOMM c BREAK d", "a ADDBASE b ADDBASE c"]
)
def test_keywords_out_of_order(prompt: str) -> None:
    with pytest.raises(ValueError, match="out of place"):
        split_regions(prompt)


def test_check_regions() -> None:
    assert check_regions("1,1", "a BREAK b") == []
    assert check_regions("cols", "a | b | c") == []
    assert check_regions(None, "a BREAK b") == []
    assert "has 2 regions but the prompt has 3" in check_regions("1,1", "a BREAK b BREAK c")[0]
    assert "only one" in check_regions("cols", "a fox")[0]
    assert "at most 8" in check_regions("rows", " BREAK ".join("abcdefghi"))[0]
    assert "needs a base prompt" in check_regions("cols", "a BREAK b", 0.3)[0]
    assert check_regions("cols", "m ADDBASE a BREAK b", 0.3) == []
    assert "only applies with regions" in check_regions(None, "a", 0.3)[0]
    assert "not a ratio" in check_regions("1,z", "a BREAK b")[0]
    assert "out of place" in check_regions("cols", "a BREAK b ADDCOMM c")[0]


# --- blend masks -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1,1", "1,2,1", "rows:1,3", "1,2,1;2,1,1", "rows:1,2;1,1,1"])
def test_weights_sum_to_one_and_feather_only_at_borders(text: str) -> None:
    layout = parse_layout(text)
    height, width, feather = 48, 64, 2.0
    weights = region_weights(layout, height, width, feather=feather)
    assert weights.shape == (layout.count, height, width)
    assert torch.allclose(weights.sum(0), torch.ones(height, width, dtype=weights.dtype))
    assert weights.min() >= 0
    for weight, (x0, y0, x1, y1) in zip(weights, layout.boxes(width, height), strict=True):
        ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        inside = (xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)
        # Distance to the nearest border shared with another region (the picture's edges don't count).
        far = torch.full((height, width), float("inf"), dtype=torch.float64)
        for border, coordinate, limit in ((x0, xs, width), (x1, xs, width), (y0, ys, height), (y1, ys, height)):
            if 0 < border < limit:
                far = torch.minimum(far, (coordinate - border).abs())
        assert torch.all(weight[inside & (far >= feather)] == 1)  # a core of its own
        assert torch.all(weight[~inside & (far >= feather)] == 0)  # nothing far outside
        band = weight[far < feather]
        assert band.numel() and torch.all((band > 0) & (band < 1) | (band == 0))  # blends within the band
    # The picture's edges are not feathered: the first region is whole in its corner.
    assert weights[0, 0, 0] == 1


# --- in a running job --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def job(**changes: Any) -> GenerationSpec:
    base: dict[str, Any] = dict(
        kind="txt2img",
        prompt="a red fox BREAK a blue bird",
        model="tiny",
        width=64,
        height=64,
        steps=3,
        cfg=7.0,
        sampler="Euler",
        seed=5,
        regions="cols",
    )
    return GenerationSpec(**{**base, **changes})


def unet_calls(unet: torch.nn.Module, run: Any) -> list[dict[str, Any]]:
    """Inputs and output of every UNet call while `run()` runs (a forward hook sees the output
    the pipeline gets, after the regional blend)."""
    calls: list[dict[str, Any]] = []

    def record(module, args, kwargs, output):  # type: ignore[no-untyped-def]
        named = dict(zip(("sample", "timestep"), args, strict=False)) | kwargs
        out = output[0] if isinstance(output, tuple) else output.sample
        calls.append({name: _clone(value) for name, value in named.items()} | {"out": out.clone()})

    handle = unet.register_forward_hook(record, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    assert "forward" not in vars(unet)  # restored: the class's own forward again
    return calls


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def predict(unet: torch.nn.Module, call: dict[str, Any], embeds: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
    """The UNet's own prediction on a recorded call's inputs, with other text embeddings."""
    arguments = {k: v for k, v in call.items() if k not in ("sample", "timestep", "out", "encoder_hidden_states", "return_dict")}
    if pooled is not None:
        arguments["added_cond_kwargs"] = {**arguments["added_cond_kwargs"], "text_embeds": pooled}
    with torch.inference_mode():
        return unet(call["sample"], call["timestep"], encoder_hidden_states=embeds, return_dict=False, **arguments)[0]


def check_blend(
    unet: torch.nn.Module,
    calls: list[dict[str, Any]],
    layout: Layout,
    per_step: list[list[Any]],  # per_step[step][region]: that region's Conditioning at that step
    *,
    n: int = 1,
    base: list[Any] | None = None,  # the base's Conditioning per step
    base_ratio: float = 0.0,
) -> None:
    """At every step: the negative half is the negative prompt's prediction; inside each region
    (feather band aside) the positive half is that region's prediction (mixed with the base's by
    base_ratio); everywhere it is the mask-weighted blend."""
    assert len(calls) == len(per_step)
    for step, call in enumerate(calls):
        out = call["out"]
        guided = out.shape[0] == 2 * n
        height, width = out.shape[-2:]

        def own(conditioning: Any) -> torch.Tensor:
            """The UNet's prediction for `conditioning` (as a plain pipeline would run it)."""
            embeds = conditioning.prompt_embeds.repeat(n, 1, 1)
            pooled = conditioning.pooled_prompt_embeds
            pooled = pooled.repeat(n, 1) if pooled is not None else None
            if guided:  # noqa: B023 - called at once, in this turn of the loop
                embeds = torch.cat([conditioning.negative_prompt_embeds.repeat(n, 1, 1), embeds])
                if pooled is not None:
                    pooled = torch.cat([conditioning.negative_pooled_prompt_embeds.repeat(n, 1), pooled])
            return predict(unet, call, embeds, pooled)  # noqa: B023 - called at once, in this turn of the loop

        base_eps = own(base[step])[-n:] if base is not None else None
        weights = region_weights(layout, height, width)
        blend = torch.zeros_like(out[-n:])
        for region, conditioning in enumerate(per_step[step]):
            eps = own(conditioning)
            if guided and region == 0:
                torch.testing.assert_close(out[:n], eps[:n], rtol=1e-4, atol=1e-5)  # the shared negative
            eps = eps[-n:]
            if base_eps is not None:
                eps = base_ratio * base_eps + (1 - base_ratio) * eps
            core = _core(layout, region, height, width)
            assert core.any()
            torch.testing.assert_close(out[-n:][..., core], eps[..., core], rtol=1e-4, atol=1e-5)
            blend += weights[region].to(out.dtype) * eps
        torch.testing.assert_close(out[-n:], blend, rtol=1e-4, atol=1e-5)


def _core(layout: Layout, region: int, height: int, width: int, feather: float = 1.0) -> torch.Tensor:
    """Latent pixels of `region` at least `feather` (1 latent pixel at 64 px) from its borders
    with other regions; worked out from the boxes, not from the masks under test."""
    x0, y0, x1, y1 = layout.boxes(width, height)[region]
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    core = (xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)
    sides = ((x0, xs, width, True), (x1, xs, width, False), (y0, ys, height, True), (y1, ys, height, False))
    for border, coordinate, limit, above in sides:
        if 0 < border < limit:
            core &= coordinate >= border + feather if above else coordinate <= border - feather
    return core


def encode(engine: Engine, texts: list[str], negative: str = "") -> list[Any]:
    return encode_texts(engine.models.get("tiny").txt2img, texts, negative)


def test_two_columns_each_region_gets_its_own_prediction(engine: Engine) -> None:
    spec = job(n=2, negative_prompt="blurry", steps=2)
    unet = engine.models.get("tiny").txt2img.unet
    calls = unet_calls(unet, lambda: run_job(engine, spec))
    assert [call["sample"].shape[0] for call in calls] == [4] * 2  # CFG batch of 2 x n: the pipeline is unchanged
    fox, bird = encode(engine, ["a red fox", "a blue bird"], "blurry")
    check_blend(unet, calls, parse_layout("1,1"), [[fox, bird]] * 2, n=2)


def test_grid_with_prompt_editing_in_a_region(engine: Engine) -> None:
    # A 2D layout: a top row (height 1) with two columns 2 : 1, a bottom row (height 1) whole.
    prompt = "a [red:green:1] fox BREAK a (blue:1.3) bird | a snowy field"
    spec = job(prompt=prompt, regions="1,2,1;1,1", steps=3)
    unet = engine.models.get("tiny").txt2img.unet
    calls = unet_calls(unet, lambda: run_job(engine, spec))
    red, green, bird, field = encode(engine, ["a red fox", "a green fox", "a (blue:1.3) bird", "a snowy field"])
    # A1111 switches `[red:green:1]` after step 1 (steps 0 and 1 red, step 2 green).
    check_blend(unet, calls, parse_layout("1,2,1;1,1"), [[red, bird, field], [red, bird, field], [green, bird, field]])


def test_rows_without_cfg(engine: Engine) -> None:
    spec = job(regions="rows", cfg=1.0, steps=2)
    unet = engine.models.get("tiny").txt2img.unet
    calls = unet_calls(unet, lambda: run_job(engine, spec))
    assert [call["sample"].shape[0] for call in calls] == [1, 1]  # no negative half
    fox, bird = encode(engine, ["a red fox", "a blue bird"])
    check_blend(unet, calls, parse_layout("rows:1,1"), [[fox, bird]] * 2)


def test_base_ratio_mixes_the_base_prompt(engine: Engine) -> None:
    prompt = "watercolor ADDCOMM a snowy field ADDBASE a red fox BREAK a blue bird"
    unet = engine.models.get("tiny").txt2img.unet
    fox, bird, field = encode(engine, ["watercolor, a red fox", "watercolor, a blue bird", "watercolor, a snowy field"])
    for ratio, expected in ((0.3, 0.3), (None, 0.2)):  # 0.2 by default with ADDBASE
        calls = unet_calls(unet, lambda ratio=ratio: run_job(engine, job(prompt=prompt, base_ratio=ratio, steps=2)))
        check_blend(unet, calls, parse_layout("1,1"), [[fox, bird]] * 2, base=[field] * 2, base_ratio=expected)


def test_img2img_and_inpaint_keep_working(engine: Engine) -> None:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    key = engine.blobs.put(buffer.getvalue(), "png")
    unet = engine.models.get("tiny").txt2img.unet
    fox, bird = encode(engine, ["a red fox", "a blue bird"])
    spec = job(kind="img2img", init_image=key, strength=0.7, steps=4, n=2)  # int(4 * 0.7) = 2 steps run
    calls = unet_calls(unet, lambda: run_job(engine, spec))
    check_blend(unet, calls, parse_layout("1,1"), [[fox, bird]] * 2, n=2)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 56, 56))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    spec = job(kind="inpaint", init_image=key, mask=engine.blobs.put(buffer.getvalue(), "png"), strength=1.0, steps=2)
    calls = unet_calls(unet, lambda: run_job(engine, spec))
    check_blend(unet, calls, parse_layout("1,1"), [[fox, bird]] * 2)


def test_regions_change_the_picture(engine: Engine) -> None:
    def pixels(spec: GenerationSpec) -> np.ndarray:
        [image] = run_job(engine, spec)
        return np.asarray(Image.open(io.BytesIO(image.png))).astype(int)

    regional = pixels(job())
    assert np.abs(regional - pixels(job(regions=None))).max() > 10  # BREAK as A1111's chunk break
    assert np.abs(regional - pixels(job(regions=None, prompt="a red fox"))).max() > 10
    assert np.abs(regional - pixels(job(regions=None, prompt="a red fox, a blue bird"))).max() > 10  # not one prompt
    assert np.array_equal(regional, pixels(job()))  # and reproducible


def test_forward_is_restored_after_an_error(engine: Engine) -> None:
    unet = engine.models.get("tiny").txt2img.unet
    with pytest.raises(JobCancelled):
        run_job(engine, job(), should_stop=lambda: True)
    assert "forward" not in vars(unet)
    with pytest.raises(EngineUserError, match="has 2 regions but the prompt has 3"):
        run_job(engine, job(regions="1,1", prompt="a BREAK b BREAK c"))
    assert "forward" not in vars(unet)
    # A plain job afterwards is plain: one UNet call per step with the pipeline's own conditioning.
    plain = unet_calls(unet, lambda: run_job(engine, job(regions=None, prompt="a red fox", steps=2)))
    [fox] = encode(engine, ["a red fox"])
    for call in plain:
        torch.testing.assert_close(call["encoder_hidden_states"][1:], fox.prompt_embeds)
        torch.testing.assert_close(call["out"], predict(unet, call, call["encoder_hidden_states"]))


# --- SDXL: the pooled embedding is per region too ----------------------------------------------

from tests.test_prompts import tiny_xl  # noqa: E402,F401  (the fixture)


def test_sdxl_regions(tiny_xl) -> None:  # type: ignore[no-untyped-def]  # noqa: F811 - the fixture
    spec = job(model="xl", steps=2)
    conditions = RegionalConditions.build(tiny_xl, spec, 2, images=1)
    tiny_xl.set_progress_bar_config(disable=True)

    def run() -> None:
        def switch(pipeline, step, timestep, tensors):  # type: ignore[no-untyped-def]
            return conditions.switch(pipeline, step + 1)

        with applied(tiny_xl, conditions), torch.inference_mode():
            tiny_xl(
                **conditions.first().pipeline_arguments(),
                num_inference_steps=2,
                guidance_scale=5.0,
                height=64,
                width=64,
                generator=torch.Generator().manual_seed(1),
                output_type="latent",
                callback_on_step_end=switch,
            )

    calls = unet_calls(tiny_xl.unet, run)
    fox, bird = encode_texts(tiny_xl, ["a red fox", "a blue bird"], "")
    assert not torch.equal(fox.pooled_prompt_embeds, bird.pooled_prompt_embeds)
    check_blend(tiny_xl.unet, calls, parse_layout("1,1"), [[fox, bird]] * 2)
