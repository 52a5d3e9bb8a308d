"""AUTOMATIC1111 / Forge / sdbot infotext: the prompt, `Negative prompt: ...`, and a last line of
`Key: value, ...` settings (as `generation.parameters.parse_infotext` reads it).

Our own images say `Version: sdbot ...` and carry `Job: N`. Where a text might be something else
(an EXIF or JPEG comment), it counts only with a settings line. Hires fix, variation seeds, VAE,
refiner, face restoration and LoRAs named in the prompt are noted, not carried over; ADetailer's
face, hand and person models are carried over as `--detail` (with its prompt and strength);
ControlNet units are given back as the /control command that applies them. A text over MAX_TEXT characters is cut, keeping its settings line."""

from __future__ import annotations

import re

from commands.pictures.metadata.limits import MAX_TEXT
from commands.pictures.metadata.result import ImageMetadata, Result
from commands.pictures.metadata.samplers import a1111_sampler
from commands.pictures.metadata.values import short, to_float, to_int
from generation.parameters import parse_infotext

_SETTINGS_KEYS = ("Steps", "Sampler", "Seed", "CFG scale", "Size", "Model")
_LORA = re.compile(r"<(lora|lyco):([^:>]+)(?::([^:>]*))?[^>]*>", re.I)
_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_WORD_RUN = re.compile(r"[\w \-/]+")  # what the key part of parse_infotext's pattern runs over
MAX_WORD_RUN = 1000
# A1111 keys worth a note: what they did is not carried over, so the image will differ
_NOT_CARRIED = {
    "Variation seed": "A variation seed ({value}) was mixed in; it is not carried over, so the image will differ.",
    "VAE": "VAE `{value}` is not carried over; pick one with `--vae` if it is available here.",
    "Refiner": "Refiner `{value}` is not carried over.",
    "Face restoration": "Face restoration ({value}) is not carried over.",
    "Operation": "It was made by `{value}` from another image; only the settings are carried over.",
}


_UNIT_FIELD = re.compile(r"\s*([\w ]+?):\s*([^,]*)(?:,|$)")
# A1111's preprocessor names -> our control types (generation.control.catalog)
_MODULE_TYPES = (
    ("lineart_anime", "lineart_anime"),
    ("lineart", "lineart"),
    ("canny", "canny"),
    ("depth", "depth"),
    ("openpose", "openpose"),
    ("dw_openpose", "openpose"),
    ("softedge", "softedge"),
    ("hed", "softedge"),
    ("pidinet", "softedge"),
    ("scribble", "scribble"),
    ("tile", "tile"),
    ("qr", "qr"),
)


def control_note(key: str, value: str) -> str:
    """A ControlNet unit of the settings (A1111's `ControlNet 0: "Module: canny, Model: …, Weight: …,
    Guidance Start: …, Guidance End: …"`), given back as the /control command that applies it:
    the control picture is not in the file, so a picture must be given with it."""
    fields = {name.strip(): field.strip() for name, field in _UNIT_FIELD.findall(value.strip().strip('"'))}
    module = fields.get("Module", "none").lower()
    type_ = next((t for prefix, t in _MODULE_TYPES if module.startswith(prefix)), None)
    if type_ is None:  # "none" (the picture is the map), or a preprocessor sdbot has no type for: the model says
        model = fields.get("Model", "").lower()
        type_ = next((t for prefix, t in _MODULE_TYPES if prefix in model), "TYPE")
    flags = []
    for name, flag in (("Weight", "--control-weight"), ("Guidance Start", "--start"), ("Guidance End", "--end")):
        number = to_float(fields.get(name))
        if number is not None and number != {"Weight": 1, "Guidance Start": 0, "Guidance End": 1}[name]:
            flags.append(f"{flag} {number:g}")
    mode = fields.get("Control Mode", "")
    if "prompt" in mode.lower():
        flags.append("--control-mode prompt")
    elif "controlnet" in mode.lower():
        flags.append("--control-mode control")
    if module == "none":
        flags.append("--pre none")
    command = " ".join([f"/control {type_} <prompt>", *flags])
    return (
        f"{key}: {short(fields.get('Module', '?'))} with {short(fields.get('Model', '?'))}. The control picture isn't in "
        f"the file; reply to one with `{command}` to steer by it."
    )


def reference_note(key: str, value: str) -> str:
    """An image reference of the settings (`IP-Adapter 0: "Type: style, Model: …, Weight: 250, …,
    Moodboard: autumn"`, as sdbot writes it), given back as the flags that repeat it: the reference
    pictures are not in the file, so they are named by the moodboard, or must be given again."""
    fields = {name.strip(): field.strip() for name, field in _UNIT_FIELD.findall(value.strip().strip('"'))}
    flag, weight_flag = ("--sref", "--sw") if fields.get("Type", "").lower() == "style" else ("--oref", "--ow")
    weight = to_float(fields.get("Weight"))
    weighed = f" {weight_flag} {weight:g}" if weight is not None and weight != 100 else ""
    board = fields.get("Moodboard")
    if board:
        return f"{key}: the moodboard `{short(board)}`; add `{flag} {short(board)}{weighed}` to draw with it again (if you have it)."
    return (
        f"{key}: a {'style' if flag == '--sref' else 'subject'} reference with {short(fields.get('Model', '?'))}. Its picture isn't in "
        f"the file; reply to one (or attach it) with `/imagine <prompt> {flag}{weighed}` to draw with it again."
    )


_ADETAILER_UNIT = re.compile(r"ADetailer model( \d+(?:st|nd|rd|th))?")
_ADETAILER_TARGETS = (("face", "face"), ("hand", "hand"), ("person", "person"))  # a word in the model's name -> --detail


def _adetailer(found: dict[str, str], out: Result) -> None:
    """ADetailer's units (`ADetailer model: face_yolov8n.pt`, `ADetailer model 2nd: hand_yolov8n.pt`,
    ... as ADetailer and sdbot write them) as `--detail face,hand`, with the first unit's prompt
    and denoising strength; a model that is none of these is noted."""
    targets = []
    for key in (k for k in found if _ADETAILER_UNIT.fullmatch(k)):
        model = found[key].lower()
        target = next((name for word, name in _ADETAILER_TARGETS if word in model), None)
        if target is None:
            out.note(f"ADetailer ({short(found[key])}) is not carried over: sdbot details faces, hands and people.")
        elif target not in targets:
            targets.append(target)
    if not targets:
        return
    out.options["detail"] = ",".join(targets)
    strength = to_float(found.get("ADetailer denoising strength"))
    if strength is not None and 0 < strength <= 1:
        out.options["detail_strength"] = strength
    if found.get("ADetailer prompt"):
        out.options["detail_prompt"] = found["ADetailer prompt"]


def from_infotext(text: str, notes: list[str], *, require_settings: bool) -> ImageMetadata | None:
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return None
    out = Result("a1111", text, notes)
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
        out.job_id = to_int(found.get("Job"))

    out.steps(found.get("Steps"))
    out.sampler(a1111_sampler(found.get("Sampler", ""), found.get("Schedule type", "")))
    # Forge and sdbot write FLUX.1's distilled guidance as "Distilled CFG Scale" (beside a CFG of 1).
    out.cfg(found.get("Distilled CFG Scale") or found.get("CFG scale"))
    out.seed(found.get("Seed"))
    size = _SIZE.match(found.get("Size", ""))
    if size:
        out.size(size[1], size[2])
    out.model(found.get("Model"))
    if "Clip skip" in found:
        clip_skip = to_int(found["Clip skip"])
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
        strength = to_float(found["Denoising strength"])
        if strength is not None and 0 < strength <= 1:
            out.options["strength"] = strength
            out.note("It was made from another image (img2img); its strength applies only when you give an image.")
    for key, template in _NOT_CARRIED.items():
        if found.get(key):
            out.note(template.format(value=short(found[key])))
    _adetailer(found, out)
    for key in sorted(k for k in found if re.fullmatch(r"ControlNet \d+", k)):
        out.note(control_note(key, found[key]))
    for key in sorted(k for k in found if re.fullmatch(r"IP-Adapter \d+", k)):
        out.note(reference_note(key, found[key]))
    if found.get("Edit pictures"):
        count = len(found["Edit pictures"].split(","))
        out.note(
            f"It is an edit of {count} picture{'s' if count > 1 else ''} by instruction; attach them to `/edit <instruction>` to edit again."
        )
    for match in _LORA.finditer(out.prompt):
        weight = f" (weight {match[3]})" if match[3] else ""
        out.note(f"{'LoRA' if match[1].lower() == 'lora' else 'LyCORIS'} `{match[2]}`{weight} is named in the prompt.")
    return out.build()
