"""Numbers people type: one reader for the whole command layer (`commands.frame.numbers`). Digits that
are not ASCII, numbers past what a job id or a size can be, and walls of digits each get a polite
reply, and nothing reaches the internal-error path (no traceback logged)."""

from __future__ import annotations

import logging

import pytest

from commands.frame.errors import UserError
from commands.frame.numbers import bound_text, check_number, job_number, read_float, read_int
from tests.test_service import Bot, make_bot

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", 12),
        (" -5 ", -5),
        ("+3", 3),
        ("²", None),
        ("٣", None),
        ("1_000", None),
        ("1.0", None),
        ("", None),
        ("9" * 25, None),
        ("9" * 4400, None),
    ],
)
def test_whole_numbers_are_ascii_digits(text: str, expected: int | None) -> None:
    assert read_int(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.8", 0.8),
        (".5", 0.5),
        ("-1", -1.0),
        ("2e-3", 0.002),
        ("1.", 1.0),
        ("1e999", None),
        ("nan", None),
        ("inf", None),
        (".", None),
        ("٣.5", None),
        ("1_0.5", None),
        ("0x10", None),
    ],
)
def test_decimals_are_finite_and_ascii(text: str, expected: float | None) -> None:
    assert read_float(text) == expected


def test_bounds_are_printed_as_people_write_them() -> None:
    assert bound_text(2**32 - 1) == "4294967295" and bound_text(30.0) == "30" and bound_text(0.01) == "0.01"
    _, problem = check_number("-5", "--seed", int, -1, 2**32 - 1)
    assert problem == "`--seed -5` is out of bounds: use -1 to 4294967295."
    _, problem = check_number("9" * 4400, "--steps", int, 1, 150)
    assert problem is not None and len(problem) < 120  # the wall of digits is not echoed back
    assert check_number(3.0, "--n", int, 1, 4) == (3, None)  # Discord's typed options arrive as numbers
    assert check_number(True, "--n", int, 1, 4)[1] is not None


def test_a_job_number_past_any_job_is_no_job() -> None:
    assert job_number("#12") == 12 and job_number("12") == 12 and job_number("²") is None
    with pytest.raises(UserError, match="There is no job"):
        job_number(HUGE)
    with pytest.raises(UserError, match="There is no job"):
        job_number("0")


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"admin_ids": ["alice"]})


@pytest.fixture
async def bot(settings):  # type: ignore[no-untyped-def]
    made = await make_bot(settings)
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_bad_numbers_get_a_polite_reply_and_no_traceback(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    await bot.send("/imagine a fox --steps 1")
    await bot.finish()
    wall = "9" * 4400
    cases = {
        "/info ²": "Which job?",
        "/cancel ²": "takes a job number",
        "/history ²": "how many jobs to show",
        "/admin review ²": "I don't understand",
        f"/info {HUGE}": "There is no job",
        f"/cancel {HUGE}": "There is no job",
        f"/frames {HUGE}": "There is no job",
        f"/admin review {HUGE}": "There is no job",
        f"/imagine a fox --size {wall}x64": "must look like `768x512`",
        f"/imagine a fox --steps {wall}": "must be a whole number",
        "/imagine a fox --seed -5": "use -1 to 4294967295",
        "/imagine a fox --cfg ٣": "must be a number",
        f"/history {wall}": "how many jobs to show",
        "/enhance a fox --n ²": "`--n` must be a whole number from 1 to 4",
    }
    caplog.set_level(logging.ERROR)
    for text, words in cases.items():
        [(_, reply)] = await bot.send(text, private=True)
        assert reply.kind == "error" and words in reply.text, (text[:40], reply.text)
        assert "something went wrong" not in reply.text and len(reply.text) < 600, text[:40]
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"
    assert await bot.finish() == []  # nothing was queued
