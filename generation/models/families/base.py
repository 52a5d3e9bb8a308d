"""What a model family is, as data: the `Family` every family module declares. Torch-free: the
chat side reads it to pick defaults and refuse options before queueing; the loader and the
engine read it to build pipelines, schedulers and prompt conditionings.

A family is an architecture people name ("SDXL", "FLUX.1"): the same pipelines, text encoders,
size rule, samplers and features for every model of it. Variants (FLUX.1-dev and -schnell) share
everything but their defaults (`Variant`). A feature a family lacks is named in `unsupported` with
the reason a user reads when they ask for it, so nothing is silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from generation.models.families.latent_rgb import LatentPreview

# What a job may ask for that not every family can do (the keys of `Family.unsupported`).
FEATURES = (
    "img2img",  # drawing from a picture (remix, Vary, hires upscale): the family has an img2img pipeline
    "inpaint",  # inpainting and outpainting (Zoom Out, Pan): an inpaint pipeline
    "negative",  # a negative prompt (--no)
    "cfg",  # --cfg (a distilled model without guidance ignores it)
    "clip_skip",
    "tile",  # seamless textures (circular padding in the UNet and VAE)
    "vae",  # a VAE other than the model's own
    "regions",  # regional prompting (BREAK regions through the UNet's cross-attention)
    "controlnet",
    "reference",  # image references (--sref, --oref): an IP-Adapter (control.ip_adapters; FLUX.1's or Redux: control.flux_references)
    "lora",  # users' LoRAs
    "embeddings",  # textual-inversion embeddings
    "prompt_weights",  # A1111's (word:1.2) emphasis
    "prompt_editing",  # [from:to:when] and [a|b]
    "break",  # BREAK: a new 75-token chunk
    "latent_upscale",  # --method latent
    "animate",  # AnimateDiff clips (/animate, /video2video)
    "deforum",  # Deforum clips
    "video2video",  # AnimateDiff restyling a clip
    "camera_moves",  # AnimateDiff motion LoRAs (zoom, pan, ...)
    "train",  # training LoRAs and embeddings in chat
    "pictures",  # still pictures (/imagine and every picture job): a video family draws clips only
    "video",  # clips from a video model (/video, Animate, Extend): the families with `Family.video()`
)


@dataclass(frozen=True)
class Variant:
    """Defaults of one kind of model within a family (None: the bot's setting), and how its files
    or its name say which it is."""

    name: str  # "dev", "schnell"; "" for a family's only kind
    label: str  # how people name it: "FLUX.1-dev"
    steps: int | None = None
    cfg: float | None = None
    # Options this variant cannot use beyond the family's own (feature -> reason).
    unsupported: Mapping[str, str] = field(default_factory=dict)
    # Recognition: values of the denoiser's config.json that mark it, and words in a source's name
    # (which win: SD 3.5 Large Turbo has Large's layers).
    config: Mapping[str, object] = field(default_factory=dict)
    name_marks: tuple[str, ...] = ()
    index: Mapping[str, object] = field(default_factory=dict)  # values of model_index.json that mark it


# The control modes of A1111's ControlNet extension that a family's ControlNet may not do
# (generation.control.inputs), and the job kinds a ControlNet pipeline may be missing for.
CONTROL_MODES = ("balanced", "prompt", "control")
CONTROL_KINDS = {
    "txt2img": "Drawing from the prompt",
    "img2img": "A remix, Vary or hires upscale",
    "inpaint": "Inpainting or outpainting (/inpaint, Zoom Out, Pan)",
}


@dataclass(frozen=True)
class ControlNetSupport:
    """A family's ControlNet, as diffusers has it: the class its ControlNet folders are, the
    ControlNet pipeline per job kind, and what those pipelines can't do, with the reasons people
    read. The engine builds its ControlNet pipelines from this (generation.models.loader); the
    command layer refuses what is missing before a job is queued (`refusals`)."""

    model_class: str  # config.json's `_class_name` of the family's ControlNets ("SD3ControlNetModel")
    pipelines: Mapping[str, str]  # job kind (txt2img, img2img, inpaint) -> its ControlNet pipeline class
    missing: Mapping[str, str] = field(default_factory=dict)  # job kind -> why it has no ControlNet pipeline
    # How several ControlNets run at once ("SD3MultiControlNetModel"); None: one at a time, and why.
    multi_class: str | None = None
    single_only: str = ""
    guidance_window: bool = True  # the pipelines take control_guidance_start/end (--start, --end)
    window_why: str = ""
    modes: tuple[str, ...] = ("balanced",)  # which of CONTROL_MODES it does
    # The txt2img pipeline's argument for the map (SD's takes `image`; every other `control_image`).
    txt2img_map_argument: str = "control_image"
    # Its pipeline samples the map's VAE latents from torch's global RNG, not the job's generators
    # (SD 3.5's in diffusers 0.42.1): the engine seeds it per image, so a picture is reproducible.
    map_latents_unseeded: bool = False

    def refusals(self, label: str, *, kinds: Sequence[str], count: int, mode: str, window: bool) -> list[tuple[str, str]]:
        """What a job can't have of this ControlNet, as (what, why) pairs: `kinds` the pipeline
        kinds it draws with, `count` its controls, `mode` its control mode, `window` whether a
        control starts late or ends early."""
        found = []
        for kind in kinds:
            if kind not in self.pipelines:
                why = self.missing.get(kind) or f"diffusers has no {label} ControlNet pipeline for it"
                found.append((f"{CONTROL_KINDS.get(kind, kind)} steered by ControlNet", why))
        if count > 1 and self.multi_class is None:
            found.append(("Several controls", self.single_only or f"{label}'s ControlNet pipeline takes one ControlNet"))
        if mode not in self.modes:
            found.append(
                (
                    f"`--control-mode {mode}`",
                    "A1111's control modes weigh a UNet ControlNet's residuals (and diffusers' guess mode); "
                    f"{label}'s ControlNet draws balanced only",
                )
            )
        if window and not self.guidance_window:
            found.append(("`--start` and `--end`", self.window_why or f"{label}'s ControlNet pipeline steers every step"))
        return found


@dataclass(frozen=True)
class EditSupport:
    """How a family edits pictures by instruction (`/edit make it winter`), as diffusers has it: the
    edit pipeline per variant (FLUX.1 Kontext's; FLUX.2 Klein's own pipeline with the pictures as
    references), and how many pictures one edit may take. The engine builds the pipeline from the
    loaded model's weights (generation.models.loader); the command layer picks the model and checks
    the pictures before a job is queued (commands.pictures.edit)."""

    pipelines: Mapping[str, str]  # variant -> pipeline class; "*": every variant of the family
    # How many pictures one edit takes: the picture to edit and the references beside it (1: passed
    # alone, not as a list); per variant where they differ (Qwen-Image-Edit 1, -Plus 3).
    max_pictures: int = 1
    max_pictures_of: Mapping[str, int] = field(default_factory=dict)
    # The argument that sets the output's pixel count, where the pipeline would otherwise rescale the
    # asked size to its own (Kontext's `max_area`, 1024² by default), and arguments always passed.
    area_argument: str | None = None
    fixed_arguments: Mapping[str, object] = field(default_factory=dict)
    # What its pipeline refuses in a picture (FLUX.2's: sides under 64 px, more than 8:1): the
    # engine scales a small picture up to `min_side`; the command layer refuses a longer one.
    min_side: int = 0
    max_aspect: float | None = None
    # What it does with more than one picture, in words for /help and the docs.
    pictures_note: str = ""
    # Its masked edit (`/edit ... --box`, `--select`, a mask attached): the inpaint pipeline per
    # variant (FLUX.1 Kontext's, Qwen-Image-Edit's, FLUX.2 Klein's), which edits inside the mask
    # and keeps the picture's latents outside it; how many pictures it takes (the picture, then one
    # reference passed as `inpaint_reference_argument`: Kontext's and Klein's `image_reference`),
    # and its strength (1: the region is drawn anew, the model still reads the whole picture).
    inpaint_pipelines: Mapping[str, str] = field(default_factory=dict)
    inpaint_max_pictures: int = 1
    inpaint_reference_argument: str | None = None
    inpaint_strength: float = 1.0

    def pipeline(self, variant: str | None) -> str | None:
        """The edit pipeline for `variant`, or None when that variant doesn't edit."""
        return self.pipelines.get(variant or "") or self.pipelines.get("*")

    def limit(self, variant: str | None) -> int:
        """How many pictures an edit on `variant` takes."""
        return self.max_pictures_of.get(variant or "", self.max_pictures)

    def inpaint_pipeline(self, variant: str | None) -> str | None:
        """The masked-edit (inpaint) pipeline for `variant`, or None when that variant has none."""
        if self.pipeline(variant) is None:
            return None
        return self.inpaint_pipelines.get(variant or "") or self.inpaint_pipelines.get("*")

    def inpaint_limit(self, variant: str | None) -> int:
        """How many pictures a masked edit on `variant` takes (0: it has no masked edit)."""
        return self.inpaint_max_pictures if self.inpaint_pipeline(variant) is not None else 0


# What a video model may be asked to draw (`VideoSupport.modes`), in the words people read.
VIDEO_MODES = {
    "t2v": "text-to-video (from the prompt alone)",
    "i2v": "image-to-video (from a first frame)",
    "flf2v": "first-last-frame (from a first frame to a given last frame)",
    "condition": "frames conditioned at any position (LTX-Video's condition pipeline)",
}


class VideoDefaults(NamedTuple):
    """A video variant's defaults: what the command layer fills in when a request doesn't say."""

    frames: int
    fps: int
    steps: int
    cfg: float


@dataclass(frozen=True)
class MotionRule:
    """How one `--motion` amount (low, high) is honoured by a family's pipelines: by what the model is
    told about time (LTX-Video's frame-rate conditioning: it is told `fps * frame_rate_factor`), or
    by words added to the prompt and the negative prompt where the model has no such input (Wan).
    `how` says which, for the docs and the PNG parameters."""

    how: str
    frame_rate_factor: float = 1.0
    prompt_suffix: str = ""
    negative_suffix: str = ""


@dataclass(frozen=True)
class VideoSupport:
    """A video family's clips, as diffusers has them: the pipeline per mode (t2v, i2v, flf2v,
    condition), which variant does which, the frame and size rules, defaults, and how `--motion` is
    honoured. Torch-free: the command layer asks `check` before queueing; the engine builds the
    mode's pipeline from the loaded model's modules (generation.models.loader.LoadedModel.video_pipeline)
    and draws it (generation.jobs.video). Declared per family module; `Family.video()` hands it out
    bound to its family, so its messages name the family and variant."""

    pipelines: Mapping[str, str]  # mode -> diffusers pipeline class (all share the loaded weights)
    modes_of: Mapping[str, frozenset[str]]  # variant -> the modes it draws; "*": every other variant
    frame_step: int  # frames are frame_step * k + 1: the VAE's temporal compression (Wan 4, LTX-Video 8)
    size_multiple: int  # width and height in multiples of it (the VAE's spatial compression x the patch)
    default_frames: int
    max_frames: int
    default_fps: int
    default_size: tuple[int, int]  # width, height
    motion: Mapping[str, MotionRule]  # "low", "high"
    min_frames: int = 0  # 0: frame_step + 1 (the shortest clip past one frame)
    # Per-variant values where a variant differs from the family's (Wan 2.2 TI2V 5B: multiples of 32, 24 fps).
    size_multiple_of: Mapping[str, int] = field(default_factory=dict)
    default_fps_of: Mapping[str, int] = field(default_factory=dict)
    default_frames_of: Mapping[str, int] = field(default_factory=dict)
    max_frames_of: Mapping[str, int] = field(default_factory=dict)
    default_size_of: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # The pipeline argument that tells the model the clip's frame rate (LTX-Video's `frame_rate`); None: none.
    fps_argument: str | None = None
    # How the end frame reaches the flf2v pipeline: "last_image" (Wan's argument) or "conditions"
    # (LTX-Video's condition pipeline: a condition at frame 0 and one at the last frame).
    end_frame: str = "last_image"
    fixed_arguments: Mapping[str, object] = field(default_factory=dict)  # passed to every call
    # Scheduler options per mode, over the model's own config (LTX-Video's condition pipeline passes
    # its own timesteps, which a dynamically shifted scheduler refuses: it gets no dynamic shifting).
    scheduler_options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    # Why a mode is missing, per mode, where diffusers lacks it for the whole family.
    missing: Mapping[str, str] = field(default_factory=dict)
    # The family it belongs to (set by `Family.video()`): its label and variants name the messages.
    family: Family | None = field(default=None, compare=False, repr=False)

    # --- what the command layer asks -----------------------------------------------------------

    @property
    def frame_rule(self) -> str:
        """The frame rule in words: "4k+1 frames (5, 9, 13, ... 81)"."""
        low = self.shortest
        return f"{self.frame_step}k+1 frames ({low}, {low + self.frame_step}, {low + 2 * self.frame_step}, ...)"

    @property
    def shortest(self) -> int:
        return self.min_frames or self.frame_step + 1

    def _name(self, variant: str | None) -> str:
        """`variant`'s name, the family's first (its usual one) when unknown or None."""
        return self.family.variant(variant).name if self.family is not None else variant or ""

    def modes(self, variant: str | None) -> set[str]:
        """The modes `variant` draws: a subset of {"t2v", "i2v", "flf2v", "condition"}."""
        return set(self.modes_of.get(self._name(variant), self.modes_of.get("*", frozenset())))

    def defaults(self, variant: str | None, *, tiny: bool = False) -> VideoDefaults:
        """Frames, fps, steps and CFG for `variant` (its family's Variant steps and cfg). `tiny`: a
        built-in tiny model's (9 frames, so a try on a CPU takes seconds)."""
        found = self.family.variant(variant) if self.family is not None else None
        name = self._name(variant)
        frames = self.nearest_frames(9) if tiny else self.default_frames_of.get(name, self.default_frames)
        steps = (found.steps if found is not None else None) or 30
        cfg = found.cfg if found is not None and found.cfg is not None else 5.0
        return VideoDefaults(frames, self.default_fps_of.get(name, self.default_fps), steps, cfg)

    def default_dimensions(self, variant: str | None) -> tuple[int, int]:
        """The width and height `variant` was trained at (its 480p or 720p landscape size)."""
        return self.default_size_of.get(self._name(variant), self.default_size)

    def multiple(self, variant: str | None) -> int:
        """What `variant`'s width and height must be multiples of."""
        return self.size_multiple_of.get(self._name(variant), self.size_multiple)

    def longest(self, variant: str | None) -> int:
        """The most frames `variant` draws in one call."""
        return self.max_frames_of.get(self._name(variant), self.max_frames)

    def fits(self, frames: int) -> bool:
        """Whether `frames` keeps the frame rule (k*step + 1, at least the shortest clip)."""
        return frames >= self.shortest and (frames - 1) % self.frame_step == 0

    def nearest_frames(self, frames: int, variant: str | None = None) -> int:
        """The frame count nearest `frames` that keeps the rule and the variant's bounds."""
        near = round((frames - 1) / self.frame_step) * self.frame_step + 1
        return min(max(near, self.shortest), (self.longest(variant) - 1) // self.frame_step * self.frame_step + 1)

    @staticmethod
    def mode_for(has_start: bool, has_end: bool) -> str:
        """The mode a request needs: its first frame (a picture), its last frame, or neither."""
        return "flf2v" if has_end else "i2v" if has_start else "t2v"

    def label(self, variant: str | None) -> str:
        """How people name the variant ("Wan 2.2 I2V A14B"), else the family ("Wan")."""
        if self.family is None:
            return "this video model"
        return self.family.variant(variant).label or self.family.label

    def check(self, variant: str | None, frames: int, width: int, height: int, has_start: bool, has_end: bool) -> list[str]:
        """What a video request can't have on this family's `variant`, one sentence each, naming the
        family (empty: it can be queued). `frames` is what one pipeline call draws (with Extend: the
        new frames and the shared one); `has_start` a first frame (a picture, or Extend's last frame),
        `has_end` a last frame (`--end`, or a closed `--loop`)."""
        label = self.label(variant)
        problems = []
        longest = self.longest(variant)
        if not self.fits(frames):
            problems.append(
                f"{label} draws {self.frame_rule}: one more than a multiple of {self.frame_step}; {frames} is not one. "
                f"Try `--frames {self.nearest_frames(frames, variant)}`."
            )
        elif frames > longest:
            problems.append(
                f"{label} draws at most {longest} frames; you asked for {frames}. Try `--frames {self.nearest_frames(longest, variant)}`."
            )
        multiple = self.multiple(variant)
        if width % multiple or height % multiple:
            near = f"{_round(width, multiple)}x{_round(height, multiple)}"
            problems.append(f"{label} draws sizes in multiples of {multiple}; {width}x{height} is not. Try `--size {near}`.")
        if has_end and not has_start:
            problems.append(f"A last frame needs a first frame: {label} draws first-last-frame from a picture to another.")
            return problems
        mode = self.mode_for(has_start, has_end)
        modes = self.modes(variant)
        if mode not in modes:
            problems.append(self._refusal(mode, modes, label))
        return problems

    def _refusal(self, mode: str, modes: set[str], label: str) -> str:
        does = " and ".join(VIDEO_MODES[m].split(" (")[0] for m in ("t2v", "i2v", "flf2v") if m in modes) or "no clips here"
        if mode in self.missing:
            return f"{label} can't draw {VIDEO_MODES[mode].split(' (')[0]}: {self.missing[mode]}."
        if mode == "t2v":
            return f"{label} starts from a picture ({does}): attach one or reply to one."
        if mode == "i2v" and "flf2v" in modes:
            return f"{label} draws first-last-frame only: give both a first and a last frame (`--end`)."
        if mode == "i2v":
            return f"{label} draws {does}; it can't start from a picture. Pick an image-to-video model with `--model`."
        return f"{label} draws {does}; it can't end on a given last frame (first-last-frame). Leave out `--end` (and a closed `--loop`), or pick a model that does."


def _matches(found: Mapping[str, object] | None, wanted: Mapping[str, object]) -> bool:
    return found is not None and all(found.get(k) == v for k, v in wanted.items())


def _round(value: int, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


# What an operator names as a family's draft (SDBOT_DRAFT): a LoRA file, or a model of the registry.
DRAFT_SOURCES = ("lora", "model")
# With no fast path configured, a draft draws this share of the model's steps (at half size).
PLAIN_DRAFT_STEP_SHARE = 1 / 3


@dataclass(frozen=True)
class DraftPath:
    """A family's fast path for `--draft` (Midjourney's draft mode), declared once: what draws it
    (`source`: a few-step LoRA on the model itself, or a distilled model of the same family) and
    the steps, guidance and sampler it was distilled for. Which file or model it is, is the
    operator's (SDBOT_DRAFT, per family); the command layer (commands.explore.draft) draws the draft
    at half the size, and without one configured, a share of the model's own steps
    (`plain_steps`), saying so."""

    source: str  # one of DRAFT_SOURCES
    steps: int
    cfg: float
    sampler: str  # an A1111 name; a name in the family's `samplers` for flow-matching families
    what: str  # what to configure, in words, for the docs and the replies ("an LCM, Hyper-SD or DMD2 LoRA")

    def __post_init__(self) -> None:
        assert self.source in DRAFT_SOURCES, self.source


def plain_steps(steps: int, min_steps: int = 1) -> int:
    """The steps of a draft without a fast path: a third of `steps` (rounded up), at least
    `min_steps` (a family's scheduler may need more) and never more than `steps`."""
    return min(steps, max(min_steps, math.ceil(steps * PLAIN_DRAFT_STEP_SHARE)))


# Cache accelerators (`--fast`, SDBOT_CACHE, a model's `cache`; generation.models.caches puts them
# on the denoiser for a job): reuse the work of earlier steps instead of running the whole denoiser
# at every step. What each is and its thresholds, declared once: the PNG parameters write them
# (`CacheKind.text`), bench/cache_cost.py measures them. Why these values:
# - fbc 0.08: ParaAttention's (First Block Cache's authors') setting for FLUX.1-dev (diffusers'
#   default 0.05 skips little; 0.12 and more shows in the picture);
# - taylorseer: a full step every 4, after 4 full ones, first-order (the paper's FLUX.1 setting is
#   N=5 or 6; 4 keeps the 28-step default at 10 full steps), lite mode (whole blocks skipped);
# - magcache 0.06, at most 3 skipped in a row, the first 20% never: MagCache's and diffusers'
#   defaults, with FLUX.1's published magnitude ratios (the only family that has them);
# - pab: spatial attention reused every 2nd block call between timesteps 100 and 800 (PAB's and
#   diffusers' example values);
# - deepcache: the whole UNet every 3rd step, the shallowest branch between (DeepCache's N=3,
#   which its paper measures at about 2x on SD 1.5 with a CLIP score within 0.01).
@dataclass(frozen=True)
class CacheKind:
    name: str  # what `--fast` and SDBOT_CACHE take
    label: str
    what: str  # in a few words, for /help and the docs
    knobs: Mapping[str, float]  # its thresholds (generation.models.caches reads them)

    def text(self) -> str:
        """How the PNG parameters write it: `fbc (threshold 0.08)`."""
        return f"{self.name} ({', '.join(f'{key} {value:g}' for key, value in self.knobs.items())})"


CACHES: Mapping[str, CacheKind] = {
    kind.name: kind
    for kind in (
        CacheKind("fbc", "First Block Cache", "skips the other blocks while the first block's output hardly changes", {"threshold": 0.08}),
        CacheKind("taylorseer", "TaylorSeer", "predicts skipped steps from the last full ones", {"interval": 4, "warmup": 4, "order": 1}),
        CacheKind(
            "magcache",
            "MagCache",
            "skips steps by the model's known residual magnitudes",
            {"threshold": 0.06, "max_skip": 3, "retention": 0.2},
        ),
        CacheKind("pab", "Pyramid Attention Broadcast", "reuses attention outputs across steps", {"skip": 2, "from": 100, "to": 800}),
        CacheKind("deepcache", "DeepCache", "reuses the UNet's deep features, computing its shallow blocks", {"interval": 3}),
    )
}
# Which family takes which was tried on every tiny model (bench/cache_cost.py): each family's
# module says why it leaves out the others (hooks of diffusers 0.42.1 that fail on its blocks; PAB,
# whose state is per attention layer, not per call, where CFG runs as two calls a step).
# SDBOT_CACHE / a model's `cache` / `--fast`: off, on (the family's own first cache), or a cache's name.
CACHE_CHOICES = ("off", "on", *CACHES)


@dataclass(frozen=True)
class Family:
    id: str  # sd1, sd2, sdxl, sd3, flux, chroma: what ModelEntry.architecture holds
    label: str  # "SD 1.x", "FLUX.1": how people name it
    # Recognition: model_index.json `_class_name`s of this family's txt2img pipelines.
    pipeline_classes: tuple[str, ...]
    # The diffusers pipeline class per job kind (txt2img, img2img, inpaint), sharing weights.
    pipelines: Mapping[str, str]
    denoiser: str  # the pipeline component that denoises: "unet" or "transformer"
    denoiser_class: str  # its diffusers class (single files and GGUF files hold only it, for DiTs)
    native_size: int  # the side it was trained at
    size_multiple: int  # width and height must be multiples of it (8 for UNets, 16 for FLUX-style DiTs)
    text_encoders: tuple[str, ...]  # what reads the prompt, for /models and the docs
    prompt_tokens: int  # how much of a prompt its main encoder reads (SD: 75-token chunks, any number)
    # How prompts are encoded: "a1111" (CLIP chunks, weights, BREAK, editing: generation.prompts)
    # or "pipeline" (the pipeline's own encode_prompt: plain text).
    prompt_encoding: str
    flow_matching: bool  # samplers are flow-matching ones (`samplers`), not the A1111 list
    default_sampler: str  # an A1111 name (a name in `samplers` for flow-matching families)
    variants: tuple[Variant, ...] = (Variant("", ""),)
    unsupported: Mapping[str, str] = field(default_factory=dict)  # feature -> why, for the refusal
    # Flow-matching families: A1111-style sampler names -> diffusers scheduler class and options.
    samplers: Mapping[str, tuple[str, Mapping[str, object]]] = field(default_factory=dict)
    # Whether its img2img pipelines must be told the picture's size (FLUX-style ones draw at their
    # default 1024² otherwise; SD's take the picture's own).
    img2img_takes_size: bool = False
    # Single files: tensor-name prefixes (without ComfyUI's `model.diffusion_model.`) that mark the
    # family (generation.models.families.from_keys checks families in a fixed order).
    # A mark may be a tuple of prefixes that must all be there.
    checkpoint_marks: tuple[str | tuple[str, ...], ...] = ()
    # Prefixes that mean a file is NOT this family although its marks match (FLUX.2 [dev] beside Klein).
    refuse_marks: tuple[str, ...] = ()
    # The variant a single file is, from its tensor names (without the ComfyUI prefix); None: it can't say.
    variant_from_keys: Callable[[Sequence[str]], str | None] | None = None
    # Known faults of its diffusers pipelines that the engine works around, by name:
    # "inpaint_decode_without_shift": the inpaint pipeline decodes latents without the VAE's shift.
    quirks: frozenset[str] = frozenset()
    # The pipeline argument --cfg goes to, and a negative prompt sent when none is given (Qwen-Image
    # applies CFG only with one); at least this many steps (fewer break its scheduler).
    cfg_argument: str = "guidance_scale"
    blank_negative: str | None = None
    min_steps: int = 1
    # Its pipelines take the negative prompt only as embeddings (the engine encodes it with the
    # pipeline's own encode_prompt); img2img runs on its inpaint pipeline with the whole picture masked.
    negative_as_embeds: bool = False
    img2img_by_inpaint: bool = False
    # Classifier-free guidance is off at --cfg values up to this (diffusers' pipelines: > 1 turns it
    # on; Z-Image's: > 0), and then a negative prompt has no effect, so one is refused. None: not
    # checked (SD's A1111-style use: a style's negative prompt at CFG 1, as with LCM, is harmless).
    cfg_off_at: float | None = None
    guidance: str = "cfg"  # what --cfg is: "cfg" (classifier-free) or "distilled" (FLUX.1-dev's embedded guidance)
    # Its ControlNet (None: none here; `why_not("controlnet")` then names the family).
    controlnet: ControlNetSupport | None = None
    # Its fast path for `--draft` (None: none; a draft is then a share of the steps at half size).
    draft: DraftPath | None = None
    # Its instruction editing (/edit), for the variants that do it (None: none of them).
    edit: EditSupport | None = None
    # Its clips, for a video family (Wan, LTX-Video); None: a picture family (`video()`).
    video_support: VideoSupport | None = None
    # How its latents look as a live preview (a linear latent-to-RGB map, how tokens are packed).
    preview: LatentPreview = LatentPreview()
    description: str = ""  # one line for /models and the docs
    # The cache accelerators it takes (names in CACHES), its own first; none: why (`cache_refusal`).
    caches: tuple[str, ...] = ()
    no_cache: str = ""
    # Its denoiser's repeated blocks for regional torch.compile, where diffusers' class names none.
    repeated_blocks: tuple[str, ...] = ()

    def cache_for(self, asked: str | None) -> str | None:
        """The cache `asked` means on this family (`on`: its own first; `off`, None: none); a name it
        doesn't take is returned as it is, for `cache_refusal` to say why."""
        if asked in (None, "off"):
            return None
        if asked == "on":
            return self.caches[0] if self.caches else "on"
        return asked

    def cache_refusal(self, name: str) -> str | None:
        """Why this family can't draw with cache `name`, in a sentence; None when it can."""
        if name in self.caches:
            return None
        if not self.caches:
            return f"{self.label} has no cache accelerator here: {self.no_cache or 'none fits its denoiser'}. Draw without --fast."
        takes = ", ".join(f"`--fast {c}`" for c in self.caches)
        what = f"`{name}`" if name in CACHES else f"`{name}` (no such cache)"
        return f"{self.label} can't use the cache {what}; it takes {takes} (or `--fast` alone: {self.caches[0]})."

    def variant(self, name: str | None) -> Variant:
        """The variant `name` (the first, the family's usual one, when unknown or None)."""
        return next((v for v in self.variants if v.name == name), self.variants[0])

    def variant_from(
        self, denoiser_config: Mapping[str, object] | None, source: str = "", index: Mapping[str, object] | None = None
    ) -> str | None:
        """Which variant a model is, by its source's name, else its denoiser's config or its
        model_index.json; None when none says (the family's first variant applies)."""
        lowered = source.lower()
        for variant in self.variants:
            if any(mark in lowered for mark in variant.name_marks):
                return variant.name
        # A variant that names both needs both (Wan 2.1 FLF2V: an I2V pipeline whose transformer
        # has the two frames' position embedding).
        for variant in self.variants:
            both = variant.index and variant.config and index is not None and denoiser_config is not None
            if both and _matches(index, variant.index) and _matches(denoiser_config, variant.config):
                return variant.name
        # model_index.json first: its pipeline class says more than the denoiser's config (FLUX.1
        # Kontext's transformer is configured as FLUX.1-dev's)
        for wanted_of, found in ((lambda v: v.index, index), (lambda v: v.config, denoiser_config)):
            for variant in self.variants:
                if variant.index and variant.config:
                    continue
                wanted = wanted_of(variant)
                if wanted and found is not None and all(found.get(k) == v for k, v in wanted.items()):
                    return variant.name
        return None

    def video(self) -> VideoSupport | None:
        """The family's clips (modes, frame and size rules, defaults, `check`), bound to the family so
        its messages name it; None for a family that draws pictures."""
        return replace(self.video_support, family=self) if self.video_support is not None else None

    def edit_pipeline(self, variant: str | None) -> str | None:
        """The pipeline that edits pictures by instruction on this variant; None: it doesn't."""
        return self.edit.pipeline(variant) if self.edit is not None else None

    def edit_inpaint_pipeline(self, variant: str | None) -> str | None:
        """The pipeline that edits pictures by instruction inside a mask on this variant; None: it doesn't."""
        return self.edit.inpaint_pipeline(variant) if self.edit is not None else None

    def supports(self, feature: str, variant: str | None = None) -> bool:
        return self.why_not(feature, variant) is None

    def why_not(self, feature: str, variant: str | None = None) -> str | None:
        """Why this family (variant) can't do `feature`; None when it can."""
        assert feature in FEATURES, feature
        if feature == "controlnet" and self.controlnet is None:
            return self.unsupported.get(feature) or f"ControlNet on {self.label} isn't supported here yet"
        if feature == "video" and self.video_support is None:
            return f"{self.label} draws pictures; clips from a prompt or a picture need a video model (Wan, LTX-Video)"
        return self.unsupported.get(feature) or self.variant(variant).unsupported.get(feature)

    def marks(self, names: Sequence[str]) -> bool:
        """Whether tensor names (without ComfyUI's prefix) are this family's, by its checkpoint marks."""
        if any(name.startswith(self.refuse_marks) for name in names) if self.refuse_marks else False:
            return False
        for mark in self.checkpoint_marks:
            wanted = (mark,) if isinstance(mark, str) else mark
            if all(any(name.startswith(prefix) for name in names) for prefix in wanted):
                return True
        return False

    def sampler_names(self) -> list[str]:
        """The sampler names this family takes (None for the A1111 list: see generation.models.samplers)."""
        return list(self.samplers)

    def kinds(self) -> tuple[str, ...]:
        return tuple(self.pipelines)

    def __post_init__(self) -> None:
        # A job kind without a pipeline is a feature the family lacks, with its reason.
        for kind in ("img2img", "inpaint"):
            by_inpaint = kind == "img2img" and self.img2img_by_inpaint and "inpaint" in self.pipelines
            assert kind in self.pipelines or kind in self.unsupported or by_inpaint, f"{self.id}: no {kind} pipeline and no reason"
        # A ControlNet is declared or refused, not both.
        assert self.controlnet is None or "controlnet" not in self.unsupported, f"{self.id}: a ControlNet and a reason against it"
        # A video family says why it draws no pictures; a picture family draws no clips of its own.
        assert self.video_support is None or "pictures" in self.unsupported, (
            f"{self.id}: a video family without its reason against pictures"
        )
        assert "video" not in self.unsupported, f"{self.id}: `video` is refused by the absence of `video_support`"
        assert all(c in CACHES for c in self.caches), f"{self.id}: unknown caches {self.caches}"
        assert bool(self.caches) != bool(self.no_cache), f"{self.id}: caches, or why it has none (no_cache), not both"
