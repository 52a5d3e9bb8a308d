"""Log lines: redacted, as text or JSON lines, and tagged with the job they were written for.

With several workers on one queue, "which job was this?" must be answerable from any log line,
not only from the lines that happen to name a job id. So the worker runs each job inside
`job_scope(job_id, attempt)`, and a filter on the handler copies the scope's fields onto every
record made inside it, whichever module logs (the engine, diffusers, our storage layer). The scope
is a contextvar: asyncio tasks created inside it and `asyncio.to_thread` inherit it, but
`loop.run_in_executor` does not copy the context, so wrap what runs there with `run_in_context`.

    SDBOT_LOG_FORMAT=text   2025-01-02 03:04:05,678 INFO sdbot.worker: [job 17/1] succeeded in 3.2 s
    SDBOT_LOG_FORMAT=json   {"ts": "2025-01-02T03:04:05.678Z", "level": "INFO", "logger": "sdbot.worker",
                             "message": "succeeded in 3.2 s", "job_id": 17, "attempt": 1, "owner": "host:123:ab"}
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, ParamSpec, TextIO, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MIN_SECRET_CHARS = 6  # shorter "secrets" (a test token, "abc") would blank out ordinary words


@dataclass(frozen=True)
class JobFields:
    job_id: int
    attempt: int
    batch: tuple[int, ...] = ()  # every job drawn in the same pipeline call (generation.jobs.batched), this one first


_job: contextvars.ContextVar[JobFields | None] = contextvars.ContextVar("sdbot_log_job", default=None)
_process_fields: dict[str, Any] = {}


@contextmanager
def job_scope(job_id: int, attempt: int, batch: tuple[int, ...] = ()) -> Iterator[None]:
    """Every log record made inside (in this task, the tasks it creates, `asyncio.to_thread` and
    `run_in_context` calls) carries `job_id` and `attempt`, and `batch` (the ids of the jobs
    drawn together) when the job runs in a batch."""
    token = _job.set(JobFields(job_id, attempt, batch))
    try:
        yield
    finally:
        _job.reset(token)


def current_job() -> JobFields | None:
    return _job.get()


def set_process_field(name: str, value: Any) -> None:
    """A field on every record of this process from now on, e.g. `owner`, the worker's id, so the
    lines of several workers in one log store can be told apart."""
    _process_fields[name] = value


def clear_process_fields() -> None:
    """For tests: forget what `set_process_field` set."""
    _process_fields.clear()


def run_in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, to run in the context current now (its job scope included) wherever it is called:
    `loop.run_in_executor(pool, run_in_context(work), arg)`. Each call runs in its own copy, so
    the wrapper may run in several threads at once."""
    captured = contextvars.copy_context()

    def in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return in_context


class JobContextFilter(logging.Filter):
    """Puts `job_id`/`attempt` (inside a `job_scope`) and the process fields on each record. It sits
    on the handler, not on a logger: a logger's filters see only records logged on that very
    logger, a handler's see every record that reaches it."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = _job.get()
        if job is not None and not hasattr(record, "job_id"):  # an explicit extra={"job_id": ..} wins
            record.job_id = job.job_id
            record.attempt = job.attempt
            if job.batch:
                record.batch = list(job.batch)
        for name, value in _process_fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class Redactor:
    """Secrets never reach a log line: libraries log request URLs, and Telegram's URLs hold the
    bot token (PTB logs them at DEBUG, httpx at INFO, and error messages may repeat them)."""

    def __init__(self, secrets: list[str]):
        self.secrets = [secret for secret in secrets if len(secret) >= MIN_SECRET_CHARS]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text


class RedactingFormatter(logging.Formatter):
    """The text format, redacted, with `[job 17/1] ` before the message of a record made for a job."""

    def __init__(self, fmt: str = TEXT_FORMAT, secrets: list[str] | None = None):
        super().__init__(fmt)
        self.redact = Redactor(secrets or [])

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        if job_id is not None:  # a copy: the record itself may go on to other handlers
            batch = getattr(record, "batch", None)
            tag = f"job {job_id}/{getattr(record, 'attempt', '?')}" + (f", batch {','.join(map(str, batch))}" if batch else "")
            record = logging.makeLogRecord({**record.__dict__, "msg": f"[{tag}] {record.getMessage()}", "args": None})
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log stores that index fields. Each string is redacted before
    it is encoded (a secret with a quote or backslash in it would not match once escaped)."""

    FIELDS = ("job_id", "attempt", "batch", "owner")

    def __init__(self, secrets: list[str] | None = None):
        super().__init__()
        self.redact = Redactor(secrets or [])

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*self.FIELDS, *(n for n in _process_fields if n not in self.FIELDS)):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        entry = {key: self.redact(value) if isinstance(value, str) else value for key, value in entry.items()}
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


def make_handler(log_format: Literal["text", "json"], secrets: list[str], stream: TextIO | None = None) -> logging.Handler:
    """A stderr handler in the chosen format, redacting `secrets`, that tags job records."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if log_format == "json" else RedactingFormatter(TEXT_FORMAT, secrets))
    handler.addFilter(JobContextFilter())
    return handler


def configure_logging(level: str, log_format: Literal["text", "json"], secrets: list[str]) -> None:
    """The process's logging, once at start (run_bot.py main)."""
    logging.basicConfig(level=level.upper(), handlers=[make_handler(log_format, secrets)])
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every run at INFO
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines hold request URLs, tokens included
