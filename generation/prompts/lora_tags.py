"""A1111's extra-network tags in a prompt: `<lora:NAME:WEIGHT>` (and `<lyco:...>`, the LyCORIS
extension's spelling) and `<hypernet:NAME:WEIGHT>`. Torch-free: the command layer resolves the names to a job's `loras`, and the engine
removes the tags from the text it encodes (as A1111 does), while the prompt kept in the PNG
parameters keeps them.

Syntax, as A1111's extra networks parse it (`<(\\w+):([^>]+)>`, the arguments split on `:`):
- `<lora:name>` is weight 1;
- `<lora:name:0.8>` is weight 0.8;
- A1111's `<lora:name:te:unet>` (separate text-encoder and UNet weights) and the named forms
  `te=`, `unet=`: sdbot applies one weight to UNet and text encoders, so the first one (the text
  encoder's, which A1111 also uses for the UNet when no UNet weight is given) is the weight.
Tags are removed exactly, leaving the text around them as it was (A1111 does the same, so a
prompt pasted from A1111 encodes to the same tokens).
"""

from __future__ import annotations

import re

LORA_TAG = re.compile(r"<(lora|lyco|hypernet):([^>]+)>", re.IGNORECASE)
NETWORKS = {"lora": "LoRA", "lyco": "LoRA", "hypernet": "hypernetwork"}


def strip_lora_tags(text: str) -> str:
    """The text without its `<lora:...>` / `<lyco:...>` / `<hypernet:...>` tags."""
    return LORA_TAG.sub("", text)


def parse_lora_tags(text: str, kind: str = "lora") -> list[tuple[str, float]]:
    """Each tag's (name, weight) of one kind (`lora`: `<lora:…>` and `<lyco:…>`; `hypernet`), in
    prompt order. Raises ValueError, with a message for the user, on a tag without a name or with
    a weight that is not a number."""
    found = []
    for match in LORA_TAG.finditer(text):
        if NETWORKS[match.group(1).lower()] != NETWORKS[kind]:
            continue
        parts = [part.strip() for part in match.group(2).split(":")]
        name, positional = parts[0], [p for p in parts[1:] if "=" not in p]
        named = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if not name:
            raise ValueError(f"`{match.group(0)}` names no {NETWORKS[kind]}: write `<{kind}:NAME:WEIGHT>`.")
        raw = named.get("te", positional[0] if positional else "1")
        try:
            weight = float(raw)
        except ValueError:
            raise ValueError(f"`{match.group(0)}`: the weight `{raw}` is not a number (e.g. `<{kind}:{name}:0.8>`).") from None
        found.append((name, weight))
    return found
