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

Everything read is bounded (text size, graph size, link depth) and every malformed input ends as
None or partial data with a note; `read_metadata` never raises. PNG chunks are walked here rather
than through Pillow's `PngImageFile.text`, which decodes the whole image to find trailing chunks.

`ImageMetadata.options` holds raw values under the canonical option names of `commands.options`
(`steps`, `cfg`, `sampler`, `seed`, `size`, `clip_skip`, `model`, `strength`, `tile`), ready for
`read_options`, which still checks them against this bot's limits and models. The sampler is
always an A1111 name that `generation.samplers.find_sampler` knows, or left out with a note.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from commands.options import MAX_SEED
from generation.parameters import parse_infotext
from generation.samplers import find_sampler

log = logging.getLogger(__name__)

Source = Literal["sdbot", "a1111", "comfyui", "novelai"]

MAX_TEXT = 64 * 1024  # characters of prompt / infotext read (and kept in `raw`)
MAX_CHUNK = 1024 * 1024  # bytes of one metadata text (a ComfyUI workflow can be hundreds of KiB)
MAX_TEXT_CHUNKS = 64  # text chunks looked at in one PNG
MAX_NODES = 2000  # nodes of a ComfyUI graph read
MAX_DEPTH = 64  # links followed from one input
MAX_VISITS = 20_000  # node lookups in one graph, all walks together (a tangled DAG can branch exponentially)
MAX_SETTINGS = 100  # settings entries kept for display
MAX_VALUE = 1000  # characters of one displayed setting

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_USER_COMMENT, _EXIF_IFD = 0x9286, 0x8769


@dataclass(frozen=True)
class ImageMetadata:
    source: Source  # which tool wrote it (Forge counts as a1111)
    prompt: str
    negative: str
    settings: dict[str, str]  # what the image says, for display; A1111 key names where they exist
    options: dict[str, Any]  # canonical raw option values for commands.options.read_options
    notes: tuple[str, ...]  # what could not be carried over, for the user
    job_id: int | None  # ours: the `Job: N` of an sdbot image
    raw: str  # the text or JSON as found (at most MAX_TEXT characters)


def read_metadata(data: bytes) -> ImageMetadata | None:
    """The generation metadata in an image file's bytes (the upload as sent, not a re-encoded
    copy); None when it carries none."""
    try:
        fields, notes = _fields(data)
        return _interpret(fields, notes)
    except Exception:  # a file crafted to break a reader must never break the command
        log.warning("reading image metadata failed", exc_info=True)
        return None


# --- where the texts are: PNG chunks, EXIF ----------------------------------------------------


def _fields(data: bytes) -> tuple[dict[str, str], list[str]]:
    notes: list[str] = []
    if data[:8] == _PNG_SIGNATURE:
        return _png_fields(data, notes), notes
    return _exif_fields(data, notes), notes


def _png_fields(data: bytes, notes: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    seen = 0
    for kind, body in _png_chunks(data):
        if kind == b"eXIf":
            for key, value in _exif_texts(_load_exif(body), notes).items():
                fields.setdefault(key, value)
            continue
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        seen += 1
        if seen > MAX_TEXT_CHUNKS:
            _add(notes, f"The image has more than {MAX_TEXT_CHUNKS} text chunks; the rest are not read.")
            break
        item = _png_text(kind, body, notes)
        if item is not None:
            fields.setdefault(*item)
    return fields


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(type, data) of each chunk; IDAT is skipped over, never inflated. Stops at IEND or at the
    first truncated chunk."""
    view = memoryview(data)
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        start, end = pos + 8, pos + 8 + length
        if length > 2**31 - 1 or end > len(data):
            return
        if kind == b"IEND":
            return
        if kind != b"IDAT":
            yield kind, view[start:end]
        pos = end + 4  # and the CRC


def _png_text(kind: bytes, body: memoryview, notes: list[str]) -> tuple[str, str] | None:
    raw = bytes(body[: MAX_CHUNK + 200])
    key_bytes, sep, rest = raw.partition(b"\0")
    if not sep or not key_bytes:
        return None
    key = key_bytes.decode("latin-1")
    if len(body) - len(key_bytes) - 1 > MAX_CHUNK:
        _add(notes, f"The `{key}` text is {_mib(len(body))}; texts over {_mib(MAX_CHUNK)} are not read.")
        return None
    if kind == b"tEXt":
        return key, _decode_text(rest)
    if kind == b"zTXt":
        text = _inflate(rest[1:], key, notes)  # compression method byte, then zlib
        return None if text is None else (key, _decode_text(text))
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    if len(rest) < 2:
        return None
    compressed, rest = rest[0], rest[2:]
    _, _, rest = rest.partition(b"\0")
    _, _, text = rest.partition(b"\0")
    if compressed:
        inflated = _inflate(text, key, notes)
        if inflated is None:
            return None
        text = inflated
    return key, text.decode("utf-8", errors="replace")


def _inflate(data: bytes, key: str, notes: list[str]) -> bytes | None:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data, MAX_CHUNK + 1)
    except zlib.error:
        _add(notes, f"The compressed `{key}` text is damaged and was not read.")
        return None
    if len(text) > MAX_CHUNK or inflater.unconsumed_tail:
        _add(notes, f"The `{key}` text is over {_mib(MAX_CHUNK)} unpacked and was not read.")
        return None
    return text


def _decode_text(data: bytes) -> str:
    """tEXt is Latin-1 by the standard, but many writers put UTF-8 there."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _exif_fields(data: bytes, notes: list[str]) -> dict[str, str]:
    """EXIF of a JPEG or WebP (Pillow reads it from the header; no pixel is decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=["JPEG", "WEBP", "MPO"]) as image:
                exif = image.getexif()
                comment = image.info.get("comment")
                fields = _exif_texts(exif, notes)
    except Exception:  # not an image we read metadata from (or a damaged one)
        return {}
    if "parameters" not in fields and isinstance(comment, bytes) and comment:
        fields["jpeg comment"] = _decode_text(comment[:MAX_CHUNK])
    return fields


def _load_exif(body: memoryview) -> Image.Exif | None:
    exif = Image.Exif()
    try:
        exif.load(bytes(body[:MAX_CHUNK]))
    except Exception:
        return None
    return exif


def _exif_texts(exif: Image.Exif | None, notes: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    if exif is None:
        return fields
    try:
        comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:
        comment = None
    if comment is None:
        comment = exif.get(_USER_COMMENT)
    if comment is not None:
        text = _user_comment(comment)
        if text:
            fields["UserComment"] = text
    for value in list(exif.values())[:64]:  # ComfyUI's WebP saver: "prompt:{...}", "workflow:{...}"
        if isinstance(value, bytes):
            value = _decode_text(value[:MAX_CHUNK])
        if isinstance(value, str):
            key, sep, rest = value.partition(":")
            if sep and key in ("prompt", "workflow") and rest.lstrip().startswith("{"):
                fields.setdefault(key, rest.rstrip("\0"))
    return fields


def _user_comment(value: object) -> str:
    """EXIF UserComment: an 8-byte character code, then the text (A1111: UNICODE = UTF-16 BE)."""
    if isinstance(value, str):
        return value.strip("\0").strip()
    if not isinstance(value, bytes):
        return ""
    prefix, body = value[:8], value[8 : 8 + 2 * MAX_CHUNK]
    if prefix == b"UNICODE\0":
        text = _utf16(body)
    elif prefix in (b"ASCII\0\0\0", b"\0" * 8, b"JIS\0\0\0\0\0"):
        text = _decode_text(body)
    else:
        text = _decode_text(value[: 2 * MAX_CHUNK])
    return text.strip("\0").strip()


def _utf16(body: bytes) -> str:
    if body[:2] == b"\xfe\xff":
        return body[2:].decode("utf-16-be", errors="replace")
    if body[:2] == b"\xff\xfe":
        return body[2:].decode("utf-16-le", errors="replace")
    body = body[: len(body) // 2 * 2]
    # ASCII in UTF-16 BE has its zero bytes first; some writers use little-endian regardless
    little = body[1::2].count(0) > body[0::2].count(0)
    return body.decode("utf-16-le" if little else "utf-16-be", errors="replace")


# --- which tool wrote it ------------------------------------------------------------------------


def _interpret(fields: dict[str, str], notes: list[str]) -> ImageMetadata | None:
    parameters = fields.get("parameters", "")
    if parameters and _json_dict(parameters) is None:  # JSON here is another tool's (Fooocus)
        found = _from_infotext(parameters, notes, require_settings=False)
        if found is not None:
            if _is_json_object(fields.get("prompt")):
                note = "The image also carries a ComfyUI graph; its A1111-style parameters are shown."
                found = _with_note(found, note)
            return found
    if _is_json_object(fields.get("prompt")):
        found = _from_comfy(fields["prompt"], notes, api=True)
        if found.prompt or not _is_json_object(fields.get("workflow")):
            return found
        fallback = _from_comfy(fields["workflow"], list(found.notes), api=False)
        return fallback if fallback.prompt else found
    if fields.get("Software", "").strip().startswith("NovelAI") or _novelai_comment(fields.get("Comment")):
        return _from_novelai(fields, notes)
    if _is_json_object(fields.get("workflow")):
        return _from_comfy(fields["workflow"], notes, api=False)
    for key in ("UserComment", "jpeg comment", "Comment", "Description"):  # only with a settings line
        if key in fields:
            found = _from_infotext(fields[key], notes, require_settings=True)
            if found is not None:
                return found
    return None


def _is_json_object(text: str | None) -> bool:
    return bool(text) and text.lstrip().startswith("{")  # type: ignore[union-attr]


def _with_note(found: ImageMetadata, note: str) -> ImageMetadata:
    return ImageMetadata(
        found.source, found.prompt, found.negative, found.settings, found.options, (*found.notes, note),
        found.job_id, found.raw,
    )  # fmt: skip


class _Result:
    """An ImageMetadata under construction."""

    def __init__(self, source: Source, raw: str, notes: list[str]):
        self.source = source
        self.raw = raw[:MAX_TEXT]
        self.prompt = ""
        self.negative = ""
        self.settings: dict[str, str] = {}
        self.options: dict[str, Any] = {}
        self.notes = list(notes)
        self.job_id: int | None = None

    def note(self, text: str) -> None:
        _add(self.notes, text)

    def show(self, key: str, value: object) -> None:
        if value is None or value == "" or len(self.settings) >= MAX_SETTINGS:
            return
        text = _number_text(value) if isinstance(value, float) else str(value)
        self.settings[key] = text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"

    def steps(self, value: object) -> None:
        steps = _int(value)
        if steps is not None and steps >= 1:
            self.options["steps"] = steps
        elif value is not None:
            self.note(f"Steps `{_short(value)}` is not a step count; not carried over.")

    def cfg(self, value: object) -> None:
        cfg = _float(value)
        if cfg is not None:
            self.options["cfg"] = cfg
        elif value is not None:
            self.note(f"CFG scale `{_short(value)}` is not a number; not carried over.")

    def seed(self, value: object) -> None:
        seed = _int(value)
        if seed is not None and 0 <= seed <= MAX_SEED:
            self.options["seed"] = seed
        elif seed is not None and seed > MAX_SEED:
            self.note(f"Seed {seed} is above {MAX_SEED}, the largest seed here; a new seed is drawn.")
        elif value is not None and seed != -1:
            self.note(f"Seed `{_short(value)}` is not a seed; not carried over.")

    def size(self, width: object, height: object) -> None:
        w, h = _int(width), _int(height)
        if w is not None and h is not None and w > 0 and h > 0:
            self.options["size"] = f"{w}x{h}"

    def model(self, name: object) -> None:
        if isinstance(name, str) and name.strip():
            self.options["model"] = name.strip()

    def build(self) -> ImageMetadata:
        return ImageMetadata(
            source=self.source, prompt=self.prompt[:MAX_TEXT], negative=self.negative[:MAX_TEXT],
            settings=self.settings, options=self.options, notes=tuple(self.notes), job_id=self.job_id, raw=self.raw,
        )  # fmt: skip


# --- A1111 / Forge / sdbot ---------------------------------------------------------------------

_SETTINGS_KEYS = ("Steps", "Sampler", "Seed", "CFG scale", "Size", "Model")
_LORA = re.compile(r"<(lora|lyco):([^:>]+)(?::([^:>]*))?[^>]*>", re.I)
_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_WORD_RUN = re.compile(r"[\w \-/]+")  # what the key part of parse_infotext's pattern runs over
MAX_WORD_RUN = 1000
# Schedule types that are (close to) a sampler's own default schedule here
_PLAIN_SCHEDULES = {"", "automatic", "uniform", "normal", "simple", "default"}
# A1111 keys worth a note: what they did is not carried over, so the image will differ
_NOT_CARRIED = {
    "Variation seed": "A variation seed ({value}) was mixed in; it is not carried over, so the image will differ.",
    "VAE": "VAE `{value}` is not carried over; pick one with `--vae` if it is available here.",
    "Refiner": "Refiner `{value}` is not carried over.",
    "Face restoration": "Face restoration ({value}) is not carried over.",
    "ADetailer model": "ADetailer ({value}) is not carried over.",
    "Operation": "It was made by `{value}` from another image; only the settings are carried over.",
}


def _from_infotext(text: str, notes: list[str], *, require_settings: bool) -> ImageMetadata | None:
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return None
    out = _Result("a1111", text, notes)
    if len(text) > MAX_TEXT:
        out.note(f"The parameters text is {len(text):,} characters; only the first {MAX_TEXT:,} are read.")
        head, _, last = text.rpartition("\n")
        keep = len(last) if len(last) < MAX_TEXT // 4 else -1  # the settings line, if it is one
        text = text[:MAX_TEXT] if keep < 0 else head[: MAX_TEXT - keep - 1] + "\n" + last
    last = text.rsplit("\n", 1)[-1]
    try:
        # parse_infotext's settings pattern backtracks quadratically on long runs of words and
        # spaces (64 KiB of them: minutes); no real settings line has such a run
        if max(map(len, _WORD_RUN.findall(last)), default=0) > MAX_WORD_RUN:
            raise ValueError("no settings line")
        parsed = parse_infotext(text)
    except (ValueError, RecursionError):  # e.g. a quoted value that is not valid JSON
        parsed = {"Prompt": text, "Negative prompt": ""}
        if require_settings:
            return None
        if "Steps:" in last or "Seed:" in last:
            out.note("The settings line could not be read; all of the text is shown as the prompt.")
    found = {key: value.strip() for key, value in parsed.items() if key not in ("Prompt", "Negative prompt")}
    if require_settings and not any(key in found for key in _SETTINGS_KEYS):
        return None
    out.prompt, out.negative = parsed.get("Prompt", ""), parsed.get("Negative prompt", "")
    for key, value in found.items():
        out.show(key, value)
    if found.get("Version", "").startswith("sdbot"):
        out.source = "sdbot"
        out.job_id = _int(found.get("Job"))

    out.steps(found.get("Steps"))
    sampler, note = _a1111_sampler(found.get("Sampler", ""), found.get("Schedule type", ""))
    if sampler:
        out.options["sampler"] = sampler
    if note:
        out.note(note)
    out.cfg(found.get("CFG scale"))
    out.seed(found.get("Seed"))
    size = _SIZE.match(found.get("Size", ""))
    if size:
        out.size(size[1], size[2])
    out.model(found.get("Model"))
    if "Clip skip" in found:
        clip_skip = _int(found["Clip skip"])
        if clip_skip is not None and clip_skip >= 1:
            out.options["clip_skip"] = clip_skip
    if found.get("Tiling", "").lower() == "true":
        out.options["tile"] = True

    hires = [key for key in found if key.startswith("Hires")]
    if hires:
        what = ", ".join(f"{key} {found[key]}" for key in hires[:4])
        size = found.get("Size", "?")
        out.note(f"Hires fix ({what}) is not carried over: the image was drawn at {size} and upscaled.")
    elif "Denoising strength" in found:  # without hires fix, it is img2img's strength
        strength = _float(found["Denoising strength"])
        if strength is not None and 0 < strength <= 1:
            out.options["strength"] = strength
            out.note("It was made from another image (img2img); its strength applies only when you give an image.")
    for key, template in _NOT_CARRIED.items():
        if found.get(key):
            out.note(template.format(value=_short(found[key])))
    if any(key.startswith("ControlNet") for key in found):
        out.note("ControlNet guidance is not carried over.")
    for match in _LORA.finditer(out.prompt):
        weight = f" (weight {match[3]})" if match[3] else ""
        out.note(f"{'LoRA' if match[1].lower() == 'lora' else 'LyCORIS'} `{match[2]}`{weight} is named in the prompt.")
    return out.build()


def _a1111_sampler(name: str, schedule: str) -> tuple[str | None, str | None]:
    """A1111's Sampler (+ newer A1111's separate Schedule type) as one of our sampler names."""
    name, schedule = name.strip(), schedule.strip()
    if not name:
        return None, None
    base = find_sampler(name)
    if schedule.lower() not in _PLAIN_SCHEDULES:
        joined = find_sampler(f"{name} {schedule}")
        if joined is not None:
            return joined.name, None
        if base is not None and not base.name.lower().endswith(schedule.lower()):
            note = f"Schedule type `{_short(schedule)}` has no equal here for {base.name}; its default is used."
            return base.name, note
    if base is None:
        return None, f"Sampler `{_short(name)}` has no equal here; the default sampler is used."
    return base.name, None


# --- ComfyUI -----------------------------------------------------------------------------------

# ComfyUI sampler_name -> A1111 name. Used only where generation.samplers knows the name.
COMFY_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "lms": "LMS",
    "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a", "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
    "ddim": "DDIM", "uni_pc": "UniPC", "lcm": "LCM",
}  # fmt: skip
_COMFY_PLAIN_SCHEDULERS = {"normal", "simple", "ddim_uniform", "sgm_uniform"}
_SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_CONTROL = ("fixed", "increment", "decrement", "randomize")
_VALUE_KEYS = ("value", "text", "string", "seed", "noise_seed", "int", "float", "number", "Text", "STRING")
# string nodes that join their inputs: class -> prefix of the inputs joined (in name order)
_CONCAT = {"StringConcatenate": "string_", "Text Concatenate": "text_", "JoinStrings": "string"}


def comfy_sampler(sampler_name: str, scheduler: str) -> tuple[str | None, str | None]:
    """ComfyUI's sampler_name + scheduler as one of our sampler names (None: no equal), and a
    note on what was not carried over."""
    name, scheduler = sampler_name.strip(), scheduler.strip()
    target = COMFY_SAMPLERS.get(name.lower())
    base = find_sampler(target) if target else None
    if base is None:
        return None, f"ComfyUI sampler `{_short(name)}` has no equal here; the default sampler is used."
    if scheduler.lower() == "karras":
        karras = find_sampler(f"{base.name} Karras")
        if karras is not None:
            return karras.name, None
    if scheduler and scheduler.lower() not in _COMFY_PLAIN_SCHEDULERS:
        note = f"ComfyUI scheduler `{_short(scheduler)}` has no equal here for {base.name}; its default is used."
        return base.name, note
    return base.name, None


def _is_link(value: object) -> bool:
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool)
    )  # fmt: skip


class _Graph:
    """A ComfyUI API graph, walked defensively: every lookup may miss, every link may loop."""

    def __init__(self, nodes: dict[str, dict[str, Any]], out: _Result):
        self.nodes = nodes
        self.out = out
        self.visits = 0

    def node(self, link: object) -> tuple[str, str, dict[str, Any], int] | None:
        """(id, class, inputs, output index) of what `link` points at, through reroutes."""
        for _ in range(MAX_DEPTH):
            if not _is_link(link):
                return None
            self.visits += 1
            if self.visits > MAX_VISITS:
                self.out.note("The graph is too tangled to follow in full; some of it was not read.")
                return None
            node_id = str(link[0])  # type: ignore[index]
            node = self.nodes.get(node_id)
            if node is None:
                return None
            if node["class_type"] == "Reroute" and "input" in node["inputs"]:
                link = node["inputs"]["input"]
                continue
            return node_id, node["class_type"], node["inputs"], link[1]  # type: ignore[index]
        return None

    def _step(self, link: object, path: tuple[str, ...]) -> tuple[str, str, dict[str, Any], int] | None:
        """`node(link)` on a walk that has passed `path`: None where the walk would loop."""
        if len(path) > MAX_DEPTH:
            return None
        found = self.node(link)
        if found is not None and found[0] in path:
            self.out.note(f"The graph loops back to node {_short(found[0])}; the loop is not followed.")
            return None
        return found

    def value(self, raw: object, path: tuple[str, ...] = ()) -> Any:
        """A literal input, or the value of the primitive / string node it links to."""
        if not _is_link(raw):
            return raw
        found = self._step(raw, path)
        if found is None:
            return None
        node_id, cls, inputs, _ = found
        path = (*path, node_id)
        prefix = _CONCAT.get(cls)
        if prefix is not None:
            parts = [self.value(v, path) for k, v in sorted(inputs.items()) if k.startswith(prefix)]
            delimiter = self.value(inputs.get("delimiter", " "), path)
            delimiter = delimiter if isinstance(delimiter, str) else " "
            return delimiter.join(str(p) for p in parts if isinstance(p, (str, int, float)) and p != "")
        for key in _VALUE_KEYS:
            if key in inputs:
                return self.value(inputs[key], path)
        if len(inputs) == 1:
            return self.value(next(iter(inputs.values())), path)
        return None

    def text(self, raw: object) -> str:
        value = self.value(raw)
        return value if isinstance(value, str) else ""

    def conditioning(self, raw: object, path: tuple[str, ...] = ()) -> str:
        """The prompt text behind a conditioning input."""
        found = self._step(raw, path)
        if found is None:
            return ""
        node_id, cls, inputs, index = found
        path = (*path, node_id)
        note = self.out.note
        if cls == "CLIPTextEncodeSDXL" or ("text_g" in inputs and "text_l" in inputs):
            text_g, text_l = self.text(inputs.get("text_g")), self.text(inputs.get("text_l"))
            if text_l.strip() and text_l.strip() != text_g.strip():
                note(f"SDXL's second prompt (text_l) differs and is not carried over: `{_short(text_l)}`.")
            return text_g or text_l
        if cls == "CLIPTextEncodeFlux" or "t5xxl" in inputs:
            return self.text(inputs.get("t5xxl")) or self.text(inputs.get("clip_l"))
        if "text" in inputs and ("clip" in inputs or "TextEncode" in cls):
            return self.text(inputs["text"])
        if cls == "ConditioningZeroOut":
            return ""
        if cls == "ConditioningConcat":  # one prompt's chunks after the other's: A1111's BREAK
            parts = [self.conditioning(inputs.get(k), path) for k in ("conditioning_to", "conditioning_from")]
            return " BREAK ".join(p for p in parts if p)
        if cls in ("ConditioningCombine", "ConditioningAverage") or cls.startswith("ConditioningCombine"):
            keys = sorted(k for k in inputs if k.startswith("conditioning"))
            parts = [p for p in (self.conditioning(inputs[k], path) for k in keys) if p]
            if len(parts) > 1:
                note(f"The graph mixes {len(parts)} prompts ({cls}); they are joined with commas here.")
            return ", ".join(parts)
        if "positive" in inputs and "negative" in inputs:  # ControlNetApplyAdvanced and friends
            if "ControlNet" in cls:
                note("ControlNet guidance is not carried over.")
            else:
                note(f"`{_short(cls)}` is not carried over.")
            return self.conditioning(inputs["negative" if index == 1 else "positive"], path)
        for key in ("conditioning", "conditioning_to", "cond", "conditioning_1"):
            if key in inputs:
                if cls == "FluxGuidance":
                    self.out.show("Guidance", self.value(inputs.get("guidance")))
                elif cls.startswith(("ConditioningSetArea", "ConditioningSetMask")):
                    note(f"Area and mask conditioning (`{cls}`) is not carried over.")
                elif "ControlNet" in cls:
                    note("ControlNet guidance is not carried over.")
                elif cls != "ConditioningSetTimestepRange":
                    note(f"`{_short(cls)}` is not carried over.")
                return self.conditioning(inputs[key], path)
        text = inputs.get("text")
        if text is not None:
            return self.text(text)
        note(f"The prompt of node {node_id} (`{_short(cls)}`) could not be read.")
        return ""

    def clip_skip(self, raw: object) -> int | None:
        """Clip skip from the text encoder's clip input (CLIPSetLastLayer -2 = A1111's 2)."""
        found = self.node(raw)
        if found is None:
            return None
        _, cls, inputs, _ = found
        if cls not in ("CLIPTextEncode", "CLIPTextEncodeSDXL"):
            return None
        link = inputs.get("clip")
        for _ in range(MAX_DEPTH):
            found = self.node(link)
            if found is None:
                return None
            _, cls, inputs, _ = found
            if "stop_at_clip_layer" in inputs:
                layer = _int(self.value(inputs["stop_at_clip_layer"]))
                return -layer if layer is not None and layer < 0 else None
            link = inputs.get("clip")
        return None

    def model(self, raw: object) -> None:
        """The checkpoint behind a sampler's model input, and the LoRAs on the way."""
        loras: list[str] = []
        link = raw
        for _ in range(MAX_DEPTH):
            found = self.node(link)
            if found is None:
                break
            _, cls, inputs, _ = found
            if "ckpt_name" in inputs or "unet_name" in inputs:
                name = self.value(inputs.get("ckpt_name", inputs.get("unet_name")))
                if isinstance(name, str):
                    self.out.show("Model", name)
                    self.out.model(name)
                break
            if "lora_name" in inputs:
                if not inputs.get("_bypassed"):
                    name = self.value(inputs["lora_name"])
                    strength = _float(self.value(inputs.get("strength_model")))
                    shown = f"{name} ({_number_text(strength)})" if strength is not None else str(name)
                    loras.append(shown)
                    weight = f" (strength {_number_text(strength)})" if strength is not None else ""
                    self.out.note(f"LoRA `{name}`{weight} is applied by the graph; it is not carried over.")
            elif "model" in inputs and not cls.startswith("ModelSampling"):
                self.out.note(f"The model passes through `{_short(cls)}`, which is not carried over.")
            link = inputs.get("model")
        if loras:
            self.out.show("LoRAs", ", ".join(reversed(loras)))

    def latent(self, raw: object) -> tuple[str, str | None]:
        """Where a sampler's latent comes from: ("empty" | "image" | "sampler" | "?", size)."""
        link = raw
        for _ in range(MAX_DEPTH):
            found = self.node(link)
            if found is None:
                return "?", None
            _, cls, inputs, _ = found
            if cls in _SAMPLER_CLASSES or "sampler_name" in inputs:
                return "sampler", None
            if "width" in inputs and "height" in inputs and cls.startswith("Empty"):
                width, height = _int(self.value(inputs["width"])), _int(self.value(inputs["height"]))
                batch = _int(self.value(inputs.get("batch_size")))
                if batch and batch > 1:
                    self.out.show("Batch size", batch)
                size = f"{width}x{height}" if width and height else None
                return "empty", size
            if "pixels" in inputs or cls.startswith("VAEEncode"):
                return "image", None
            link = next((inputs[k] for k in ("samples", "latent", "latent_image", "input") if k in inputs), None)
        return "?", None


def _sampler_nodes(nodes: dict[str, dict[str, Any]]) -> list[str]:
    return [
        node_id for node_id, node in nodes.items()
        if not node["inputs"].get("_bypassed")
        and (node["class_type"] in _SAMPLER_CLASSES
             or {"positive", "negative", "latent_image", "sampler_name"} <= node["inputs"].keys())
    ]  # fmt: skip


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (2**63, node_id)


def _from_comfy(text: str, notes: list[str], *, api: bool) -> ImageMetadata:
    out = _Result("comfyui", text, notes)
    form = "graph" if api else "workflow"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        out.note(f"The image's ComfyUI {form} is not valid JSON; nothing could be read from it.")
        return out.build()
    if not api:
        out.note("Only ComfyUI's UI workflow is in the image (no API graph); settings are read from its node widgets.")
        data = _workflow_to_api(data, out)
    nodes = _api_nodes(data, out)
    if not nodes:
        out.note(f"The image's ComfyUI {form} has no nodes that could be read.")
        return out.build()
    graph = _Graph(nodes, out)
    samplers = _sampler_nodes(nodes)
    if not samplers:
        out.note(f"No sampler was found in the ComfyUI {form}.")
        return out.build()
    origins = {node_id: graph.latent(nodes[node_id]["inputs"].get("latent_image")) for node_id in samplers}
    samplers.sort(key=lambda node_id: (origins[node_id][0] == "sampler", _node_order(node_id)))
    if len(samplers) > 1:
        out.note(f"The graph has {len(samplers)} samplers; the first one's settings are shown.")
    first = samplers[0]
    _read_sampler(graph, nodes[first], origins[first], out)
    return out.build()


def _read_sampler(graph: _Graph, node: dict[str, Any], origin: tuple[str, str | None], out: _Result) -> None:
    inputs = node["inputs"]
    value = graph.value
    positive, negative = inputs.get("positive"), inputs.get("negative")
    model, cfg = inputs.get("model"), inputs.get("cfg")
    seed = inputs.get("seed", inputs.get("noise_seed"))
    steps, denoise = inputs.get("steps"), inputs.get("denoise")
    sampler_name, scheduler = inputs.get("sampler_name"), inputs.get("scheduler")

    guider = graph.node(inputs.get("guider"))  # SamplerCustomAdvanced
    if guider is not None:
        g = guider[2]
        model, cfg = g.get("model"), g.get("cfg", 1.0)
        positive, negative = g.get("positive", g.get("conditioning")), g.get("negative")
    noise = graph.node(inputs.get("noise"))
    if noise is not None:
        seed = noise[2].get("noise_seed")
    picked = graph.node(inputs.get("sampler"))  # KSamplerSelect
    if picked is not None:
        sampler_name = picked[2].get("sampler_name")
    sigmas = graph.node(inputs.get("sigmas"))  # BasicScheduler, KarrasScheduler, ...
    if sigmas is not None:
        cls, s = sigmas[1], sigmas[2]
        steps, denoise = s.get("steps"), s.get("denoise", denoise)
        scheduler = s.get("scheduler", "karras" if cls == "KarrasScheduler" else cls)

    out.prompt = graph.conditioning(positive)
    out.negative = graph.conditioning(negative)
    steps, cfg, seed, denoise = value(steps), value(cfg), value(seed), value(denoise)
    sampler_name, scheduler = value(sampler_name), value(scheduler)
    out.show("Steps", steps)
    out.show("Sampler", sampler_name)
    out.show("Schedule type", scheduler)
    out.show("CFG scale", _float(cfg))
    out.show("Seed", seed)
    if steps is not None:
        out.steps(steps)
    if cfg is not None:
        out.cfg(cfg)
    if seed is not None:
        out.seed(seed)
    if isinstance(sampler_name, str):
        name, note = comfy_sampler(sampler_name, scheduler if isinstance(scheduler, str) else "")
        if name:
            out.options["sampler"] = name
        if note:
            out.note(note)
    kind, size = origin
    if size:
        out.show("Size", size)
        out.options["size"] = size
    graph.model(model)
    clip_skip = graph.clip_skip(positive)
    if clip_skip:
        out.show("Clip skip", clip_skip)
        out.options["clip_skip"] = clip_skip
    strength = _float(denoise)
    if strength is not None and strength < 1:
        out.show("Denoising strength", strength)
        if kind == "image" and strength > 0:
            out.options["strength"] = strength
            out.note("It was made from another image (img2img); its strength applies only when you give an image.")
    if node["class_type"] == "KSamplerAdvanced":
        start, end = _int(value(inputs.get("start_at_step"))), _int(value(inputs.get("end_at_step")))
        total = _int(steps)
        if (start or 0) > 0 or (end is not None and total is not None and end < total):
            out.note(f"This sampler runs only steps {start or 0} to {min(end or 0, total or 0)} of {total}.")


def _api_nodes(data: object, out: _Result) -> dict[str, dict[str, Any]]:
    """The well-formed nodes of an API graph, at most MAX_NODES of them."""
    if not isinstance(data, dict):
        return {}
    if len(data) > MAX_NODES:
        out.note(f"The graph has {len(data):,} nodes; only the first {MAX_NODES:,} are read.")
    nodes: dict[str, dict[str, Any]] = {}
    for node_id, node in list(data.items())[:MAX_NODES]:
        if not isinstance(node, dict):
            continue
        cls, inputs = node.get("class_type"), node.get("inputs")
        if isinstance(cls, str) and isinstance(inputs, dict):
            nodes[str(node_id)] = {"class_type": cls, "inputs": inputs}
    return nodes


# The UI workflow stores widget values by position; these are the positions of the core nodes.
# None is the "control after generate" value that follows a seed widget.
WIDGETS: dict[str, tuple[str | None, ...]] = {
    "KSampler": ("seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": ("add_noise", "noise_seed", None, "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"),
    "SamplerCustom": ("add_noise", "noise_seed", None, "cfg"),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("ascore", "width", "height", "text"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "KarrasScheduler": ("steps", "sigma_max", "sigma_min", "rho"),
    "RandomNoise": ("noise_seed", None),
    "CFGGuider": ("cfg",),
    "FluxGuidance": ("guidance",),
    "PrimitiveNode": ("value", None),
    "PrimitiveInt": ("value", None),
    "PrimitiveFloat": ("value",),
    "PrimitiveString": ("value",),
    "PrimitiveStringMultiline": ("value",),
}  # fmt: skip


def _workflow_to_api(data: object, out: _Result) -> dict[str, dict[str, Any]]:
    """A UI workflow as an API-like graph: linked inputs become [node, slot], known widgets
    become named inputs. Muted and bypassed nodes are marked `_bypassed`."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return {}
    sources: dict[int, list[Any]] = {}
    links = data.get("links")
    for link in links[: MAX_NODES * 8] if isinstance(links, list) else []:
        if isinstance(link, list) and len(link) >= 3 and isinstance(link[0], int):
            sources[link[0]] = [link[1], link[2]]
        elif isinstance(link, dict) and isinstance(link.get("id"), int):
            sources[link["id"]] = [link.get("origin_id"), link.get("origin_slot")]
    nodes = data["nodes"]
    if len(nodes) > MAX_NODES:
        out.note(f"The workflow has {len(nodes):,} nodes; only the first {MAX_NODES:,} are read.")
    graph: dict[str, dict[str, Any]] = {}
    for node in nodes[:MAX_NODES]:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str) or not _is_id(node.get("id")):
            continue
        cls = node["type"]
        inputs: dict[str, Any] = _widgets(cls, node.get("widgets_values"))
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and isinstance(slot.get("link"), int) and slot["link"] in sources:
                name = slot.get("name") if cls != "Reroute" else "input"
                if isinstance(name, str):
                    inputs[name] = sources[slot["link"]]
        if node.get("mode") in (2, 4):
            inputs["_bypassed"] = True
        graph[str(node["id"])] = {"class_type": cls, "inputs": inputs}
    return graph


def _is_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _widgets(cls: str, values: object) -> dict[str, Any]:
    names = WIDGETS.get(cls)
    if names is None or not isinstance(values, list):
        return {}
    if len(values) != len(names) or any(n is None and values[i] not in _CONTROL for i, n in enumerate(names)):
        names = tuple(n for n in names if n is not None)  # saved without control values
        if len(values) < len(names):
            return {}
    return {name: value for name, value in zip(names, values, strict=False) if name is not None}


# --- NovelAI -----------------------------------------------------------------------------------

NOVELAI_SAMPLERS = {
    "k_euler": "Euler", "k_euler_ancestral": "Euler a", "k_heun": "Heun", "k_lms": "LMS",
    "k_dpm_2": "DPM2", "k_dpm_2_ancestral": "DPM2 a", "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_2s_ancestral": "DPM++ 2S a", "k_dpmpp_sde": "DPM++ SDE", "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "k_dpm_fast": "DPM fast", "k_dpm_adaptive": "DPM adaptive", "ddim": "DDIM", "ddim_v3": "DDIM",
}  # fmt: skip


def _novelai_comment(text: str | None) -> bool:
    data = _json_dict(text)
    return data is not None and "uc" in data and "sampler" in data


def _json_dict(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _from_novelai(fields: dict[str, str], notes: list[str]) -> ImageMetadata:
    comment = fields.get("Comment", "")
    out = _Result("novelai", comment or fields.get("Description", ""), notes)
    data = _json_dict(comment)
    if data is None:
        data = {}
        out.note("NovelAI's settings (the `Comment` text) could not be read; only the prompt is shown.")
    prompt = data.get("prompt")
    out.prompt = prompt if isinstance(prompt, str) else fields.get("Description", "")
    negative = data.get("uc")
    out.negative = negative if isinstance(negative, str) else ""
    v4 = data.get("v4_prompt")
    captions = v4.get("caption") if isinstance(v4, dict) else None
    characters = captions.get("char_captions") if isinstance(captions, dict) else None
    if isinstance(characters, list) and characters:
        out.note(f"NovelAI's {len(characters)} character prompt(s) are not carried over.")

    steps, scale, seed = data.get("steps"), data.get("scale"), data.get("seed")
    sampler, schedule = data.get("sampler"), data.get("noise_schedule")
    width, height = data.get("width"), data.get("height")
    out.show("Steps", steps)
    out.show("Sampler", sampler)
    out.show("Schedule type", schedule)
    out.show("CFG scale", _float(scale))
    out.show("Seed", seed)
    if _int(width) and _int(height):
        out.show("Size", f"{_int(width)}x{_int(height)}")
        out.size(width, height)
    model = fields.get("Source", "").strip()
    out.show("Model", model)
    if model:
        out.note(f"NovelAI's model (`{_short(model)}`) exists only there; the model here is used.")
    if steps is not None:
        out.steps(steps)
    if scale is not None:
        out.cfg(scale)
    if seed is not None:
        out.seed(seed)
    if isinstance(sampler, str):
        name, note = _novelai_sampler(sampler, schedule if isinstance(schedule, str) else "")
        if name:
            out.options["sampler"] = name
        if note:
            out.note(note)
    rescale = _float(data.get("cfg_rescale"))
    if rescale:
        out.show("CFG rescale", rescale)
        out.note(f"CFG rescale ({_number_text(rescale)}) is not carried over.")
    if data.get("sm") or data.get("sm_dyn"):
        out.show("SMEA", "DYN" if data.get("sm_dyn") else "on")
        out.note("NovelAI's SMEA is not carried over.")
    if "img2img" in str(data.get("request_type", "")).lower():
        strength = _float(data.get("strength"))
        if strength is not None and 0 < strength <= 1:
            out.show("Denoising strength", strength)
            out.options["strength"] = strength
            out.note("It was made from another image (img2img); its strength applies only when you give an image.")
    return out.build()


def _novelai_sampler(sampler: str, schedule: str) -> tuple[str | None, str | None]:
    target = NOVELAI_SAMPLERS.get(sampler.strip().lower())
    base = find_sampler(target) if target else None
    if base is None:
        return None, f"NovelAI sampler `{_short(sampler)}` has no equal here; the default sampler is used."
    schedule = schedule.strip().lower()
    if schedule == "karras":
        karras = find_sampler(f"{base.name} Karras")
        if karras is not None:
            return karras.name, None
    if schedule and schedule != "native":
        note = f"NovelAI's `{_short(schedule)}` noise schedule has no equal here for {base.name}; its default is used."
        return base.name, note
    return base.name, None


# --- small helpers ------------------------------------------------------------------------------


def _add(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def _int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,30}\s*", value):
        return int(value)
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and len(value) < 40:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _number_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _short(value: object, limit: int = 60) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"
