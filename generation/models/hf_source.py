"""Where a transformers model named in the config comes from, and what to tell the admin when it
cannot be loaded. Shared by the segmenter and the prompt tools (`segment`, `enhance`, `interrogate`).

A source is a folder saved with `save_pretrained` or a Hub id already in the local cache: sdbot
never downloads at run time (everything is loaded with `local_files_only=True`) and never opens a
pickle (`use_safetensors=True`; a path to a `.bin`/`.pt` file is refused before anything reads it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from generation.errors import PICKLE_SUFFIXES, ModelLoadError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Source:
    """What a config key names, for messages: the key, what kind of model, an example Hub id, and
    the transformers class that converts a pickle-only checkpoint to safetensors."""

    key: str  # SDBOT_ENHANCER
    what: str  # "text model"
    example: str  # Gustavosta/MagicPrompt-Stable-Diffusion
    model_class: str  # AutoModelForCausalLM


def resolve(source: str | Path, about: Source) -> str:
    """The folder or Hub id to hand to `from_pretrained`; a ModelLoadError naming the key if it
    can be neither (a missing folder, a file, a pickle)."""
    text = str(source).strip()
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelLoadError(
                f"{about.key} points at `{path.name}`, a pickle file, and sdbot never loads those (unpickling can "
                f"run code). {_convert(about)}"
            )
        raise ModelLoadError(
            f"{about.key} must name a folder saved with `save_pretrained` (config.json, weights, tokenizer) or a "
            f"Hub id such as {about.example}, not the file `{path}`."
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"`{path}` is not a transformers model folder (it has no config.json). Set {about.key} to a folder "
                f"saved with `save_pretrained` or a Hub id such as {about.example}."
            )
        return str(path)
    if isinstance(source, Path) or not HUB_ID.match(text):
        raise ModelLoadError(
            f"the {about.what} folder `{path}` does not exist. Check {about.key} (a folder or a Hub id such as {about.example})."
        )
    return text


def explain(name: str, error: Exception, about: Source) -> str:
    """Advice for a failed `from_pretrained`: not cached offline, pickle-only weights, or other."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    chain: list[BaseException] = [error]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    detail = f"({type(error).__name__}: {error})"
    missing = any(isinstance(e, LocalEntryNotFoundError) for e in chain)
    if not missing and ".safetensors" in str(error):
        return f"the {about.what} `{name}` ({about.key}) has no .safetensors weights. {_convert(about)} {detail}"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if missing or offline or any(isinstance(e, OSError) for e in chain):
        where = "HF_HUB_OFFLINE is set" if offline else "it is not in the local cache, and sdbot does not download"
        folder = "" if Path(name).is_dir() else f" (If `{name}` was meant as a folder: it does not exist.)"
        return (
            f"I could not load the {about.what} `{name}`: {where}. Download it once on a machine with network "
            f"(e.g. `hf download {about.example} --local-dir model`), copy the folder here and set {about.key} to "
            f"it.{folder} {detail}"
        )
    return f"I could not load the {about.what} `{name}` ({about.key}): {detail}"


def _convert(about: Source) -> str:
    return (
        f"Convert it once on a trusted machine (`{about.model_class}.from_pretrained(...).save_pretrained(folder)` "
        f"writes safetensors; save the tokenizer/processor beside it) and set {about.key} to that folder."
    )
