"""Engine errors the worker turns into job outcomes. Torch-free."""

from __future__ import annotations

# Model files sdbot refuses to open: unpickling one can run code hidden in it.
PICKLE_SUFFIXES = frozenset({".pth", ".pt", ".ckpt", ".bin"})


class JobCancelled(Exception):
    """Raised from the step callback when the job should stop (a user's /cancel, or shutdown)."""


class TrainingYielded(Exception):
    """The run saved a checkpoint at a step boundary and hands the worker to waiting drawing jobs
    (raised by generation.training.trainer; here so the worker can catch it without torch)."""


class EngineUserError(Exception):
    """A failure the user (or admin) can act on; its message is shown as is and not retried."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ModelLoadError(EngineUserError):
    """A model could not be loaded. The message says why and how to fix it."""
