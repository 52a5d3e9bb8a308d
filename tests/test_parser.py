"""The text syntax and its checks: every bad input gets a clear message naming the fix."""

from __future__ import annotations

import pytest

from commands.frame.errors import UserError
from commands.frame.parser import CommandText, parse_flags, split_command
from commands.jobs.options import IMAGINE_FLAGS, InitImage, build_spec, fit_size, read_options
from config import ModelEntry, Settings
from generation.models.samplers import SAMPLERS, find_sampler, normalize


@pytest.fixture
def s() -> Settings:
    return Settings(_env_file=None, model="tiny", models={"real": ModelEntry(source="org/sd15-real")}, data_dir="/tmp/unused")


def read(text: str, s: Settings):  # type: ignore[no-untyped-def]
    command = split_command(text)
    flags = parse_flags(command.args, IMAGINE_FLAGS)
    return read_options(flags.values, s, s.registry(), written=flags.written, prompt=flags.text, problems=flags.problems)


def problems(text: str, s: Settings) -> list[str]:
    with pytest.raises(UserError) as caught:
        read(text, s)
    return caught.value.problems


def test_split_command_with_bot_name_and_plain_text() -> None:
    assert split_command("/imagine@sd_bot a cat --n 2") == CommandText("imagine", "a cat --n 2", "sd_bot")
    assert split_command("  a fox in snow ").name is None
    assert split_command("/HELP").name == "help"


def test_full_syntax(s: Settings) -> None:
    opts = read(
        "/imagine a red fox, snow --no blurry, text --ar 3:2 --seed 42 --steps 30 --cfg 6.5 --sampler dpmpp_2m_karras --n 4 --model REAL",
        s,
    )
    assert opts.prompt == "a red fox, snow"
    assert opts.negative == "blurry, text"
    assert opts.ar == (3.0, 2.0)
    assert (opts.seed, opts.steps, opts.cfg, opts.n) == (42, 30, 6.5, 4)
    assert opts.sampler == "DPM++ 2M Karras"
    assert opts.model == "real"


def test_em_dash_flags_and_seed_minus_one(s: Settings) -> None:
    opts = read("/imagine a cat —no dogs —seed -1 --size 512x768", s)
    assert opts.negative == "dogs" and opts.seed is None and opts.size == (512, 768)


def test_dashes_inside_the_prompt_are_text(s: Settings) -> None:
    assert read("/imagine a well-lit room -- wide angle", s).prompt == "a well-lit room -- wide angle"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/imagine a cat --foo 3", "I don't know the option `--foo`"),
        ("/imagine a cat --steps", "`--steps` needs a value"),
        ("/imagine a cat --steps ten", "`--steps` must be a whole number from 1 to 100; you wrote `ten`"),
        ("/imagine a cat --steps 2.5", "must be a whole number"),
        ("/imagine a cat --steps 101", "`--steps 101` is out of bounds: use 1 to 100"),
        ("/imagine a cat --steps 0", "out of bounds"),
        ("/imagine a cat --cfg 31", "`--cfg 31` is out of bounds: use 1 to 30"),
        ("/imagine a cat --cfg nan", "must be a number"),
        ("/imagine a cat --n 5", "`--n 5` is out of bounds: use 1 to 4"),
        ("/imagine a cat --strength 0", "must be above 0"),
        ("/imagine a cat --strength 1.5", "out of bounds"),
        ("/imagine a cat --size 500x512", "multiples of 8"),
        ("/imagine a cat --size 4096x4096", "from 64 to 2048"),
        ("/imagine a cat --size 2048x1024", "the limit is 1,048,576"),
        ("/imagine a cat --size big", "must look like `768x512`"),
        ("/imagine a cat --ar 10:1", "too extreme"),
        ("/imagine a cat --ar wide", "must look like `3:2`"),
        ("/imagine a cat --sampler warp", "Unknown sampler `warp`. Samplers: Euler a, Euler"),
        ("/imagine a cat --model sdxl", "Unknown model `sdxl`. Models: tiny, real"),
        ("/imagine a cat --seed 99999999999", "out of bounds"),
        ("/imagine a cat --ar 3:2 --size 512x512", "either `--ar` or `--size`"),
        ("/imagine a cat --seed 1 --seed 2", "given twice"),
    ],
)
def test_bad_input_names_the_problem(text: str, expected: str, s: Settings) -> None:
    found = problems(text, s)
    assert any(expected in p for p in found), found


def test_all_problems_are_reported_together(s: Settings) -> None:
    found = problems("/imagine a cat --foo --steps 500 --cfg x", s)
    assert len(found) == 3


def test_prompt_length_limit(s: Settings) -> None:
    found = problems("/imagine " + "a" * 1501, s)
    assert "limit is 1500" in found[0]


def test_empty_prompt_is_refused_when_building(s: Settings) -> None:
    opts = read("/imagine --steps 4", s)
    with pytest.raises(UserError, match="Tell me what to draw"):
        build_spec(opts, settings=s, registry=s.registry(), user_defaults={})


def test_strength_without_image_is_refused(s: Settings) -> None:
    opts = read("/imagine a cat --strength 0.5", s)
    with pytest.raises(UserError, match="needs an image"):
        build_spec(opts, settings=s, registry=s.registry(), user_defaults={})


def test_too_few_steps_for_strength(s: Settings) -> None:
    opts = read("/imagine a cat --strength 0.1 --steps 4", s)
    with pytest.raises(UserError, match="use at least 10 steps"):
        build_spec(opts, settings=s, registry=s.registry(), user_defaults={}, init=InitImage("k", 64, 64))


def test_defaults_precedence(s: Settings) -> None:
    registry = s.registry()
    spec, _ = build_spec(read("/imagine a cat", s), settings=s, registry=registry, user_defaults={})
    assert (spec.width, spec.height, spec.steps, spec.sampler, spec.model) == (64, 64, 8, "DPM++ 2M Karras", "tiny")  # tiny's own
    mine = {"steps": 9, "sampler": "Euler a", "no": "blur", "size": "128x64"}
    spec, _ = build_spec(read("/imagine a cat --steps 5", s), settings=s, registry=registry, user_defaults=mine)
    assert (spec.steps, spec.sampler, spec.negative_prompt, spec.width, spec.height) == (5, "Euler a", "blur", 128, 64)
    spec, _ = build_spec(read("/imagine a cat --model real --ar 16:9", s), settings=s, registry=registry, user_defaults={})
    assert spec.model == "real" and spec.width % 8 == 0 and spec.height % 8 == 0 and spec.steps == 25
    assert abs(spec.width / spec.height - 16 / 9) < 0.05 and spec.width * spec.height <= 512 * 512


def test_stale_user_settings_are_explained(s: Settings) -> None:
    with pytest.raises(UserError, match="from your /settings"):
        build_spec(read("/imagine a cat", s), settings=s, registry=s.registry(), user_defaults={"steps": 500})


def test_big_init_image_is_fitted_and_said(s: Settings) -> None:
    registry = s.registry()
    opts = read("/imagine a cat --model real", s)
    spec, notes = build_spec(opts, settings=s, registry=registry, user_defaults={}, init=InitImage("k", 4000, 3000))
    assert spec.kind == "img2img" and spec.strength == 0.75
    assert spec.width * spec.height <= 512 * 512 and spec.width % 8 == 0
    assert "4000x3000" in notes[0]


def test_fit_size_respects_limits(s: Settings) -> None:
    for width, height in [(1, 4), (4, 1), (3, 2), (1000, 999)]:
        w, h = fit_size(width, height, 1024 * 1024, s)
        assert w % 8 == 0 and h % 8 == 0 and w * h <= s.max_pixels and min(w, h) >= s.min_side


def test_sampler_names_and_aliases() -> None:
    assert normalize("DPM++ 2M Karras") == "dpmpp_2m_karras"
    for sampler in SAMPLERS:
        assert find_sampler(sampler.name) is sampler
        assert find_sampler(sampler.alias) is sampler
        assert find_sampler(sampler.name.upper()) is sampler
    assert find_sampler("euler_a").name == "Euler a"
    assert find_sampler("k_euler_a").name == "Euler a"
    assert find_sampler("Euler").name == "Euler"
    assert find_sampler("nope") is None


def test_empty_negative_and_unknown_structured_keys(s: Settings) -> None:
    assert problems("/imagine a cat --no", s) == ["`--no` needs a value, e.g. `--no blurry, text`."]
    with pytest.raises(UserError, match="Unknown option `number`"):
        read_options({"number": 3}, s, s.registry(), prompt="a cat")
    assert any("negative prompt is 1501" in p for p in problems("/imagine a cat --no " + "b" * 1501, s))
