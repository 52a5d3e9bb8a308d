"""The sections of the settings, one class each, composed into `config.settings.Settings`.

A section is a plain pydantic model whose docstring is its title (first line) and a paragraph
(the rest); its fields' descriptions are the reference text of docs/configuration.md, which
`python -m config.settings_docs` writes from them. A field whose real default is computed or
says little names its documented default with `json_schema_extra={"doc_default": "..."}`.
"""

from config.sections.chats import DiscordSettings, TelegramSettings
from config.sections.clips import ClipSettings
from config.sections.engine import ControlSettings, HelperModelSettings, ModelSettings
from config.sections.people import PeopleSettings, SafetySettings, StorageSettings
from config.sections.requests import DefaultSettings, LimitSettings, PromptFeatureSettings, UploadSettings, UpscaleSettings
from config.sections.service import OperationsSettings, WorkerSettings
from config.sections.training import TrainingSettings

__all__ = [
    "ClipSettings",
    "ControlSettings",
    "DefaultSettings",
    "DiscordSettings",
    "HelperModelSettings",
    "LimitSettings",
    "ModelSettings",
    "OperationsSettings",
    "PeopleSettings",
    "PromptFeatureSettings",
    "SafetySettings",
    "StorageSettings",
    "TelegramSettings",
    "TrainingSettings",
    "UploadSettings",
    "UpscaleSettings",
    "WorkerSettings",
]
