"""What ControlNet offers here, torch-free, for the command layer: the control types and their
preprocessors, which ControlNet model serves a job, and whether it fits the job's model.

A type is what the map shows (edges, depth, a pose, ...). Its preprocessor turns a picture into
that map (`generation.control.preprocess`); `none` uses the picture itself as the map (a map
edited by hand, or one the bot showed earlier). Names follow A1111's sd-webui-controlnet, so
the PNG `parameters` read the same there ("Module: canny").

ControlNet models come from the `controlnets` config (name -> type, source, architecture). A
ControlNet is made for one family (its config.json's `_class_name`: SD's `ControlNetModel`, told
apart by its text width, `SD3ControlNetModel`, `QwenImageControlNetModel`, `ZImageControlNetModel`)
and steers only models of it (`fit_problem`). On the built-in tiny models of the families that take
ControlNets, the built-in random-weight `tiny-<type>` ControlNets (generation.control.tiny, built
for the family of the model in use) serve every type, so every control works offline; real models
never use them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from config.models import ARCHITECTURE_NAMES, ControlNetEntry, ModelEntry, source_kind
from generation.models import families
from generation.models.files import model_shapes
from generation.spec import CONTROL_TYPES, ControlRef

TINY_PREFIX = "tiny-"
TINY_PIX2PIX = "tiny-pix2pix"  # the built-in Instruct Pix2Pix model of the tiny model
TYPE_ALIASES = {
    "edge": "canny",
    "edges": "canny",
    "pose": "openpose",
    "lines": "lineart",
    "line": "lineart",
    "anime": "lineart_anime",
    "lineart-anime": "lineart_anime",
    "hed": "softedge",
    "soft": "softedge",
    "sketch": "scribble",
    "qrcode": "qr",
    "qr-code": "qr",
}
# type -> its preprocessors (A1111's module names), the default first. `none` is always allowed.
PREPROCESSORS = {
    "canny": ("canny",),
    "depth": ("depth",),
    "openpose": ("openpose_full", "openpose", "openpose_face", "openpose_hand"),
    "lineart": ("lineart_realistic", "lineart_coarse"),
    "lineart_anime": ("lineart_anime",),
    "softedge": ("softedge_hed", "softedge_pidinet"),
    "scribble": ("scribble_xdog", "scribble_hed"),
    "tile": ("tile_resample",),
    "qr": ("qr",),
}
# Short spellings of `--pre` (`--pre pidinet` for softedge_pidinet).
PRE_ALIASES = {
    "full": "openpose_full",
    "face": "openpose_face",
    "hand": "openpose_hand",
    "body": "openpose",
    "realistic": "lineart_realistic",
    "coarse": "lineart_coarse",
    "anime": "lineart_anime",
    "pidinet": "softedge_pidinet",
    "xdog": "scribble_xdog",
    "resample": "tile_resample",
}
# What each preprocessor needs that is configured (None: nothing, it runs on OpenCV or segno).
NEEDS = {
    "depth": "SDBOT_DEPTH_MODEL",
    "openpose_full": "SDBOT_ANNOTATORS",
    "openpose": "SDBOT_ANNOTATORS",
    "openpose_face": "SDBOT_ANNOTATORS",
    "openpose_hand": "SDBOT_ANNOTATORS",
    "lineart_realistic": "SDBOT_ANNOTATORS",
    "lineart_coarse": "SDBOT_ANNOTATORS",
    "lineart_anime": "SDBOT_ANNOTATORS",
    "softedge_hed": "SDBOT_ANNOTATORS",
    "softedge_pidinet": "SDBOT_ANNOTATORS",
    "scribble_hed": "SDBOT_ANNOTATORS",
}
CANNY_DEFAULTS = (100, 200)  # A1111's low and high thresholds


def control_type(word: str) -> str | None:
    """The canonical type a word names, or None."""
    lowered = word.strip().lower()
    canonical = TYPE_ALIASES.get(lowered, lowered)
    return canonical if canonical in CONTROL_TYPES else None


def preprocessor_for(type_: str, pre: str | None) -> str | None:
    """The preprocessor `--pre` picks for a type (its default when not given; "none" for none),
    or None when the type has no such preprocessor."""
    if pre is None:
        return PREPROCESSORS[type_][0]
    lowered = pre.strip().lower()
    if lowered == "none":
        return "none"
    if lowered == "hed":
        lowered = "softedge_hed" if type_ == "softedge" else "scribble_hed"
    lowered = PRE_ALIASES.get(lowered) or lowered
    return lowered if lowered in PREPROCESSORS[type_] else None


@dataclass(frozen=True)
class ControlChoice:
    name: str
    entry: ControlNetEntry


def has_tiny_controlnets(model: ModelEntry) -> bool:
    """Whether `model` is a built-in tiny model of a family that takes ControlNets (tiny, tiny-sd3,
    tiny-qwen, tiny-zimage): the built-in tiny ControlNets of its family serve it."""
    return model.kind == "tiny" and families.family(model.family).controlnet is not None


def available_controlnets(configured: dict[str, ControlNetEntry], model: ModelEntry) -> dict[str, ControlNetEntry]:
    """The ControlNets a job on `model` may use: the configured ones, and on a tiny model the
    built-in tiny ones of its family."""
    found = dict(configured)
    if has_tiny_controlnets(model):
        found.update({f"{TINY_PREFIX}{t}": ControlNetEntry(source="tiny", type=t) for t in CONTROL_TYPES})  # type: ignore[arg-type]
    return found


def choose_controlnet(configured: dict[str, ControlNetEntry], model: ModelEntry, type_: str, name: str | None) -> ControlChoice:
    """The ControlNet for a control of `type_` on `model`: `name` if given, else the first of that
    type that fits the model. ValueError with what to configure when none fits."""
    options = available_controlnets(configured, model)
    if name is not None:
        key = next((k for k in options if k.lower() == name.strip().lower()), None)
        if key is None:
            known = ", ".join(options) or "none are configured"
            raise ValueError(f"There is no ControlNet named `{name}` here. ControlNets: {known}.")
        entry = options[key]
        if entry.type != type_:
            raise ValueError(f"The ControlNet `{key}` is for {entry.type} maps, not {type_}.")
        problem = fit_problem(entry, model)
        if problem:
            raise ValueError(f"The ControlNet `{key}` doesn't fit the model `{model.display_name}`: {problem}")
        return ControlChoice(key, entry)
    fitting = [k for k, e in options.items() if e.type == type_ and fit_problem(e, model) is None]
    if fitting:
        return ControlChoice(fitting[0], options[fitting[0]])
    others = [k for k, e in options.items() if e.type == type_]
    if others:
        raise ValueError(
            f"No {type_} ControlNet fits the model `{model.display_name}`: {', '.join(f'`{k}`' for k in others)} "
            f"{'is' if len(others) == 1 else 'are'} for another model ({fit_problem(options[others[0]], model)}). "
            "Pick another model with `--model`, or ask an admin to add one to SDBOT_CONTROLNETS."
        )
    raise ValueError(
        f"There is no {type_} ControlNet here. An admin adds one to SDBOT_CONTROLNETS "
        f'(e.g. `{{"{type_}": {{"type": "{type_}", "source": "/models/controlnet-{type_}"}}}}`).'
    )


# ControlNet classes of families sdbot doesn't run ControlNets for, as people name them (the refusal).
_ELSEWHERE = {
    "FluxControlNetModel": "FLUX.1",
    "FluxMultiControlNetModel": "FLUX.1",
    "ControlNetUnionModel": "SDXL's ControlNet Union (not loaded here)",
    "ControlNetXSAdapter": "ControlNet-XS (not loaded here)",
    "SparseControlNetModel": "AnimateDiff's SparseCtrl",
    "HunyuanDiT2DControlNetModel": "HunyuanDiT",
    "SanaControlNetModel": "Sana",
    "CosmosControlNetModel": "Cosmos",
}
_UNET_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
SD_LABEL = "SD 1.x, 2.x or SDXL"  # an SD ControlNet of no standard text width


@dataclass(frozen=True)
class MadeFor:
    """The family a ControlNet is made for: `family` (an id on the layer; None for one elsewhere,
    or an SD ControlNet of no standard width) and how people name it; an SD one's text width."""

    family: str | None
    label: str
    width: int | None = None


def made_for(entry: ControlNetEntry) -> MadeFor | None:
    """What `entry` is made for, from its config.json (a folder, or a Hub id in the local cache),
    else its `architecture`; None when neither says."""
    config = _config(entry.source)
    class_name = config.get("_class_name") if config else None
    if class_name == "ControlNetModel" or (config and class_name is None and "cross_attention_dim" in config):
        width = config.get("cross_attention_dim") if config else None
        width = width if isinstance(width, int) else None
        found = _UNET_WIDTHS.get(width or 0)
        if found is None and entry.architecture in _UNET_WIDTHS.values():
            found = entry.architecture
        return MadeFor(found, ARCHITECTURE_NAMES[found] if found else SD_LABEL, width)
    by_class = {f.controlnet.model_class: f for f in families.FAMILIES if f.controlnet and f.denoiser == "transformer"}
    if isinstance(class_name, str) and class_name in by_class:
        return MadeFor(by_class[class_name].id, by_class[class_name].label)
    if isinstance(class_name, str):
        return MadeFor(None, _ELSEWHERE.get(class_name, f"something else (a {class_name})"))
    if entry.architecture is not None:
        return MadeFor(entry.architecture, ARCHITECTURE_NAMES[entry.architecture])
    return None


def fit_problem(entry: ControlNetEntry, model: ModelEntry) -> str | None:
    """Why the ControlNet cannot steer `model` (None when it can): the tiny ones steer only the
    tiny models of the families that take ControlNets; others must be made for the model's family
    (config.json's class, or their `architecture`) and, for SD's, read text features as wide as
    the model's."""
    if entry.source == "tiny":
        return None if has_tiny_controlnets(model) else "it is a built-in test ControlNet for the tiny models"
    made = made_for(entry)
    own = families.family(model.family)
    if made is not None:  # SD's ControlNets fit SD's UNets of their width (below); any other, its own family
        made_unet = made.width is not None or made.label == SD_LABEL
        made_unet = made_unet or (made.family is not None and families.family(made.family).denoiser == "unet")
        if made_unet != (own.denoiser == "unet") or (not made_unet and made.family != model.family):
            return f"it is for {made.label}; `{model.display_name}` is {own.label}"
    if model.kind == "tiny":
        return "the tiny models take only their built-in ControlNets"
    if own.denoiser != "unet":
        return None
    shapes = model_shapes(model)
    width = made.width if made is not None else None
    if width is not None and shapes is not None and shapes.context_width is not None:
        if width != shapes.context_width:
            return f"it reads {width}-wide text features; `{model.display_name}` gives {shapes.context_width}"
        return None
    architecture = made.family if made is not None else None
    if architecture and architecture != model.family:
        return f"it is for {ARCHITECTURE_NAMES[architecture]}; `{model.display_name}` is {ARCHITECTURE_NAMES[model.family]}"
    return None


def controlnet_class(source: str) -> str | None:
    """The diffusers class a ControlNet's config.json names (None: no config here, or none named)."""
    found = (_config(source) or {}).get("_class_name")
    return found if isinstance(found, str) else None


def _config(source: str) -> dict[str, object] | None:
    """A ControlNet's config.json: in its folder, or a Hub id's in the local Hugging Face cache."""
    path = Path(source).expanduser() / "config.json"
    try:
        if not path.is_file() and source_kind(source) == "hub":
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "config.json")
            path = Path(cached) if isinstance(cached, str) else path
        found = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def refit(controls: tuple[ControlRef, ...], configured: dict[str, ControlNetEntry], model: ModelEntry) -> tuple[ControlRef, ...]:
    """A job's controls for `model`: each keeps its ControlNet where it fits, else takes the first
    of its type that does (a remix with another `--model`). ValueError when none fits. A model of a
    family without ControlNets keeps them as they are: the job is refused naming its family
    (commands.jobs.model_fit)."""
    if families.family(model.family).controlnet is None:
        return controls
    refit_refs = []
    options = available_controlnets(configured, model)
    for ref in controls:
        if ref.model in options and fit_problem(options[ref.model], model) is None:
            refit_refs.append(ref)
        else:
            refit_refs.append(ref.evolve(model=choose_controlnet(configured, model, ref.type, None).name))
    return tuple(refit_refs)
