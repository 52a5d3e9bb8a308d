"""The worker: claims jobs from the queue and runs them on the engine, one at a time per GPU.

Like an arq worker: a small context, plain async functions, explicit limits. For each job:
- claim it (lease + attempt counter), preferring the model already loaded;
- run the engine in the one engine thread (torch never runs on the event loop);
- meanwhile heartbeat: renew the lease and store progress every `progress_seconds`, and pass a
  user's /cancel (or our own shutdown) to the engine, which stops between steps;
- write the PNGs to the blob store, then complete the job with a compare-and-set on its attempt,
  in one transaction with its outbox row.

A training run (kind "train", `generation.training.run.TrainingTask`) goes the same way, with
two differences: it writes checkpoints and samples while it runs (each fenced on its attempt),
and it yields: when drawing jobs wait, it checkpoints at its next step and is handed back to the
queue, attempt not counted, behind them.

A worker that dies mid-job is harmless: its lease runs out and the job runs again (up to
`max_attempts`). On start, jobs leased by dead processes on this host are taken back at once,
rather than after their lease, so a restart after a crash resumes without waiting.

What lives where (each module imports only those below it in this list, never this package):
- loop: `Worker`, the claim loop, the batch wait, and running a task to its outcome;
- heartbeat: while a task runs, lease renewal, progress, and the cancel / lease-lost / shutdown
  signals passed to the engine thread (`Heartbeat.stopping`);
- tasks: the `Task` protocol (describe / prepare / work / finish: which thread runs each, what
  `work` may raise) and the picture tasks, `PictureTask` and `BatchTask`;
- outputs: `store`, a picture job's files into the blob store, as output records and its
  `storage.results.JobResult`;
- limits: `WorkerLimits` (from the SDBOT_* settings) and the owner ids leases carry.

May import `generation.spec`, `generation.errors`, `generation.engine` and `generation.jobs` (the
job kinds), `generation.training` (a run's task, and `hooks.Stopping`), `storage` and `config`;
nothing else imports this package but run_bot.py, tests and benches.

This package loads no torch: the engine, the job kinds and the trainer are imported where a job
runs on them (and only for types otherwise), so a worker around another engine (tests/support/null_worker.py)
starts in about a second, and the process that builds the real engine pays for torch once there
(tests/test_layout.py checks it).
"""

from generation.worker.heartbeat import Heartbeat, Progress
from generation.worker.limits import WorkerLimits, make_owner_id, owner_is_dead_here
from generation.worker.loop import Worker
from generation.worker.outputs import store
from generation.worker.tasks import BatchTask, Held, PictureTask, ProgressFn, Task, TaskHost

__all__ = [
    "BatchTask",
    "Heartbeat",
    "Held",
    "PictureTask",
    "Progress",
    "ProgressFn",
    "Task",
    "TaskHost",
    "Worker",
    "WorkerLimits",
    "make_owner_id",
    "owner_is_dead_here",
    "store",
]
