"""The worker's `Task` protocol (generation/worker/tasks.py): the picture task, the batch task and
the training run all satisfy it, by shape and by signature, so `Worker._run` runs any of them the
same way; and the package keeps the names run_bot.py, the tests and the benches import."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from generation.spec import GenerationSpec
from generation.training.run import TrainingTask
from generation.worker import BatchTask, Held, PictureTask, Task
from storage.tables import Job

SPEC = GenerationSpec(kind="txt2img", prompt="a fox", model="tiny", width=64, height=64, steps=1, cfg=7.0, sampler="Euler", seed=1)
TASK_CLASSES = [PictureTask, BatchTask, TrainingTask]
METHODS = ["describe", "prepare", "work", "finish"]


class Host:
    """What a picture task uses of its worker (`TaskHost`), none of it used here."""

    db: Any = None
    engine: Any = None
    blobs: Any = None
    owner = "test:1:abcd"


def tasks() -> list[Task[Any]]:
    job = Job(id=1, kind="txt2img", params=SPEC.model_dump(mode="json"), attempt=1)
    picture: Task[Any] = PictureTask(Host(), job, SPEC)
    batch: Task[Any] = BatchTask(Host(), [Held(job, 1), Held(job, 1)], [SPEC, SPEC])
    training: Task[Any] = TrainingTask.__new__(TrainingTask)  # its fields unset: only its shape is looked at
    return [picture, batch, training]


def test_every_task_is_a_task() -> None:
    for task in tasks():
        assert isinstance(task, Task), type(task).__name__
    assert not isinstance(object(), Task)  # the check can fail


@pytest.mark.parametrize("cls", TASK_CLASSES, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("method", METHODS)
def test_each_method_has_the_protocols_signature(cls: type, method: str) -> None:
    """The same parameters (names, kinds, defaults) and the same sync/async as `Task` declares:
    the worker calls them positionally and by these names."""
    declared, found = getattr(Task, method), getattr(cls, method)

    def shape(function: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert shape(found) == shape(declared)
    assert inspect.iscoroutinefunction(found) == inspect.iscoroutinefunction(declared)


def test_the_batch_path_still_recognises_a_batch() -> None:
    """`Worker._run` draws a failed batch's jobs one by one by `isinstance(task, BatchTask)`;
    a bench's subclass of BatchTask (bench/queue_throughput.py) is one too."""
    picture, batch, _ = tasks()
    assert isinstance(batch, BatchTask) and not isinstance(picture, BatchTask)


def test_the_package_keeps_its_public_names() -> None:
    import generation.worker as worker

    for name in ("Worker", "WorkerLimits", "make_owner_id", "owner_is_dead_here", "Task", "PictureTask", "BatchTask", "store"):
        assert hasattr(worker, name), name
    assert worker.owner_is_dead_here(worker.make_owner_id()) is False  # this process lives
