"""Settings and the model registry. Everything may import this package; it imports nothing of ours."""

from config.models import ModelEntry, ModelRegistry
from config.settings import Settings, load_settings

__all__ = ["ModelEntry", "ModelRegistry", "Settings", "load_settings"]
