"""Log lines (config/logs.py): job ids on every record made for a job, in the text and the JSON
format, across asyncio tasks and threads; secrets redacted in both formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from config.logs import clear_process_fields, job_scope, make_handler, run_in_context, set_process_field

SECRET = '123456:AAH-sEcReT"quoted\\back'  # a quote and a backslash: JSON escapes them


class Captured:
    def __init__(self, log_format: str):
        self.stream = io.StringIO()
        self.logger = logging.getLogger(f"sdbot.test_logs.{log_format}")
        self.logger.handlers = [make_handler(log_format, [SECRET], self.stream)]  # type: ignore[arg-type]
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def text() -> Iterator[Captured]:
    yield Captured("text")
    clear_process_fields()


@pytest.fixture
def jsonl() -> Iterator[Captured]:
    yield Captured("json")
    clear_process_fields()


def test_text_lines_inside_a_job_scope_start_with_the_job(text: Captured) -> None:
    text.logger.info("before")
    with job_scope(17, 1):
        text.logger.info("drawing %d images", 4)
        with job_scope(18, 2):  # nested: the inner job, then the outer again
            text.logger.info("inner")
        text.logger.info("outer again")
    text.logger.info("after")
    messages = [line.split(": ", 1)[1] for line in text.lines()]
    assert messages == ["before", "[job 17/1] drawing 4 images", "[job 18/2] inner", "[job 17/1] outer again", "after"]
    assert " INFO sdbot.test_logs.text: " in text.lines()[0]


def test_json_lines_carry_the_fields(jsonl: Captured) -> None:
    set_process_field("owner", "gpu-3:4242:ab12")
    jsonl.logger.warning("outside")
    with job_scope(17, 3):
        try:
            raise ValueError("the engine broke")
        except ValueError:
            jsonl.logger.exception("job failed")
    outside, failed = jsonl.records()
    assert outside["level"] == "WARNING" and outside["logger"] == "sdbot.test_logs.json" and outside["message"] == "outside"
    assert outside["owner"] == "gpu-3:4242:ab12" and "job_id" not in outside and "attempt" not in outside
    assert outside["ts"].endswith("Z") and outside["ts"][10] == "T"  # ISO 8601, UTC
    assert (failed["job_id"], failed["attempt"], failed["owner"]) == (17, 3, "gpu-3:4242:ab12")
    assert failed["exc_info"].startswith("Traceback") and "ValueError: the engine broke" in failed["exc_info"]


async def test_the_job_follows_tasks_and_threads(jsonl: Captured) -> None:
    log = jsonl.logger

    async def in_a_task(name: str) -> None:
        await asyncio.sleep(0)
        log.info(name)

    with job_scope(21, 1):
        task = asyncio.create_task(in_a_task("task"))  # a task copies the context it is created in
        await asyncio.to_thread(log.info, "to_thread")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, run_in_context(log.info), "executor, wrapped")
        await loop.run_in_executor(None, log.info, "executor, bare")  # run_in_executor does not copy it
    await task
    await asyncio.create_task(in_a_task("task created outside"))
    by_message = {record["message"]: record.get("job_id") for record in jsonl.records()}
    assert by_message == {"task": 21, "to_thread": 21, "executor, wrapped": 21, "executor, bare": None, "task created outside": None}


async def test_concurrent_jobs_keep_their_own_ids(text: Captured) -> None:
    async def job(job_id: int) -> None:
        with job_scope(job_id, 1):
            for step in range(3):
                await asyncio.sleep(0)
                text.logger.info("step %d", step)

    await asyncio.gather(job(1), job(2), job(3))
    for line in text.lines():
        prefix, _, rest = line.partition(": ")[2].partition("] ")
        assert prefix in ("[job 1/1", "[job 2/1", "[job 3/1") and rest.startswith("step")
    assert len(text.lines()) == 9


def test_secrets_are_redacted_in_both_formats(text: Captured, jsonl: Captured) -> None:
    for captured in (text, jsonl):
        with job_scope(5, 1):
            captured.logger.info("GET https://api.telegram.org/bot%s/getMe", SECRET)
            try:
                raise RuntimeError(f"refused token {SECRET}")
            except RuntimeError:
                captured.logger.exception("failed")
    assert SECRET not in text.stream.getvalue() and "[redacted]" in text.stream.getvalue()
    raw = jsonl.stream.getvalue()
    assert SECRET not in raw and json.dumps(SECRET)[1:-1] not in raw  # neither plain nor escaped
    first, second = jsonl.records()
    assert first["message"] == "GET https://api.telegram.org/bot[redacted]/getMe"
    assert "refused token [redacted]" in second["exc_info"] and SECRET not in second["exc_info"]


def test_a_batch_names_all_its_jobs(text: Captured, jsonl: Captured) -> None:
    for captured in (text, jsonl):
        with job_scope(3, 1, batch=(3, 4, 9)):
            captured.logger.info("drawing")
    assert text.lines()[0].endswith("[job 3/1, batch 3,4,9] drawing")
    [record] = jsonl.records()
    assert (record["job_id"], record["attempt"], record["batch"]) == (3, 1, [3, 4, 9])
