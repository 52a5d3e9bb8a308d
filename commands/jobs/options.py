"""Checking what a user asked for, and turning it into a GenerationSpec.

One path for every platform: text flags (`commands.frame.parser`) and structured options (Discord's
typed slash-command options) both arrive here as a mapping of canonical names to raw values.
Every bound comes from the settings; out of bounds is an error that names the limit, never a
silent clamp. Sizes the bot derives itself (from an aspect ratio or an init image) are fitted to
the limits, and the reply says so.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from commands.frame.declare import INVALID, SWITCH_WORDS, Option, aliases, check
from commands.frame.errors import UserError
from commands.frame.numbers import check_number, options_first, quoted, read_float
from commands.frame.parser import flag_name
from config import ModelEntry, ModelRegistry, Settings
from generation.models.families import CACHE_CHOICES, CACHES, Family, family
from generation.models.samplers import find_sampler, sampler_names, unavailable_reason
from generation.spec import DETAIL_STRENGTH as DETAIL_STRENGTH_DEFAULT
from generation.spec import MAX_REFERENCE_WEIGHT, DetailSpec, GenerationSpec

MAX_STYLES_PER_JOB = 5
MAX_LORA_WEIGHT = 5.0  # A1111 takes any weight; past ±5 a LoRA only burns the picture
MAX_ASPECT = 4.0  # widest --ar accepted, either way (4:1 .. 1:4)
MAX_SEED = 2**32 - 1
SD_ONLY = "SD 1.x/2.x and SDXL models"  # what the options FLUX.1 and Chroma refuse apply to
MAX_CLIP_SKIP = 12  # CLIP's text encoders have 12 layers (SD 1.x; SDXL's second has more, A1111 caps the same)

# The drawing options of /imagine, declared once; other drawing commands take a selection of them
# (`drawing_options`). The checks that need more than bounds are `_Checker`'s methods of their name.
NEGATIVE = Option(
    "no",
    "text",
    "What to leave out (negative prompt)",
    aliases=("neg", "negative"),
    example="blurry, text",
    slash="negative",
    applies="not on FLUX.1 (guidance-distilled)",
)
ASPECT = Option(
    "ar", "text", "Aspect ratio W:H, from 1:4 to 4:1, e.g. 3:2 (not with --size)", aliases=("aspect",), example="3:2", slash="aspect"
)
SIZE = Option(
    "size",
    "text",
    "Width x height in pixels, multiples of 8",
    example="768x512",
    applies=lambda s: f"sides {s.min_side}–{s.max_side}, at most {s.max_pixels:,} pixels",
)
SEED = Option("seed", "int", "Seed; image i of a batch uses seed + i; -1 is random", bounds=(-1, MAX_SEED), default="random", example="42")
STEPS = Option(
    "steps", "int", "Sampling steps", bounds=lambda s: (1, s.max_steps), default=lambda s: s.steps_for(s.registry().default), example="30"
)
CFG = Option(
    "cfg",
    "float",
    "Guidance scale: how closely to follow the prompt",
    aliases=("cfg-scale", "scale"),
    bounds=lambda s: (s.min_cfg, s.max_cfg),
    default=lambda s: s.default_cfg,
    example="7",
    applies="on FLUX.1 the distilled guidance (default 3.5; none on schnell), on Chroma CFG 4 by default",
)
SAMPLER = Option(
    "sampler",
    "choice",
    "Sampler (snake_case works too: euler_a, dpmpp_2m_karras)",
    choices=lambda s: tuple(sampler_names()),
    default=lambda s: s.default_sampler,
    example="euler_a",
    applies="FLUX.1 and Chroma draw with Euler (flow matching)",
)
COUNT = Option(
    "n", "int", "Pictures in the job", aliases=("batch",), bounds=lambda s: (1, s.max_batch), default=lambda s: s.default_n, example="4"
)
MODEL = Option("model", "text", "A configured model (see /models)", default="yours, or the bot's", example="tiny", autocomplete="models")
STRENGTH = Option(
    "strength",
    "float",
    "How much the picture may change",
    aliases=("denoise",),
    bounds=(0.01, 1),
    default=lambda s: s.default_strength,
    example="0.6",
    applies="with a picture to start from",
)
# Midjourney's image weight for an image prompt: how much the picture counts against the prompt.
# It is the strength said the other way round: iw 1 is the default strength d, each further 1 keeps
# (1 - d) more of the picture: strength = 1 - (1 - d) * iw, at least MIN_IW_STRENGTH.
IW = Option(
    "iw",
    "float",
    "Image weight (Midjourney's): how much the picture you start from counts. 1: the default strength; 2: twice as close",
    bounds=(0, 3),
    default=1,
    example="2",
    applies="with a picture to start from; instead of --strength",
)
MIN_IW_STRENGTH = 0.05


def iw_strength(iw: float, default_strength: float) -> float:
    """The strength an image weight means (see IW)."""
    return max(MIN_IW_STRENGTH, min(1.0, 1 - (1 - default_strength) * iw))


TILE = Option(
    "tile", "switch", "A seamless texture (repeats without seams)", aliases=("tiling", "seamless"), default=False, applies=SD_ONLY
)
CLIP_SKIP = Option(
    "clip_skip",
    "int",
    "CLIP layers to skip from the end (A1111's count: 1 = the last)",
    bounds=(1, MAX_CLIP_SKIP),
    example="2",
    applies=SD_ONLY,
)
VAE = Option("vae", "text", "A configured VAE instead of the model's own", default="the model's", example="default", applies=SD_ONLY)
STYLE = Option(
    "style",
    "text",
    f"Styles from /styles, applied in order (up to {MAX_STYLES_PER_JOB}), e.g. anime,cinematic",
    aliases=("styles",),
    example="cinematic",
    repeatable=True,
)
REGIONS = Option(
    "regions",
    "text",
    "Regions: cols, rows, 1,2 or 1,2;1,1 — the prompt's parts split by BREAK",
    aliases=("region",),
    example="cols",
    applies=SD_ONLY,
)
BASE_RATIO = Option(
    "base_ratio",
    "float",
    "With regions: how much of the ADDBASE prompt goes everywhere",
    aliases=("baseratio",),
    bounds=(0, 1),
    default=0.2,
    example="0.2",
)
LORAS = Option(
    "lora",
    "text",
    f"Your LoRAs with weights (±{MAX_LORA_WEIGHT:g}), e.g. fox:0.8, owl (or <lora:fox:0.8> in the prompt)",
    aliases=("loras",),
    example="fox:0.8",
    repeatable=True,
)
# Image references (Midjourney's --sref / --oref with --sw / --ow) through an IP-Adapter
# (generation.control.ip_adapters; FLUX.1's IP-Adapter or Redux: generation.control.flux_references);
# the pictures are found by commands.jobs.sources.find_references.
REFERENCE_APPLIES = (
    "SD 1.x/2.x and SDXL with an IP-Adapter; FLUX.1 with its IP-Adapter, or Redux for --oref (on `tiny` and `tiny-flux`: built in); "
    "FLUX.2 Klein and Qwen-Image-Edit-Plus read the pictures themselves, without a weight"
)
NO_REFERENCE = "none"  # `--sref none`: no style reference (not the default moodboard, nor a remixed picture's)
SREF = Option(
    "sref",
    "text",
    "Style reference: draw in the style of a picture. Alone, the picture replied to or attached; a moodboard's name; the id of a "
    "message with my picture; none: no style reference (not your default moodboard)",
    example="b3",
    applies=REFERENCE_APPLIES,
)
OREF = Option(
    "oref",
    "text",
    "Subject reference: draw what a picture shows. Alone, the picture replied to or attached; a moodboard's name; or the id "
    "of a message with my picture",
    example="b3",
    applies=REFERENCE_APPLIES,
)
SW = Option(
    "sw",
    "int",
    "Style reference weight (100: IP-Adapter scale 1 on the style layers; FLUX.1: scale 0.35 on every block)",
    bounds=(0, MAX_REFERENCE_WEIGHT),
    default=100,
    example="250",
    applies="with --sref",
)
OW = Option(
    "ow",
    "int",
    "Subject reference weight (100: IP-Adapter scale 0.6; FLUX.1: 0.7, or Redux's picture tokens x1)",
    bounds=(0, MAX_REFERENCE_WEIGHT),
    default=100,
    example="50",
    applies="with --oref",
)
# Several pictures for one request (/blend, /moodboard save): messages by id, and files (Discord's
# slash commands take one file per option; chats attach them all to the message).
IMAGES = Option(
    "images",
    "text",
    "Ids of messages with my pictures, separated by commas (besides pictures attached or replied to)",
    example="b3,b5",
)


# ADetailer (`--detail`): faces, hands or people found after drawing and repainted at the model's
# native size (generation.jobs.detail); the Detail button and /detail do the same to a picture
# (commands.pictures.detail).
DETAIL_WORDS = {"face": "face", "faces": "face", "hand": "hand", "hands": "hand", "person": "person", "people": "person"}
DETAIL = Option(
    "detail",
    "text",
    "Repaint what is found at full resolution after drawing (ADetailer): face, hand or person, several with commas; off: none",
    example="face",
    applies="models that can inpaint; hand needs SDBOT_HAND_DETECTOR",
)
DETAIL_PROMPT = Option(
    "detail_prompt",
    "text",
    "The prompt the detailed regions are repainted with",
    aliases=("ad_prompt",),
    default="the picture's prompt",
    example="a smiling face, detailed eyes",
    applies="with --detail",
)
DETAIL_STRENGTH = Option(
    "detail_strength",
    "float",
    "How much each detailed region may change (ADetailer's denoising strength)",
    aliases=("ad_strength",),
    bounds=(0.01, 1),
    default=DETAIL_STRENGTH_DEFAULT,
    example="0.5",
    applies="with --detail",
)


# Midjourney's draft mode (`--draft`): the model family's fast path at half the size, with an Enhance
# button that draws the picture in full (commands.explore.draft; the paths: SDBOT_DRAFT).
DRAFT = Option(
    "draft",
    "switch",
    "A fast draft at half the size, by the model family's fast path (a few-step LoRA or distilled model); "
    "Enhance under it draws it in full, same seed and prompt (--steps, --cfg and --sampler are Enhance's)",
    default=False,
    applies="from a prompt, not with a picture",
)


# Midjourney's --chaos: each picture of a job draws with its own variation of the CFG and of the
# order of the prompt's parts, from its own seed (generation.prompts.chaos); 0 changes nothing.
CHAOS = Option(
    "chaos",
    "int",
    "How much the pictures of a grid differ: each lowers its CFG (to half at 100) and may reorder the prompt's "
    "comma-separated parts after the first, from its own seed",
    aliases=("c",),
    bounds=(0, 100),
    default=0,
    example="50",
)


# A cache accelerator for this job (generation.models.families.base.CACHES): `--fast` alone is the
# model family's own; SDBOT_CACHE and a model's `cache` set what a job gets without it.
FAST = Option(
    "fast",
    "choice",
    "Draw faster by reusing work between steps (a cache accelerator), at a small change in the picture: `on` is the "
    "model family's own cache, or name one (fbc, taylorseer, magcache, pab on DiTs; deepcache on SD)",
    aliases=("cache",),
    choices=CACHE_CHOICES,
    default=lambda s: s.cache,
    example="on",
)


def picture_files(count: int, what: str) -> tuple[Option, ...]:
    """`image`, `image2`, ... `image<count>`: the files of a command that takes several pictures."""
    return tuple(Option("image" if n == 1 else f"image{n}", "file", f"{what} {n}") for n in range(1, count + 1))


def message_ids(text: str | None) -> list[str]:
    """The message ids of `--images` (commas or spaces between them)."""
    return [part for part in re.split(r"[,\s]+", text or "") if part]


IMAGINE_OPTIONS: tuple[Option, ...] = (
    NEGATIVE,
    ASPECT,
    SIZE,
    SEED,
    STEPS,
    CFG,
    SAMPLER,
    COUNT,
    MODEL,
    STRENGTH,
    IW,
    TILE,
    CLIP_SKIP,
    VAE,
    STYLE,
    REGIONS,
    BASE_RATIO,
    LORAS,
    SREF,
    OREF,
    SW,
    OW,
    DRAFT,
    DETAIL,
    DETAIL_PROMPT,
    DETAIL_STRENGTH,
    CHAOS,
    FAST,
)
IMAGINE_FLAGS = aliases(IMAGINE_OPTIONS)  # accepted spelling -> canonical name


def drawing_options(*names: str) -> tuple[Option, ...]:
    """The drawing options named, in /imagine's order (a command that takes some of them)."""
    unknown = set(names) - {option.name for option in IMAGINE_OPTIONS}
    assert not unknown, unknown
    return tuple(option for option in IMAGINE_OPTIONS if option.name in names)


SETTINGS_KEYS = ("model", "size", "ar", "steps", "cfg", "sampler", "no", "n", "vae", "clip_skip")
SETTINGS_FLAGS = {k: v for k, v in IMAGINE_FLAGS.items() if v in SETTINGS_KEYS}
# ASCII digits only (`\d` takes every script's digits), and not more than a size can have.
_SIZE = re.compile(r"^\s*([0-9]{1,6})\s*[x×X*]\s*([0-9]{1,6})\s*$")
_RATIO = re.compile(r"^\s*([0-9]{1,6}(?:\.[0-9]{1,6})?)\s*:\s*([0-9]{1,6}(?:\.[0-9]{1,6})?)\s*$")


@dataclass(frozen=True)
class ImagineOptions:
    """Checked options. None means "not given": defaults are applied by `build_spec`."""

    prompt: str = ""
    negative: str | None = None
    size: tuple[int, int] | None = None
    ar: tuple[float, float] | None = None
    seed: int | None = None  # -1 was turned into None (random)
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None  # canonical A1111 name
    n: int | None = None
    model: str | None = None  # registry display name
    strength: float | None = None
    iw: float | None = None  # --iw: the strength said as Midjourney's image weight (iw_strength)
    tile: bool | None = None  # seamless texture
    clip_skip: int | None = None  # A1111's count: 1 = the last layer
    vae: str | None = None  # a `vaes` name, or "default" for the model's own
    styles: tuple[str, ...] | None = None  # names, lower case; checked against the library on submit
    regions: str | None = None  # a region layout (generation.prompts.region_layout), checked for syntax here
    base_ratio: float | None = None
    loras: tuple[tuple[str, float], ...] | None = None  # --lora NAME:WEIGHT; resolved against the library on submit
    # --sref / --oref: "" for the request's own picture, else a message id; found on submit (commands.jobs.references)
    sref: str | None = None
    oref: str | None = None
    sw: int | None = None
    ow: int | None = None
    draft: bool | None = None  # --draft: drawn by commands.explore.draft
    detail: tuple[str, ...] | None = None  # --detail face,hand: targets in order; () is `off`
    detail_prompt: str | None = None
    detail_strength: float | None = None
    chaos: int | None = None  # --chaos 0-100 (generation.prompts.chaos)
    fast: str | None = None  # --fast: off, on or a cache's name (CACHE_CHOICES); resolved for the family by build_spec


@dataclass(frozen=True)
class InitImage:
    blob_key: str
    width: int
    height: int


def read_options(
    raw: Mapping[str, Any],
    settings: Settings,
    registry: ModelRegistry,
    *,
    written: Mapping[str, str] | None = None,
    prompt: str = "",
    problems: list[str] | None = None,
) -> ImagineOptions:
    """Check every value in `raw` (canonical names). Collects all problems, with any found
    earlier (`problems`, e.g. unknown flags), into one UserError."""
    checker = _Checker(settings, registry, written or {})
    checker.problems.extend(problems or [])
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        check = checker.checks.get(key)
        if check is None:
            checker.problems.append(f"Unknown option `{key}`.")
            continue
        result = check(value)
        if result is not _INVALID:
            values[_FIELD.get(key, key)] = result
    if values.get("size") and values.get("ar"):
        checker.problems.append("Use either `--ar` or `--size`, not both.")
    if values.get("strength") is not None and values.get("iw") is not None:
        checker.problems.append("Use either `--iw` or `--strength`, not both: they say the same thing two ways.")
    for field, label in (("prompt", "prompt"), ("negative", "negative prompt")):
        text = prompt.strip() if field == "prompt" else values.get(field) or ""
        if len(text) > settings.max_prompt_chars:
            checker.problems.append(f"The {label} is {len(text)} characters; the limit is {settings.max_prompt_chars}. Shorten it.")
    if checker.problems:
        raise UserError(*checker.problems)
    return ImagineOptions(prompt=prompt.strip(), **values)


_INVALID = INVALID  # a value that failed its check (the problem is already recorded)
_FIELD = {"no": "negative", "style": "styles", "lora": "loras"}  # option name -> ImagineOptions field, where they differ


class _Checker:
    """Checks the drawing options: the declared check (`commands.frame.declare.check`) for
    numbers and switches, and a method of the option's name where a value needs more."""

    def __init__(self, settings: Settings, registry: ModelRegistry, written: Mapping[str, str]):
        self.s = settings
        self.registry = registry
        self.written = written
        self.problems: list[str] = []
        self.checks = {option.name: getattr(self, f"_{option.name}", self._declared(option)) for option in IMAGINE_OPTIONS}

    def _declared(self, option: Option) -> Any:
        return lambda value: check(option, value, self.s, self.problems, self.flag(option.name))

    def flag(self, key: str) -> str:
        return self.written.get(key, flag_name(key))

    def _missing(self, key: str, example: str) -> object:
        self.problems.append(f"`{self.flag(key)}` needs a value, e.g. `{self.flag(key)} {example}`.")
        return _INVALID

    def _strength(self, value: Any) -> Any:
        if isinstance(value, str) and (number := read_float(value)) is not None and number <= 0:
            self.problems.append(f"`{self.flag('strength')}` must be above 0 and at most 1; you wrote `{quoted(value)}`.")
            return _INVALID
        return check(STRENGTH, value, self.s, self.problems, self.flag("strength"))

    def _seed(self, value: Any) -> Any:
        seed = check(SEED, value, self.s, self.problems, self.flag("seed"))
        return None if seed == -1 else seed

    def _no(self, value: Any) -> Any:
        text = str(value).strip()
        return text if text else self._missing("no", "blurry, text")

    def _style(self, value: Any) -> Any:
        names = tuple(dict.fromkeys(n.lower() for n in re.split(r"[,\s]+", str(value)) if n))
        if not names:
            return self._missing("style", "cinematic")
        if len(names) > MAX_STYLES_PER_JOB:
            self.problems.append(f"Use at most {MAX_STYLES_PER_JOB} styles at once; you gave {len(names)}.")
            return _INVALID
        return names

    def _regions(self, value: Any) -> Any:
        from generation.prompts.region_layout import parse_layout

        text = str(value).strip().strip("\"'")
        if not text:
            return self._missing("regions", "cols")
        if text.lower() in ("off", "none"):
            return "off"  # a remix of a regional picture, drawn without regions
        try:
            parse_layout(text)
        except ValueError as error:
            self.problems.append(f"`{self.flag('regions')} {quoted(text)}`: {error}")
            return _INVALID
        return text

    def _detail(self, value: Any) -> Any:
        words = [word for word in re.split(r"[,\s]+", str(value).strip().lower()) if word]
        if not words:
            return self._missing("detail", "face")
        if words in (["off"], ["none"]):
            return ()
        unknown = [word for word in words if word not in DETAIL_WORDS]
        if unknown:
            self.problems.append(
                f"`{self.flag('detail')}` takes face, hand or person (several with commas: `{self.flag('detail')} face,hand`); "
                f"you wrote `{quoted(unknown[0])}`."
            )
            return _INVALID
        targets = tuple(dict.fromkeys(DETAIL_WORDS[word] for word in words))
        if "hand" in targets and not self.s.hand_detector:
            self.problems.append(
                f"`{self.flag('detail')} hand` needs a hand detector, and none is configured here (OpenCV has none built in): "
                "an admin sets SDBOT_HAND_DETECTOR to a YOLO hand model exported to ONNX (e.g. hand_yolov8n.onnx). "
                "face and person work without one."
            )
            return _INVALID
        return targets

    def _detail_prompt(self, value: Any) -> Any:
        text = str(value).strip()
        if not text:
            return self._missing("detail_prompt", "a smiling face, detailed eyes")
        if len(text) > self.s.max_prompt_chars:
            self.problems.append(f"The detail prompt is {len(text)} characters; the limit is {self.s.max_prompt_chars}. Shorten it.")
            return _INVALID
        return text

    def _sref(self, value: Any) -> Any:
        return self._picture("sref", value)

    def _oref(self, value: Any) -> Any:
        return self._picture("oref", value)

    def _picture(self, key: str, value: Any) -> Any:
        """A reference's picture: "" (the request's own), a moodboard's name or a message id (told
        apart when the job is submitted: commands.jobs.sources.find_references), or `none`; checked
        for form here."""
        text = str(value).strip().strip("\"'")
        if text and (len(text) > 64 or any(ch.isspace() for ch in text)):
            self.problems.append(
                f"`{self.flag(key)}` takes the name of a moodboard or the id of a message with my picture (e.g. `{self.flag(key)} b3`), "
                f"`none`, or nothing to use the picture you reply to or attach; you wrote `{quoted(text)}`."
            )
            return _INVALID
        return NO_REFERENCE if text.lower() == NO_REFERENCE else text

    def _lora(self, value: Any) -> Any:
        picked: list[tuple[str, float]] = []
        for item in (part.strip() for part in str(value).split(",")):
            if not item:
                continue
            name, _, weight = item.partition(":")
            number, problem = check_number(weight or "1", self.flag("lora"), float, -MAX_LORA_WEIGHT, MAX_LORA_WEIGHT)
            if problem is not None:
                self.problems.append(problem)
                return _INVALID
            picked.append((name.strip().lower(), float(number)))
        if not picked:
            return self._missing("lora", "fox:0.8")
        return tuple(picked)

    def _vae(self, value: Any) -> Any:
        text = str(value).strip()
        if not text:
            return self._missing("vae", "default")
        if text.lower() == "default":
            return "default"
        for name in self.s.vaes:
            if name.lower() == text.lower():
                return name
        choices = ", ".join(["default", *self.s.vaes])
        self.problems.append(f"Unknown VAE `{text}`. VAEs here: {choices}.")
        return _INVALID

    def _fast(self, value: Any) -> Any:
        """`--fast` alone (or on/yes) is `on`; off/no is `off`; else a cache's name."""
        word = str(value).strip().lower()
        if isinstance(value, bool) or word in SWITCH_WORDS:
            on = value if isinstance(value, bool) else SWITCH_WORDS[word]
            return "on" if on else "off"
        if word in CACHE_CHOICES:
            return word
        self.problems.append(f"`{self.flag('fast')}` is on, off or a cache's name ({', '.join(CACHES)}); you wrote `{quoted(value)}`.")
        return _INVALID

    def _sampler(self, value: Any) -> Any:
        text = str(value).strip()
        if not text:
            return self._missing("sampler", "euler_a")
        sampler = find_sampler(text)
        if sampler is None:
            why = unavailable_reason(text) or f"Unknown sampler `{quoted(text)}`"
            self.problems.append(f"{why}. Samplers: {', '.join(sampler_names())}.")
            return _INVALID
        return sampler.name

    def _model(self, value: Any) -> Any:
        text = str(value).strip()
        if not text:
            return self._missing("model", self.registry.default.display_name)
        entry = self.registry.get(text)
        if entry is None:
            self.problems.append(f"Unknown model `{text}`. Models: {', '.join(self.registry.names())}.")
            return _INVALID
        return entry.display_name

    def _size(self, value: Any) -> Any:
        text = str(value).strip()
        if not text:
            return self._missing("size", "768x512")
        match = _SIZE.match(text)
        first, _, rest = text.partition(" ")
        if not match and rest and _SIZE.match(first):
            self.problems.append(options_first(self.flag("size"), first, rest))
            return _INVALID
        if not match:
            self.problems.append(f"`{self.flag('size')}` must look like `768x512` (width x height); you wrote `{quoted(text)}`.")
            return _INVALID
        width, height = int(match[1]), int(match[2])
        problems = size_problems(width, height, self.s)
        if problems:
            self.problems.extend(problems)
            return _INVALID
        return (width, height)

    def _ar(self, value: Any) -> Any:
        text = str(value).strip()
        if not text:
            return self._missing("ar", "3:2")
        match = _RATIO.match(text)
        first, _, rest = text.partition(" ")
        if not match and rest and _RATIO.match(first):
            self.problems.append(options_first(self.flag("ar"), first, rest))
            return _INVALID
        if not match or float(match[1]) <= 0 or float(match[2]) <= 0:
            self.problems.append(f"`{self.flag('ar')}` must look like `3:2` (width:height); you wrote `{quoted(text)}`.")
            return _INVALID
        a, b = float(match[1]), float(match[2])
        if max(a / b, b / a) > MAX_ASPECT:
            self.problems.append(f"`{self.flag('ar')} {text}` is too extreme: use ratios from 1:4 to 4:1.")
            return _INVALID
        return (a, b)


def size_problems(width: int, height: int, s: Settings) -> list[str]:
    if min(width, height) < s.min_side or max(width, height) > s.max_side:
        return [f"Each side must be from {s.min_side} to {s.max_side} pixels; you asked for {width}x{height}."]
    problems = []
    if width % 8 or height % 8:
        near = f"{_round8(width)}x{_round8(height)}"
        problems.append(f"Width and height must be multiples of 8 ({width}x{height} is not); try `{near}`.")
    if width * height > s.max_pixels:
        problems.append(
            f"{width}x{height} is {width * height:,} pixels; the limit is {s.max_pixels:,} "
            f"(e.g. {int(math.sqrt(s.max_pixels)) // 8 * 8}x{int(math.sqrt(s.max_pixels)) // 8 * 8})."
        )
    return problems


def _round8(value: float) -> int:
    return max(8, int(round(value / 8)) * 8)


def fit_size(width: float, height: float, target_area: int, s: Settings, multiple: int = 8) -> tuple[int, int]:
    """Scale (width, height) to about `target_area` pixels within the limits, sides multiples of
    `multiple` (8; 16 for FLUX-style transformers: their model family's size rule)."""
    area = min(target_area, s.max_pixels)
    scale = math.sqrt(area / (width * height))
    w, h = width * scale, height * scale
    # keep within side limits, then round down to multiples so the pixel limit still holds
    shrink = min(1.0, s.max_side / max(w, h))
    grow = max(1.0, s.min_side / min(w, h))
    w, h = w * shrink * grow, h * shrink * grow
    smallest = -(-s.min_side // multiple) * multiple
    wm, hm = max(smallest, int(w) // multiple * multiple), max(smallest, int(h) // multiple * multiple)
    while wm * hm > s.max_pixels and max(wm, hm) > smallest:
        if wm >= hm:
            wm -= multiple
        else:
            hm -= multiple
    return wm, hm


def picture_size(init: InitImage, native: int, s: Settings, notes: list[str], multiple: int = 8) -> tuple[int, int]:
    """The size a job that starts from a picture draws at: the picture's own, unless it breaks the
    limits, is over 4x the model's native area or is not in multiples the model draws; then its
    proportions at (at most) the native area, and a note says so."""
    width, height = init.width, init.height
    if size_problems(width, height, s) or width * height > native * native * 4 or width % multiple or height % multiple:
        width, height = fit_size(init.width, init.height, min(width * height, native * native), s, multiple)
        notes.append(f"Your {init.width}x{init.height} image is drawn at {width}x{height}.")
    return width, height


def new_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def build_spec(
    opts: ImagineOptions,
    *,
    settings: Settings,
    registry: ModelRegistry,
    user_defaults: Mapping[str, Any],
    init: InitImage | None = None,
    base: GenerationSpec | None = None,
    require_prompt: bool = True,
    inherited: ImagineOptions | None = None,
) -> tuple[GenerationSpec, list[str]]:
    """Resolve defaults: the user's options, then `inherited` (settings read from a picture, for
    "Imagine this"), then `base` (the job being remixed or rerolled), then the user's /settings,
    then the model's and the bot's defaults. Returns notes to show. Edits of an image
    (`require_prompt=False`) may have no prompt."""
    defaults = user_options(user_defaults, settings, registry)
    notes: list[str] = []
    model = registry.get(_first("model", opts, inherited, base_options(base), defaults)) or registry.default
    kind = family(model.family)
    based = base_options(base)
    base_entry = registry.get(base.model) if base is not None else None
    if based is not None and base_entry is not None and base_entry.family != model.family:
        # A remix on a model of another family: the old picture's sampler, guidance, steps and
        # the like were that family's; this one draws with its own defaults.
        based = ImagineOptions(n=based.n, model=based.model, negative=based.negative)
        notes.append(f"Drawn with {kind.label}'s own sampler, guidance and steps (the picture was {base_entry.family_label}'s).")

    def pick(name: str, fallback: Any) -> Any:
        """The request's value, else the picture's being remixed, else the user's /settings, else
        `fallback`; a value not asked for in this request that the family can't use is passed
        over, and a note says so."""
        if getattr(opts, name, None) is not None:
            return getattr(opts, name)
        for source, whose in ((inherited, "the picture's"), (based, "the picture's"), (defaults, "your /settings")):
            value = getattr(source, name, None) if source is not None else None
            if value is None:
                continue
            why = _family_refuses(kind, model.guessed_variant, name, value, classic_cfg=source is not based)
            if why is None:
                return value
            notes.append(f"{kind.label} {why}, so {whose} {_LABELS.get(name, name)} isn't used.")
        return fallback

    native = model.native_size
    multiple = kind.size_multiple

    if opts.size:
        width, height = opts.size
    elif opts.ar:
        width, height = fit_size(opts.ar[0], opts.ar[1], native * native, settings, multiple)
    elif init is not None:
        width, height = picture_size(init, native, settings, notes, multiple)
    elif base is not None and base.width % multiple == 0 and base.height % multiple == 0:
        width, height = base.width, base.height
    elif base is not None:
        width, height = fit_size(base.width, base.height, base.width * base.height, settings, multiple)
    elif defaults.size and defaults.size[0] % multiple == 0 and defaults.size[1] % multiple == 0:
        width, height = defaults.size
    elif defaults.size or defaults.ar:
        ratio = defaults.size or defaults.ar
        assert ratio is not None
        width, height = fit_size(ratio[0], ratio[1], native * native, settings, multiple)
    else:
        width, height = fit_size(native, native, native * native, settings, multiple)

    steps = pick("steps", settings.steps_for(model))
    strength = None
    if init is not None:
        strength = opts.strength if opts.strength is not None else settings.default_strength
        if opts.iw is not None:
            strength = iw_strength(opts.iw, settings.default_strength)
        if int(steps * strength) < 1 and require_prompt:  # edits settle their own steps (commands.pictures.edits)
            need = math.ceil(1 / strength)
            raise UserError(
                f"With strength {strength:g} and {steps} steps no denoising step would run: "
                f"use at least {need} steps or a higher `--strength`."
            )
    elif opts.strength is not None or opts.iw is not None:
        flag = "--strength" if opts.strength is not None else "--iw"
        raise UserError(f"`{flag}` needs an image: attach one, or reply to an image with your prompt.")

    spec = GenerationSpec(
        detail=detail_spec(opts),
        chaos=pick("chaos", 0),
        kind="img2img" if init is not None else "txt2img",
        prompt=opts.prompt or (base.prompt if base else ""),
        negative_prompt=pick("negative", None) or "",
        model=model.display_name,
        family=model.family,
        width=width,
        height=height,
        steps=steps,
        cfg=pick("cfg", settings.cfg_for(model)),
        sampler=pick("sampler", None) or _sampler_name(settings.sampler_for(model)),
        seed=opts.seed if opts.seed is not None else new_seed(),
        n=pick("n", settings.default_n),
        strength=strength,
        init_image=init.blob_key if init else None,
        tile=bool(pick("tile", False)),
        clip_skip=pick("clip_skip", None) or model.clip_skip,
        vae=_vae_name(pick("vae", None), model.vae),
        regions=None if pick("regions", "off") == "off" else pick("regions", None),
        base_ratio=pick("base_ratio", None),
        # A remix, vary or reroll of a ControlNet picture is steered as it was.
        controls=base.controls if base is not None else (),
        # ...and drawn with its references (commands.jobs.references adds or reweighs them).
        references=base.references if base is not None else (),
        control_mode=base.control_mode if base is not None else "balanced",
        cache=_cache(opts, pick("fast", None), model, kind, settings, notes),
    )
    if not spec.prompt and require_prompt:
        if init is not None:
            raise UserError(
                "Tell me what to make of this picture: write a prompt as its caption, or reply to it with one "
                "(e.g. `as a watercolor painting`)."
            )
        raise UserError("Tell me what to draw, e.g. `/imagine a red fox in the snow --ar 3:2` (the prompt first, then the options).")
    return spec, notes


def _cache(opts: ImagineOptions, picked: str | None, model: ModelEntry, kind: Family, settings: Settings, notes: list[str]) -> str | None:
    """The cache accelerator a job draws with: `--fast` (or the picture's being remixed), else the
    model's `cache`, else SDBOT_CACHE, as the family takes it. Asked for in this request and not
    taken by the family: refused before queueing, saying why; a remixed picture's that the new
    model's family doesn't take is left out with a note; the settings' apply where they fit."""
    asked = picked or model.cache or settings.cache
    cache = kind.cache_for(asked)
    if cache is None:
        return None
    why = kind.cache_refusal(cache)
    if why is None:
        return cache
    if opts.fast is not None:
        raise UserError(why)
    if picked is not None:
        notes.append(f"{kind.label} doesn't take the picture's cache `{cache}`, so it is drawn without one.")
    return None


def detail_spec(opts: ImagineOptions, default: tuple[str, ...] = ()) -> DetailSpec | None:
    """ADetailer's pass the options ask for (`default` targets where they name none: the Detail
    button's); None without targets. `--detail-prompt` or `--detail-strength` without targets
    is a mistake worth a reply, not a silent no-op."""
    targets = opts.detail if opts.detail is not None else default
    if not targets:
        if opts.detail_prompt is not None or opts.detail_strength is not None:
            raise UserError("`--detail-prompt` and `--detail-strength` tune `--detail`: add `--detail face` (or hand, person).")
        return None
    strength = opts.detail_strength if opts.detail_strength is not None else DETAIL_STRENGTH_DEFAULT
    return DetailSpec(targets=targets, prompt=opts.detail_prompt, strength=strength)  # type: ignore[arg-type]


_LABELS = {"negative": "negative prompt", "clip_skip": "clip skip", "cfg": "--cfg", "vae": "VAE", "tile": "tiling"}
# Options whose saved or inherited value a family may refuse (commands.jobs.model_fit refuses them when asked for).
_FEATURE_OF = {"negative": "negative", "clip_skip": "clip_skip", "vae": "vae", "tile": "tile", "regions": "regions", "cfg": "cfg"}


def _first(name: str, *sources: ImagineOptions | None) -> Any:
    return next((value for source in sources if source is not None and (value := getattr(source, name, None)) is not None), None)


def _family_refuses(kind: Family, variant: str | None, name: str, value: Any, *, classic_cfg: bool) -> str | None:
    """Why the family can't use `value` for option `name`, in a few words; None when it can.
    `classic_cfg`: the value, if a CFG, is classifier-free guidance (saved in /settings, or read
    from another tool's picture); a family whose --cfg means something else (FLUX.1's distilled
    guidance) keeps its own. A picture of the same family being remixed keeps its own guidance."""
    if name == "cfg" and value == kind.variant(variant).cfg:
        return None  # what the model draws with anyway (schnell's 0: no guidance)
    if name == "sampler" and kind.flow_matching and value not in kind.samplers:
        return f"draws with flow matching ({', '.join(kind.samplers)})"
    if name == "cfg" and kind.guidance != "cfg" and classic_cfg:
        return "has its own guidance scale"
    if name in ("vae", "regions") and value in ("default", "off"):
        return None
    feature = _FEATURE_OF.get(name)
    if feature is not None and kind.why_not(feature, variant) is not None:
        return "can't use it"
    return None


def _sampler_name(name: str) -> str:
    found = find_sampler(name)
    return found.name if found is not None else name


def _vae_name(chosen: str | None, model_vae: str | None) -> str | None:
    """The VAE a job uses: the user's choice ("default": the model's own), else the model's
    configured one (None: the one inside the model)."""
    if chosen == "default":
        return None
    return chosen or model_vae


def base_options(base: GenerationSpec | None) -> ImagineOptions | None:
    if base is None:
        return None
    full = base.draft  # a draft is remixed, varied or rerolled as the picture Enhance would draw
    negative = full.negative_prompt if full is not None and full.negative_prompt is not None else base.negative_prompt
    return ImagineOptions(
        negative=negative or None,
        steps=full.steps if full is not None else base.steps,
        cfg=full.cfg if full is not None else base.cfg,
        sampler=full.sampler if full is not None else base.sampler,
        n=base.n,
        model=full.model if full is not None else base.model,
        tile=base.tile or None,
        vae=base.vae or "default",
        clip_skip=base.clip_skip,
        regions=base.regions,
        base_ratio=base.base_ratio,
        chaos=base.chaos or None,
        fast=base.cache,
    )


def user_options(stored: Mapping[str, Any], settings: Settings, registry: ModelRegistry) -> ImagineOptions:
    """A user's saved /settings, checked against today's limits (an admin may have lowered them)."""
    if not stored:
        return ImagineOptions()
    try:
        return read_options({k: v for k, v in stored.items() if k in SETTINGS_KEYS}, settings, registry)
    except UserError as error:
        raise UserError(
            *[
                f"{problem} (from your /settings; change it with `/settings` or clear it with `/settings reset`)"
                for problem in error.problems
            ]
        ) from None
