"""Deforum's schedules and 2D motion (generation/animation): keyframes against hand-computed
values, expressions of t through the safe evaluator, prompts by frame, errors that say where,
and a warp that moves pixels where the schedule says."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from generation.animation.keyframes import (
    ScheduleError,
    evaluate,
    parse_keyframes,
    parse_prompt_schedule,
    prompt_at,
    schedule_values,
)
from generation.animation.warp import Motion, match_colors, warp, warp_matrix


def test_numbers_hold_before_and_after_and_are_linear_between() -> None:
    assert schedule_values("0:(1.0), 4:(1.4)", 7) == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.4, 1.4, 1.4])
    assert schedule_values("2:(5), 4:(1)", 6) == pytest.approx([5, 5, 5, 3, 1, 1])  # the first value holds before it
    assert schedule_values("0:(1.02)", 4) == pytest.approx([1.02] * 4)
    assert schedule_values(" 3 : ( -2 ) ,0:(0)", 4) == pytest.approx([0, -2 / 3, -4 / 3, -2])  # any order, spaces
    assert schedule_values("10:(7)", 3) == pytest.approx([7, 7, 7])  # a keyframe beyond the clip


def test_an_expression_holds_until_the_next_keyframe() -> None:
    values = schedule_values("0:(1 + 0.1*sin(t)), 3:(2), 5:(t/10)", 7)
    expected = [
        1 + 0.1 * math.sin(0),
        1 + 0.1 * math.sin(1),
        1 + 0.1 * math.sin(2),  # the expression, frame by frame
        2,  # the number at 3
        (2 + 0.5) / 2,  # between the number at 3 and the expression's value at 5
        5 / 10,
        6 / 10,  # the expression from 5 on
    ]
    assert values == pytest.approx(expected)
    assert evaluate("max_f - t + 2^3 + abs(-1) + floor(2.7) + pi*0", t=2, max_f=9) == pytest.approx(7 + 8 + 1 + 2)


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("0:(1.0), 30:1.05", 9, "keyframe like"),
        ("0:(1.0) 30:(1.05)", 8, "commas"),
        ("0:(1.0), 30:(1.05", 12, "not closed"),
        ("0:()", 3, "needs a value"),
        ("0:(1), 0:(2)", 7, "two keyframes"),
        ("0:(__import__('os'))", 3, "`__import__` is not a function"),
        ("0:(t.real)", 3, "not allowed"),
        ("0:(x * 2)", 3, "`x` is not known"),
        ("0:(1 +)", 3, "not a number or an expression"),
        ("0:(1.0),", 8, "should follow the comma"),
    ],
)
def test_a_schedule_that_does_not_parse_says_where(text: str, position: int, words: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_keyframes(text)
    assert words in caught.value.message and caught.value.position == position, (caught.value, position)
    assert f"at character {caught.value.position + 1}" in str(caught.value)


@pytest.mark.parametrize("expression", ["9**9**9", "10**200", "1/(t-1)", "(-8)**0.5", "exp(1000)", "sqrt(t-5)"])
def test_expressions_cannot_blow_up(expression: str) -> None:
    with pytest.raises(ScheduleError):
        schedule_values(f"0:({expression})", 3)


def test_prompts_by_frame_keep_their_commas() -> None:
    schedule = parse_prompt_schedule("0: a forest, misty, 4k, 24: a city at night")
    assert schedule == [(0, "a forest, misty, 4k"), (24, "a city at night")]
    assert [prompt_at(schedule, f) for f in (0, 23, 24, 99)] == ["a forest, misty, 4k"] * 2 + ["a city at night"] * 2
    assert parse_prompt_schedule("a fox running") == [(0, "a fox running")]
    assert prompt_at(parse_prompt_schedule("4: late"), 0) == "late"  # before the first: the first
    for bad, words in (
        ("a forest, 4: a city", "starts with a frame"),
        ("0: a forest, 4:", "no prompt"),
        ("0: a, 0: b", "two prompts"),
        ("  ", "empty"),
    ):
        with pytest.raises(ScheduleError, match=words):
            parse_prompt_schedule(bad)


def test_the_warp_moves_pixels_where_the_schedule_says() -> None:
    """Zoom 1.25 about the centre of a 64x64 frame: a dot 8 px right of the centre lands 10 px
    right of it; a turn of 90° takes it above the centre; a shift moves it by that many pixels."""
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[32, 40] = 255  # (x=40, y=32): 8 px right of the centre (32, 32)

    def dot(image: np.ndarray) -> tuple[float, float]:
        ys, xs = np.nonzero(image[..., 0] > 40)
        weights = image[ys, xs, 0].astype(float)
        return float((xs * weights).sum() / weights.sum()), float((ys * weights).sum() / weights.sum())

    assert dot(warp(frame, Motion(zoom=1.25))) == pytest.approx((42.0, 32.0), abs=0.5)
    assert dot(warp(frame, Motion(angle=90))) == pytest.approx((32.0, 24.0), abs=0.5)  # counter-clockwise
    assert dot(warp(frame, Motion(tx=5, ty=-3))) == pytest.approx((45.0, 29.0), abs=0.5)
    matrix = warp_matrix(Motion(zoom=1.1, angle=10, tx=2), 64, 64)
    x, y, _ = matrix @ np.array([40.0, 32.0, 1.0])  # the same point by the matrix
    c, s = 1.1 * math.cos(math.radians(10)), 1.1 * math.sin(math.radians(10))
    assert (x, y) == pytest.approx((32 + c * 10, 32 - s * 10))


def test_colour_coherence_pulls_a_drifted_frame_back() -> None:
    rng = np.random.default_rng(1)
    reference = rng.integers(60, 200, (32, 32, 3), dtype=np.uint8)
    drifted = np.clip(reference.astype(int) + [40, -30, 10], 0, 255).astype(np.uint8)
    fixed = match_colors(drifted, reference)

    def lab_means(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(float).mean((0, 1))

    assert np.abs(lab_means(fixed) - lab_means(reference)).max() < 1.5  # matched where it matches: in LAB
    before = np.abs(drifted.mean((0, 1)) - reference.mean((0, 1))).max()
    after = np.abs(fixed.mean((0, 1)) - reference.mean((0, 1))).max()
    assert before > 25 and after < before / 4, (before, after)
