"""Which uploaded LoRAs and embeddings a job uses, resolved when it is queued.

- LoRAs: A1111's `<lora:NAME:WEIGHT>` tags in the prompt (weight optional, default 1; several at
  once) and `--lora NAME:WEIGHT`. The tag stays in the prompt as written (A1111 keeps it in the
  parameters too); the engine removes it from the text it encodes.
- Embeddings: an embedding's name written in the prompt or negative prompt, as a word, stands
  for its vectors, as in A1111.
Names resolve with the user's rights (`storage.assets`): another user's private file is "not
found". A file made for another architecture than the job's model is refused, naming both.
"""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from commands.errors import UserError
from config import ModelRegistry
from generation.lora_tags import parse_lora_tags
from generation.spec import AssetRef, GenerationSpec
from storage import assets
from storage.tables import Asset

MAX_LORAS_PER_JOB = 8
FAMILIES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


async def resolve_assets(
    session: AsyncSession, registry: ModelRegistry, user_id: int, spec: GenerationSpec,
    flags: tuple[tuple[str, float], ...] | None, base: GenerationSpec | None = None,
) -> GenerationSpec:  # fmt: skip
    """`spec` with its `loras` and `embeddings` resolved for `user_id`. `base` (the job being
    remixed or rerolled) passes on the LoRAs it was given with `--lora`, resolved again with
    the rights of whoever asks now."""
    wanted: dict[str, float] = {}
    problems: list[str] = []
    try:
        tagged = parse_lora_tags(spec.prompt)
    except ValueError as error:
        raise UserError(str(error)) from None
    for name, weight in [*tagged, *(flags or ())]:
        if name.lower() in wanted:
            problems.append(f"The LoRA `{name}` is named twice; give it once, with one weight.")
        wanted[name.lower()] = weight
    for ref in base.loras if base is not None else ():
        wanted.setdefault(ref.name, ref.weight)  # a remix keeps its picture's LoRAs, as it keeps its settings
    if len(wanted) > MAX_LORAS_PER_JOB:
        problems.append(f"A job may use at most {MAX_LORAS_PER_JOB} LoRAs; this one names {len(wanted)}.")
    family = (registry.get(spec.model) or registry.default).family
    loras: list[AssetRef] = []
    for name, weight in wanted.items():
        asset = await assets.find_usable(session, user_id, "lora", name)
        if asset is None:
            problems.append(f"I don't know a LoRA named `{name}`. `/loras` lists the ones you can use.")
            continue
        problems += _architecture(asset, spec.model, family)
        loras.append(_ref(asset, weight))
    embeddings = []
    text = f"{spec.prompt}\n{spec.negative_prompt}"
    if text.strip():
        for asset in await assets.usable(session, user_id, "embedding"):
            if asset.name in {e.name for e in embeddings} or not _mentions(text, asset.name):
                continue  # the user's own comes first in `usable`: it wins a shared one's name
            problems += _architecture(asset, spec.model, family)
            embeddings.append(_ref(asset, 1.0))
    if problems:
        raise UserError(*problems)
    return spec.model_copy(update={"loras": tuple(loras), "embeddings": tuple(embeddings)})


def _mentions(text: str, name: str) -> bool:
    """`name` written as a word (A1111 matches embedding names in the tokenized text, which CLIP
    lower-cases)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE) is not None


def _architecture(asset: Asset, model: str, family: str) -> list[str]:
    if asset.architecture is None or asset.architecture == family:
        return []
    kind = "LoRA" if asset.kind == "lora" else "embedding"
    return [
        f"`{asset.name}` is a {kind} for {FAMILIES.get(asset.architecture, asset.architecture)}; the model `{model}` "
        f"is {FAMILIES.get(family, family)}. Pick a model of its kind with `--model`, or another {kind}."
    ]


def _ref(asset: Asset, weight: float) -> AssetRef:
    short = str(asset.info.get("addnet_hash") or asset.sha256)[:12]
    return AssetRef(name=asset.name, blob=asset.blob_key, sha256=asset.sha256, format=asset.format, weight=weight,
                    short_hash=short)  # fmt: skip
