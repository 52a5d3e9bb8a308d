"""What a job asks the engine to do. Torch-free: shared by `commands/` (which builds specs) and
`generation/` (which runs them). A spec is stored as the job's `params` JSON, so every field
must stay readable by later versions: add fields with defaults, never rename."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.models import ControlType, ReferenceMethod

# txt2img / img2img: diffusion from a prompt (and an init image). The rest work on one image:
# inpaint (repaint a masked region), outpaint (zoom out / pan: grow the canvas and fill it),
# upscale (lanczos, esrgan, hires, latent), facefix (restore faces). Two kinds answer with text,
# candidate prompts kept in the job's `result`: enhance (a text model writes detailed prompts from
# a short one) and describe (a captioning model and CLIP describe an image).
# instruct: `/edit make it winter`: Instruct Pix2Pix on a configured instruct model, or an edit
# model of the registry (FLUX.1 Kontext, FLUX.2 Klein) with up to its limit of pictures.
# Clips (`spec.clip`): animate (AnimateDiff from a prompt), video2video (AnimateDiff restyling a
# clip's frames), deforum (an img2img loop along keyframe schedules, with 2D warps), video (a video
# model of the registry: Wan, LTX-Video; text-to-video, or image-to-video from `init_image`, with
# `clip.end_image` as the last frame where the model does first-last-frame).
# detail: the Detail button (and /detail): ADetailer's pass alone on a picture (`spec.detail`).
# compare: /compare (A1111's X/Y/Z plot): its cells, each a txt2img or img2img job drawn as it
# would be alone, and the labelled grid of them (`spec.compare`; generation.jobs.compare).
JobKind = Literal[
    "txt2img",
    "img2img",
    "inpaint",
    "outpaint",
    "upscale",
    "facefix",
    "enhance",
    "describe",
    "instruct",
    "animate",
    "video2video",
    "deforum",
    "video",
    "detail",
    "compare",
]
CLIP_KINDS = ("animate", "video2video", "deforum", "video")
TEXT_KINDS = ("enhance", "describe")
UpscaleMethod = Literal["lanczos", "esrgan", "hires", "latent"]
UPSCALE_METHODS: tuple[str, ...] = ("lanczos", "esrgan", "hires", "latent")
DIFFUSION_KINDS = ("txt2img", "img2img", "inpaint", "outpaint", "instruct", "detail", *CLIP_KINDS)  # kinds that run a diffusion model
# ControlNet (generation.control): what a control map shows, and A1111's control modes
# ("My prompt is more important" = prompt, "ControlNet is more important" = control).
CONTROL_TYPES: tuple[str, ...] = get_args(ControlType)
ControlMode = Literal["balanced", "prompt", "control"]

# Mask feathering (`--blur N`): N is how far the blend reaches, in pixels, on each side of the
# mask's edge; pixels farther from the mask are the picture's own. The Gaussian behind it has
# sigma N / 2.5, as A1111's mask-blur kernel reaches 2.5 sigma: the default 10 is A1111's
# default "Mask blur: 4", the same kernel.
MASK_BLUR_DEFAULT = 10
OUTPAINT_MASK_BLUR = 20  # zoom out and pan: a wider seam, laid wholly in the new area
MAX_MASK_BLUR = 64
# /facefix on a CodeFormer model (`--fidelity`): its fidelity weight w, 0 (the most restoration,
# from its codebook) to 1 (the most like the input face); 0.5 is CodeFormer's own default
# (inference_codeformer.py `--w`). GFPGAN and RestoreFormer take none.
CODEFORMER_FIDELITY = 0.5
MASK_BLUR_SIGMAS = 2.5


# ADetailer (`--detail face,hand`): what is detected and repainted at the model's native size after
# a picture is drawn (generation.jobs.detail). Its defaults are ADetailer's: denoising strength
# 0.4, dilate 4 px, mask blur 4 (A1111's sigma; our reach of 10 px, as for `--blur`), padding 32.
DetailTarget = Literal["face", "hand", "person"]
DETAIL_TARGETS: tuple[str, ...] = get_args(DetailTarget)
DETAILED_KINDS = ("txt2img", "img2img", "detail")  # kinds whose pictures get the detail pass
DETAIL_STRENGTH = 0.4


class Spec(BaseModel):
    """A frozen, validated part of a job's request. `evolve` is the one way to derive one from
    another: `model_copy(update=...)` skips validation, so a derived spec could hold what no
    request could (a batch of one with a clip's frames, an unknown kind) and fail only in the
    worker, after the person was told it was queued."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def evolve(self, **changes: Any) -> Self:
        """A copy with `changes`, validated as a new one would be."""
        return type(self).model_validate({**self.model_dump(), **changes})


def mask_blur_sigma(reach: int) -> float:
    """The Gaussian sigma of a feather that reaches `reach` pixels: A1111's "Mask blur" number."""
    return reach / MASK_BLUR_SIGMAS


class AssetRef(Spec):
    """A user's uploaded LoRA or embedding as a job uses it: checked at upload, resolved by name
    (with the user's rights) when the job was made, and read from the blob store by the engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # the name the prompt uses (`<lora:NAME:w>`, or the embedding's word)
    blob: str  # blob key of the checked .safetensors file
    sha256: str
    format: str  # generation.assets.files: kohya, diffusers, locon, loha, lokr, a1111-ti, kohya-sdxl-ti, diffusers-ti
    weight: float = 1.0  # LoRAs: applied to the UNet and the text encoder(s), as A1111 does
    short_hash: str = ""  # A1111's hash for `Lora hashes` / `TI hashes` in the parameters


class ControlRef(Spec):
    """One ControlNet unit of a job: the model, where its map comes from, how strongly and when it
    steers. The map is made again from `image` (or `text`) whenever the job runs, by the same
    preprocessor, so a reroll or a remix is steered exactly as the first picture was."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ControlType
    model: str  # a ControlNet's name (`controlnets` config; `tiny-<type>` on the tiny model)
    preprocessor: str  # generation.control.catalog.PREPROCESSORS, or "none" (the picture is the map)
    image: str | None = None  # blob key of the picture the map is made from (None: qr)
    text: str | None = None  # qr: what the code says (None: `image` is a QR map, preprocessor none)
    weight: float = Field(1.0, ge=0, le=2)  # controlnet_conditioning_scale
    start: float = Field(0.0, ge=0, le=1)  # fraction of the steps where it starts steering
    end: float = Field(1.0, ge=0, le=1)
    low: int | None = Field(None, ge=0, le=255)  # canny thresholds
    high: int | None = Field(None, ge=0, le=255)

    @model_validator(mode="after")
    def _source(self) -> ControlRef:
        map_given = self.image is not None and self.preprocessor == "none"
        if self.type == "qr" and (self.text is None) == (not map_given):
            raise ValueError("a qr control needs its text, or a QR picture as its map (preprocessor none)")
        if self.type != "qr" and (self.image is None or self.text is not None):
            raise ValueError("a control other than qr needs an image and no text")
        if self.start >= self.end:
            raise ValueError("a control's start must come before its end")
        return self


ReferenceKind = Literal["style", "subject"]
# Midjourney's --sw / --ow run 0..1000, default 100; IP-Adapter's scale is what the pipeline gets.
# Style: scale sw/100 on the style layers only (InstantStyle); subject: ow/100 * 0.6 on every
# cross-attention layer (0.6 is IP-Adapter's usual scale beside a prompt; 1.0 drowns the prompt).
STYLE_SCALE_AT_100 = 1.0
SUBJECT_SCALE_AT_100 = 0.6
# The scale at weight 100 per method and kind (scale = weight / 100 * this). FLUX.1's IP-Adapter
# has no style-only layers (it acts on every double block): a style reference is the same image
# prompt at half a subject's scale, so the prompt keeps more of the content. FLUX.1 Redux draws a
# subject only (an image variation): its scale multiplies the picture's tokens beside the prompt's
# (1 at --ow 100: Redux as BFL ships it). generation.control.flux_references applies them.
REFERENCE_SCALES: dict[tuple[str, str], float] = {
    ("ip-adapter", "style"): STYLE_SCALE_AT_100,
    ("ip-adapter", "subject"): SUBJECT_SCALE_AT_100,
    ("flux-ip-adapter", "style"): 0.35,
    ("flux-ip-adapter", "subject"): 0.7,
    ("redux", "subject"): 1.0,
}
MAX_REFERENCE_WEIGHT = 1000
# A reference of several pictures (a moodboard, /blend) is drawn from their mean embedding.
MAX_REFERENCE_PICTURES = 12


class ReferenceRef(Spec):
    """An image reference of a job (`--sref` style, `--oref` subject) through an IP-Adapter (or FLUX.1 Redux): the
    pictures (one, or a moodboard's or /blend's several, drawn from the mean of their embeddings),
    how they are used, and the Midjourney-style weight (0-1000, 100 the default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ReferenceKind
    images: tuple[str, ...] = Field(min_length=1, max_length=MAX_REFERENCE_PICTURES)  # blob keys
    weight: int = Field(100, ge=0, le=MAX_REFERENCE_WEIGHT)
    adapter: str = ""  # the `ip_adapters` config name (`tiny` on the tiny model); "" before resolution
    board: str = ""  # the moodboard the pictures came from (`--sref NAME`), for /info and the PNG
    method: ReferenceMethod = "ip-adapter"  # how `adapter` draws it (config.models.IPAdapterEntry.method)

    @model_validator(mode="before")
    @classmethod
    def _one_image(cls, data: Any) -> Any:
        """Jobs queued before references took several pictures stored one `image`."""
        if isinstance(data, dict) and "image" in data and "images" not in data:
            data = {**data, "images": (data["image"],)}
            del data["image"]
        return data

    @property
    def scale(self) -> float:
        """The scale this weight maps to with its method (REFERENCE_SCALES): an IP-Adapter's scale,
        or the multiplier of Redux's image tokens. A kind its method can't draw is refused before
        queueing (commands.jobs.prompt_features); 0 here."""
        return self.weight / 100 * REFERENCE_SCALES.get((self.method, self.kind), 0.0)


class CameraRef(Spec):
    """A motion LoRA (a camera move: zoom, pan, tilt) on the motion modules of an /animate clip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # a `motion_loras` config name (`tiny-zoom` on the tiny model)
    weight: float = Field(1.0, ge=0, le=2)


class ClipSpec(Spec):
    """What makes a job a clip: its frames and how they move. Frame k of a clip is output k of
    the job (a PNG with the clip's parameters); the MP4 and GIF are made from them.

    `source` are PNG blob keys: for video2video the frames it restyles; for an upscale or face fix
    of a clip the frames it works on one by one; with `extend` (the Longer button) the clip so far,
    which the new `frames` continue from its last frame, the result being the whole longer clip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # frames drawn (with `extend`: the new ones; a video model's call counts the shared first frame
    # too, so Extend grows its clip by frames - 1: generation.jobs.video)
    frames: int = Field(ge=1, le=10_000)
    fps: int = Field(8, ge=1, le=60)
    # animate, video2video: the motion adapter (`motion_adapters` config; `tiny` on the tiny model)
    motion: str | None = None
    cameras: tuple[CameraRef, ...] = ()
    # Played forward then backward, so it loops without a jump (AnimateDiff draws no closed loop).
    loop: bool = False
    # AnimateDiff's context windows (FreeNoise) when frames > context: frames seen at once, and
    # the frames between the starts of two windows.
    context: int = Field(16, ge=2)
    stride: int = Field(4, ge=1)
    source: tuple[str, ...] = ()
    extend: bool = False
    # video: the clip's last frame (a blob key: `--end <picture>`, or the start picture itself with
    # `--loop` on a model that does first-last-frame), and Midjourney's `--motion low|high`, which
    # each video family maps to its own means (generation.models.families: VideoSupport).
    end_image: str | None = None
    motion_amount: Literal["low", "high"] | None = None
    # video: the GPU-seconds this run may take (SDBOT_MAX_CLIP_GPU_SECONDS when it was queued); the
    # engine stops a clip that runs past it.
    max_seconds: float | None = Field(None, gt=0)
    # deforum: Deforum's keyframe schedules (generation.animation.keyframes), and colour coherence
    # to the first frame (LAB). The prompt may be a prompt schedule, `0: a forest, 24: a city`.
    zoom: str = "0:(1.0)"
    angle: str = "0:(0)"
    tx: str = "0:(0)"
    ty: str = "0:(0)"
    strength_schedule: str | None = None  # None: the job's strength at every frame
    color_coherence: bool = True

    @property
    def offset(self) -> int:
        """The frame number the drawn frames start at (schedules continue across Longer)."""
        return len(self.source) if self.extend else 0


class DetailSpec(Spec):
    """ADetailer's pass of a job: the regions to find (in this order; each is repainted on the
    result of the one before), the prompt they are repainted with (None: the job's own), how much
    each may change, how far the mask grows past the detected box and how far its feather
    reaches (pixels outside box + dilate + blur stay the picture's own, bit for bit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: tuple[DetailTarget, ...] = Field(min_length=1, max_length=len(DETAIL_TARGETS))
    prompt: str | None = None
    strength: float = Field(DETAIL_STRENGTH, gt=0, le=1)
    dilate: int = Field(4, ge=0, le=128)
    mask_blur: int = Field(MASK_BLUR_DEFAULT, ge=0, le=MAX_MASK_BLUR)
    padding: int = Field(32, ge=0, le=256)  # "only masked" padding around the region, as ADetailer's

    @model_validator(mode="after")
    def _distinct(self) -> DetailSpec:
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("each detail target once")
        return self


# The cache accelerators a job may name (generation.models.families.base.CACHES says what each is;
# tests/test_caches.py keeps the two equal).
CacheName = Literal["fbc", "taylorseer", "magcache", "pab", "deepcache"]

DraftHow = Literal["lora", "model", "steps"]


class DraftRef(Spec):
    """What made a job a draft (`--draft`: its model family's fast path at half the size,
    commands.explore.draft), and the picture its Enhance button draws in full: the model, size,
    steps, guidance and sampler the job would have had without `--draft`, and a negative prompt the
    draft left out (its guidance was off, so it could have no effect)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    how: DraftHow  # a few-step LoRA on the model, a distilled model of its family, or only fewer steps
    name: str = ""  # the LoRA's file or the draft model, for captions and the PNG ("" with `steps`)
    lora: AssetRef | None = None  # `lora`: the operator's file (SDBOT_DRAFT) in the blob store, applied beside the job's LoRAs
    model: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    steps: int = Field(gt=0)
    cfg: float
    sampler: str
    negative_prompt: str | None = None  # the job's, where the draft left it out (None: the draft used it)

    @model_validator(mode="after")
    def _lora(self) -> DraftRef:
        if (self.how == "lora") != (self.lora is not None):
            raise ValueError("a LoRA draft has its LoRA, and only it")
        return self


class GenerationSpec(Spec):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: JobKind
    prompt: str
    negative_prompt: str = ""
    model: str
    # The model's family when the job was made (generation.models.families: sd1, flux, ...), for
    # the parameters people read; None in jobs made before families were recorded.
    family: str | None = None
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    steps: int = Field(gt=0)
    cfg: float
    sampler: str
    seed: int = Field(ge=0)
    n: int = Field(1, ge=1)
    strength: float | None = Field(None, gt=0, le=1)
    init_image: str | None = Field(None, description="Blob key (sha256) of the init image.")
    # Asked for in an age-restricted (NSFW) channel: its place's safety policy allows by default
    # (commands.people.place.policy_of). The engine ignores it; results show the mark.
    age_restricted: bool = False

    # A1111's "CLIP stop at last layers" (1 = the last layer); None: the model's default.
    clip_skip: int | None = Field(None, ge=1, le=12)
    # --- what was done, for captions and the PNG parameters ("Zoom Out 2x", "Vary (Subtle)") ---
    operation: str | None = None
    # --- seamless textures: circular padding in the UNet and VAE convolutions for this job ---
    tile: bool = False
    # --- a VAE other than the model's own: a name from the `vaes` config ---
    vae: str | None = None
    # --- inpaint (and a masked instruct): the region to repaint, as a mask blob (white = repaint) or words to segment ---
    mask: str | None = Field(None, description="Blob key of an 'L' PNG the size of the init image.")
    select: str | None = None
    # The feather's reach in pixels on each side of the mask's edge (`segment.blur_mask`).
    mask_blur: int = Field(MASK_BLUR_DEFAULT, ge=0, le=MAX_MASK_BLUR)
    only_masked: bool = False  # A1111's "inpaint area: only masked": a padded crop at native size
    only_masked_padding: int = Field(32, ge=0, le=256)
    # --- outpaint: where the init image sits in the width x height canvas (x, y, w, h) ---
    placement: tuple[int, int, int, int] | None = None
    # --- upscale: factor and method; `upscaler` names an `upscalers` config entry (esrgan) ---
    scale: float | None = Field(None, gt=1, le=8)
    upscale_method: UpscaleMethod | None = None
    upscaler: str | None = None
    # --- facefix: a `face_restorers` config entry, and how much of the restored face is used ---
    face_model: str | None = None
    face_fidelity: float | None = Field(None, ge=0, le=1)  # CodeFormer's w; None: CODEFORMER_FIDELITY
    # --- prompt features (the prompt itself holds their syntax) ---
    # Styles applied (in order) when the job was made; their text is already in the prompts.
    styles: tuple[str, ...] = ()
    # The wildcard files the prompt names (`__name__`), as they were when the job was queued, so
    # a job reads the same lines whenever it runs; `{a|b}` and `__name__` are picked per image
    # from its own seed (generation.prompts.wildcards).
    wildcards: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Regional prompting: the layout ("cols", "rows", or Regional Prompter's ratios "1,2" /
    # "1,2;1,1"); the prompt is split into regions by BREAK (generation.prompts.regions).
    regions: str | None = None
    base_ratio: float | None = Field(None, ge=0, le=1)
    # --- uploaded LoRAs (with their weights) and textual-inversion embeddings ---
    loras: tuple[AssetRef, ...] = ()
    embeddings: tuple[AssetRef, ...] = ()
    # A1111 hypernetworks (`<hypernet:NAME:w>`), applied in this order (generation.assets.hypernetworks)
    hypernetworks: tuple[AssetRef, ...] = ()
    # LoRAs and embeddings the prompt named that were left out because they don't fit the model,
    # one line each (commands.jobs.model_fit): said when the job is queued and again with its result.
    skipped: tuple[str, ...] = ()
    # --- ControlNet units (several: multi-ControlNet) and how they weigh against the prompt ---
    controls: tuple[ControlRef, ...] = ()
    control_mode: ControlMode = "balanced"
    # --- instruct: Instruct Pix2Pix's image guidance scale (how closely to keep the picture); on an
    # edit model (FLUX.1 Kontext, FLUX.2 Klein: `model` is a registry model) None, and the pictures
    # beside `init_image` it takes as references (blob keys; "picture 2", "picture 3", ...) ---
    image_cfg: float | None = Field(None, ge=0, le=10)
    edit_images: tuple[str, ...] = Field((), max_length=8)
    # --- image references through an IP-Adapter (`--sref` style, `--oref` subject), one of each ---
    references: tuple[ReferenceRef, ...] = ()
    # --- a draft (`--draft`): drawn by the family's fast path, with what its Enhance button draws;
    # and on a picture Enhance drew, the draft job it enhanced ---
    draft: DraftRef | None = None
    enhanced_from: int | None = None
    # --- clips: /animate, /video2video, /deforum, and upscales or face fixes of a clip's frames ---
    clip: ClipSpec | None = None
    # --- ADetailer's pass (`--detail`, the Detail button): faces, hands, people repainted after drawing ---
    detail: DetailSpec | None = None
    # --- `--chaos 0-100`: each picture's CFG and the order of its prompt's parts varied from its
    # own seed (generation.prompts.chaos; applied in `image_spec`); 0 changes nothing ---
    chaos: int = Field(0, ge=0, le=100)
    # --- /compare: its cells and the axes of its labelled grid (the spec's own fields are its first cell's) ---
    compare: CompareSpec | None = None
    # --- a cache accelerator (`--fast`, SDBOT_CACHE, the model's `cache`; resolved for the model's family
    # when queued: generation.models.families.base.CACHES), on the denoiser of every picture pass; None: none ---
    cache: CacheName | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GenerationSpec:
        if (self.kind == "compare") != (self.compare is not None):
            raise ValueError("a compare job, and only it, holds its cells (compare)")
        if self.kind == "compare":
            return self
        if self.detail is not None and (self.kind not in DETAILED_KINDS or self.clip is not None):
            raise ValueError(f"{self.kind} takes no detail pass")
        if self.kind == "detail" and self.detail is None:
            raise ValueError("detail needs what to detail (detail.targets)")
        if self.kind in CLIP_KINDS or self.clip is not None:
            return self._consistent_clip()
        if self.kind in ("txt2img", "enhance"):
            if self.init_image is not None:
                raise ValueError(f"{self.kind} takes no init_image")
            return self
        if self.init_image is None:
            raise ValueError(f"{self.kind} needs init_image")
        if self.kind in ("img2img", "inpaint", "outpaint") and self.strength is None:
            raise ValueError(f"{self.kind} needs strength")
        if self.kind == "inpaint" and (self.mask is None) == (self.select is None):
            raise ValueError("inpaint needs exactly one of mask and select")
        # A masked /edit: an edit model's inpaint pipeline (generation.jobs.instruct), never Instruct Pix2Pix's.
        if self.kind == "instruct" and self.mask is not None and self.select is not None:
            raise ValueError("a masked edit takes one of mask and select")
        if self.kind == "instruct" and (self.mask is not None or self.select is not None) and self.image_cfg is not None:
            raise ValueError("a masked edit runs on an edit model, which takes no image_cfg")
        if self.kind == "outpaint" and self.placement is None:
            raise ValueError("outpaint needs placement")
        if self.kind == "upscale" and (self.scale is None or self.upscale_method is None):
            raise ValueError("upscale needs scale and upscale_method")
        if self.kind == "upscale" and self.upscale_method in ("hires", "latent") and self.strength is None:
            raise ValueError("hires and latent upscales need strength")
        if self.edit_images and self.kind != "instruct":
            raise ValueError(f"{self.kind} takes no edit_images")
        if len({ref.kind for ref in self.references}) != len(self.references):
            raise ValueError("one reference of each kind (style, subject)")
        return self

    @model_validator(mode="after")
    def _drafted(self) -> GenerationSpec:
        if self.draft is not None and (self.kind != "txt2img" or self.enhanced_from is not None):
            raise ValueError("a draft is drawn from a prompt (txt2img), and is not an enhanced picture")
        return self

    def _consistent_clip(self) -> GenerationSpec:
        clip = self.clip
        if clip is None:
            raise ValueError(f"{self.kind} needs clip")
        if self.kind in ("animate", "video2video") and clip.motion is None:
            raise ValueError(f"{self.kind} needs a motion adapter (clip.motion)")
        if self.kind == "video2video" and (not clip.source or clip.extend or self.strength is None):
            raise ValueError("video2video needs its source frames and strength")
        if self.kind not in CLIP_KINDS and (self.kind not in ("upscale", "facefix") or len(clip.source) != clip.frames):
            raise ValueError("only upscale and facefix work on a clip's frames (one per source frame)")
        if self.kind == "deforum" and self.strength is None:
            raise ValueError("deforum needs strength")
        if self.kind == "video" and (clip.motion is not None or clip.cameras or self.strength is not None):
            raise ValueError("a video model's clip takes no motion adapter, camera moves or strength")
        if clip.end_image is not None and (self.kind != "video" or self.init_image is None):
            raise ValueError("an end frame needs a video job with its first frame (init_image)")
        if clip.motion_amount is not None and self.kind != "video":
            raise ValueError("motion_amount is a video model's")
        if clip.extend and not clip.source:
            raise ValueError("extend needs the clip so far (source)")
        if self.kind == "upscale" and (self.scale is None or self.upscale_method is None):
            raise ValueError("upscale needs scale and upscale_method")
        return self

    @property
    def diffusion(self) -> bool:
        """Whether this job runs the diffusion model (and so uses steps, CFG, sampler and seed)."""
        return self.kind in DIFFUSION_KINDS or self.upscale_method in ("hires", "latent")

    def image_spec(self, index: int) -> GenerationSpec:
        """Image `index` of this job as a job of its own: its seed, and its wildcard picks made
        from that seed (generation.prompts.wildcards) and its `--chaos` variation (generation.prompts.chaos),
        so it draws exactly that image."""
        from generation.prompts.chaos import vary
        from generation.prompts.wildcards import expand

        seed = self.seed + index
        files = self.wildcards
        prompt, cfg = vary(expand(self.prompt, seed, files), self.cfg, seed, self.chaos)
        return self.evolve(
            seed=seed,
            n=1,
            wildcards={},
            prompt=prompt,
            negative_prompt=expand(self.negative_prompt, seed, files, salt="negative"),
            cfg=cfg,
            chaos=0,  # its variation is made: drawn alone, this is exactly that picture
        )

    def frame_spec(self, index: int) -> GenerationSpec:
        """Frame `index` of an upscale or face fix of a clip, as the one-image job that makes it."""
        assert self.clip is not None and self.kind not in CLIP_KINDS
        return self.evolve(clip=None, init_image=self.clip.source[index], n=1)

    @property
    def drawn_loras(self) -> tuple[AssetRef, ...]:
        """Every LoRA the engine applies: the job's own, then a draft's fast-path LoRA (the
        operator's file: not a user's asset, so not in `loras`, which the asset rights check)."""
        return (*self.loras, self.draft.lora) if self.draft is not None and self.draft.lora is not None else self.loras

    def seeds(self) -> list[int]:
        """Image i of a batch uses seed + i, so any image can be reproduced alone."""
        return [self.seed + i for i in range(self.n)]

    def batch_key(self) -> str:
        """Jobs with equal non-empty keys can share one pipeline call (generation.jobs.batched):
        the same model, size, steps, sampler, CFG, clip skip, VAE, tiling, LoRAs with their
        weights and embeddings, cache accelerator; prompts, negative prompts, seeds and `--n` may differ, as each
        image keeps its own generator and its own prompt's conditioning. Empty: this job runs
        alone (not txt2img; ControlNet, image references, regional prompts, a per-step prompt schedule or wildcards,
        which change the pipeline call itself or pick a prompt per image)."""
        from generation.prompts.schedule import has_schedule
        from generation.prompts.wildcards import has_wildcards

        if self.kind != "txt2img" or self.controls or self.regions or self.wildcards or self.references or self.detail or self.chaos:
            return ""
        if any(has_schedule(text) or has_wildcards(text) for text in (self.prompt, self.negative_prompt)):
            return ""
        fields = {
            "kind",
            "model",
            "width",
            "height",
            "steps",
            "cfg",
            "sampler",
            "clip_skip",
            "vae",
            "tile",
            "loras",
            "embeddings",
            "hypernetworks",
            "cache",  # a cached pass skips work an uncached one does: their pictures differ
        }
        shared = self.model_dump(mode="json", include=fields | {"draft"})  # a draft's fast path (its LoRA) is drawn too
        for asset in (*shared["loras"], *shared["embeddings"], *shared["hypernetworks"]):  # what they are, not their names
            asset.pop("short_hash", None)
        if shared["cache"] is None:  # an uncached job's key is what it was before caches existed
            del shared["cache"]
        return hashlib.sha1(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]


class CompareAxis(Spec):
    """One axis of a /compare: what it changes (`steps`, `cfg`, `sampler`, `seed`, `model`,
    `lora`, `strength`, `prompt`) and the values, as the grid labels them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str  # the axis title drawn on the grid ("Steps", "LoRA foxy", "Prompt S/R")
    values: tuple[str, ...] = Field(min_length=1)


class CompareSpec(Spec):
    """A /compare (A1111's X/Y/Z plot): up to three axes and their cells, x fastest, then y, then
    z (cell x + nx·(y + ny·z)). Each cell is a whole one-picture job, made and checked when the
    comparison was queued as that job alone would have been, so a cell's pixels are that job's.
    `batch`: most cells drawn in one pipeline call where their batch keys agree (the batching
    settings when it was queued; 1: each alone)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    axes: tuple[CompareAxis, ...] = Field(min_length=1, max_length=3)
    cells: tuple[GenerationSpec, ...] = Field(min_length=1)
    batch: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> CompareSpec:
        if math.prod(len(axis.values) for axis in self.axes) != len(self.cells):
            raise ValueError("a comparison has one cell for each combination of its axes' values")
        if any(cell.kind not in ("txt2img", "img2img") or cell.n != 1 or cell.compare is not None for cell in self.cells):
            raise ValueError("a comparison's cells are one-picture txt2img or img2img jobs")
        return self


GenerationSpec.model_rebuild()
