"""Generation metadata inside images people send, for `/describe` ("what made this picture?").

Torch-free. Reads, without decoding a single pixel:

- AUTOMATIC1111 / Forge / sdbot: the PNG `parameters` text chunk, or the EXIF UserComment of a
  JPEG or WebP (`UNICODE\\0` + UTF-16, or `ASCII\\0\\0\\0` + text, as A1111 writes it with piexif).
  Our own images say `Version: sdbot ...` and carry `Job: N`.
- ComfyUI: the PNG `prompt` chunk (the API graph `{node_id: {"class_type", "inputs"}}`, links
  `[node_id, output_index]`), walked from the sampler back to its prompts, model and latent; or,
  when only the `workflow` chunk (the UI graph) is there, the same walk over that graph's widgets.
  ComfyUI's WebP saver puts `prompt:{...}` / `workflow:{...}` into EXIF tags; those are read too.
- NovelAI: PNG `Software: NovelAI`, `Description` (the prompt) and `Comment` (JSON settings).

Which wins, where an image carries several: A1111's `parameters` text (unless it is JSON, another
tool's), with a note if a ComfyUI graph is there too; then ComfyUI's API graph (its UI workflow is
tried when the graph yields no prompt); then NovelAI; then a ComfyUI UI workflow alone; last an
EXIF UserComment, JPEG comment, `Comment` or `Description`, and those only with a settings line.

Everything read is bounded (text size, graph size, link depth: `limits`) and every malformed input
ends as None or partial data with a note; `read_metadata` never raises. PNG chunks are walked (in
`containers`) rather than through Pillow's `PngImageFile.text`, which decodes the whole image to
find trailing chunks.

`ImageMetadata.options` holds raw values under the canonical option names of `commands.jobs.options`
(`steps`, `cfg`, `sampler`, `seed`, `size`, `clip_skip`, `model`, `strength`, `tile`), ready for
`read_options`, which still checks them against this bot's limits and models. The sampler is
always an A1111 name that `generation.models.samplers.find_sampler` knows, or left out with a note.

The modules: `containers` (PNG chunks, EXIF: the texts), `a1111`, `comfyui` (with
`comfyui_graph` and `comfyui_workflow`) and `novelai` (one reader each), `samplers` (other tools'
sampler names as ours), `result` (`ImageMetadata` and its builder), `limits`, `values` (helpers).
"""

from __future__ import annotations

import logging

from commands.pictures.metadata.a1111 import MAX_WORD_RUN, from_infotext
from commands.pictures.metadata.comfyui import from_comfy
from commands.pictures.metadata.comfyui_workflow import WIDGETS
from commands.pictures.metadata.containers import read_fields
from commands.pictures.metadata.limits import (
    MAX_CHUNK,
    MAX_DEPTH,
    MAX_NODES,
    MAX_SETTINGS,
    MAX_TEXT,
    MAX_TEXT_CHUNKS,
    MAX_VALUE,
    MAX_VISITS,
)
from commands.pictures.metadata.novelai import from_novelai, is_novelai_comment
from commands.pictures.metadata.result import ImageMetadata, Source, with_note
from commands.pictures.metadata.samplers import COMFY_SAMPLERS, NOVELAI_SAMPLERS, comfy_sampler
from commands.pictures.metadata.values import json_dict

__all__ = [
    "COMFY_SAMPLERS",
    "MAX_CHUNK",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SETTINGS",
    "MAX_TEXT",
    "MAX_TEXT_CHUNKS",
    "MAX_VALUE",
    "MAX_VISITS",
    "MAX_WORD_RUN",
    "NOVELAI_SAMPLERS",
    "WIDGETS",
    "ImageMetadata",
    "Source",
    "comfy_sampler",
    "read_metadata",
]

log = logging.getLogger(__name__)


def read_metadata(data: bytes) -> ImageMetadata | None:
    """The generation metadata in an image file's bytes (the upload as sent, not a re-encoded
    copy); None when it carries none."""
    try:
        fields, notes = read_fields(data)
        return _interpret(fields, notes)
    except Exception:  # a file crafted to break a reader must never break the command
        log.warning("reading image metadata failed", exc_info=True)
        return None


def _interpret(fields: dict[str, str], notes: list[str]) -> ImageMetadata | None:
    parameters = fields.get("parameters", "")
    if parameters and json_dict(parameters) is None:  # JSON here is another tool's (Fooocus)
        found = from_infotext(parameters, notes, require_settings=False)
        if found is not None:
            if _is_json_object(fields.get("prompt")):
                note = "The image also carries a ComfyUI graph; its A1111-style parameters are shown."
                found = with_note(found, note)
            return found
    if _is_json_object(fields.get("prompt")):
        found = from_comfy(fields["prompt"], notes, api=True)
        if found.prompt or not _is_json_object(fields.get("workflow")):
            return found
        fallback = from_comfy(fields["workflow"], list(found.notes), api=False)
        return fallback if fallback.prompt else found
    if fields.get("Software", "").strip().startswith("NovelAI") or is_novelai_comment(fields.get("Comment")):
        return from_novelai(fields, notes)
    if _is_json_object(fields.get("workflow")):
        return from_comfy(fields["workflow"], notes, api=False)
    for key in ("UserComment", "jpeg comment", "Comment", "Description"):  # only with a settings line
        if key in fields:
            found = from_infotext(fields[key], notes, require_settings=True)
            if found is not None:
                return found
    return None


def _is_json_object(text: str | None) -> bool:
    return bool(text) and text.lstrip().startswith("{")  # type: ignore[union-attr]
