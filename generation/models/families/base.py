"""What a model family is, as data: the `Family` every family module declares. Torch-free: the
chat side reads it to pick defaults and refuse options before queueing; the loader and the
engine read it to build pipelines, schedulers and prompt conditionings.

A family is an architecture people name ("SDXL", "FLUX.1"): the same pipelines, text encoders,
size rule, samplers and features for every model of it. Variants (FLUX.1-dev and -schnell) share
everything but their defaults (`Variant`). A feature a family lacks is named in `unsupported` with
the reason a user reads when they ask for it, so nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

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
    # Its instruction editing (/edit), for the variants that do it (None: none of them).
    edit: EditSupport | None = None
    description: str = ""  # one line for /models and the docs

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
        # model_index.json first: its pipeline class says more than the denoiser's config (FLUX.1
        # Kontext's transformer is configured as FLUX.1-dev's)
        for wanted_of, found in ((lambda v: v.index, index), (lambda v: v.config, denoiser_config)):
            for variant in self.variants:
                wanted = wanted_of(variant)
                if wanted and found is not None and all(found.get(k) == v for k, v in wanted.items()):
                    return variant.name
        return None

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
