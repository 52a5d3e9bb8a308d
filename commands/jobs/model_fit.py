"""What a job may use on its model, settled when it is queued: which uploaded LoRAs and embeddings
it uses and whether each file fits the model (at upload and at use); and what the model's family
can't do, refused (`check_family`, below).

- LoRAs: A1111's `<lora:NAME:WEIGHT>` tags in the prompt (weight optional, default 1; several at
  once) and `--lora NAME:WEIGHT`. The tag stays in the prompt as written (A1111 keeps it in the
  parameters too); the engine removes it from the text it encodes.
- Embeddings: an embedding's name written in the prompt or negative prompt, as a word, stands
  for its vectors, as in A1111.
Names resolve with the user's rights (`storage.assets`): another user's private file is "not
found". A file that does not fit the job's model (`fit_problem`: its layers against the model's,
from configs; or, where this machine has no configs for the model, its architecture) is skipped
with one line in the "queued" reply, as A1111 skips it: people keep their files when they change
models, and a remix with another `--model` still draws.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.errors import UserError
from config.models import ModelEntry, ModelRegistry
from generation.assets.files import AssetError, AssetInfo, check_architecture, inspect_stored
from generation.assets.fit import embedding_misfit, lora_misfit
from generation.models.families import Family, family
from generation.models.files import model_shapes
from generation.prompts.lora_tags import parse_lora_tags, strip_lora_tags
from generation.prompts.schedule import has_schedule
from generation.prompts.weights import parse_prompt_attention
from generation.spec import AssetRef, GenerationSpec
from storage import assets
from storage.tables import Asset

MAX_LORAS_PER_JOB = 8
KIND_LABELS = {"lora": "LoRA", "embedding": "embedding", "hypernetwork": "hypernetwork"}
MAX_HYPERNETWORKS_PER_JOB = 4
HYPERNETWORK_FAMILIES = ("sd1", "sd2")  # A1111's hypernetworks change a UNet's attention inputs


def fit_problem(info: AssetInfo, entry: ModelEntry) -> str | None:
    """Why the file does not fit the model, starting "it is made for ..." and naming the first
    layer that does not fit with both shapes; None when it fits. Checked against the model's
    layers where this machine has its configs, else against its architecture."""
    model = entry.display_name
    if info.kind == "hypernetwork":
        return hypernetwork_misfit(info, entry)
    shapes = model_shapes(entry)
    if shapes is None:
        return check_architecture(info, entry.family, model=model)
    if info.kind == "lora":
        return lora_misfit(info.layers, shapes, model, info.made_for)
    return embedding_misfit(info.vector_widths, shapes, model, info.made_for)


def hypernetwork_misfit(info: AssetInfo, entry: ModelEntry) -> str | None:
    """Why a hypernetwork does not fit the model: not an SD 1.x/2.x model, or none of its widths is
    one the model's attention takes (then it would change nothing)."""
    model = entry.display_name
    made_for = info.architecture_name if info.architecture else f"a model with {'/'.join(map(str, info.widths))}-wide attention"
    if entry.family not in HYPERNETWORK_FAMILIES:
        return f"it is made for {made_for}; hypernetworks work on SD 1.x and 2.x models, and `{model}` is {family(entry.family).label}."
    shapes = model_shapes(entry)
    if shapes is None or not hasattr(shapes, "channels"):
        return (
            None
            if info.architecture in (None, entry.family)
            else f"it is made for {made_for}, and `{model}` is {family(entry.family).label}."
        )
    takes = {shapes.context_width, *shapes.channels}
    if not takes & set(info.widths):
        return (
            f"it is made for {made_for}: none of its widths ({', '.join(map(str, info.widths))}) is one the attention of "
            f"`{model}` takes ({', '.join(str(w) for w in sorted(w for w in takes if w))})."
        )
    return None


@lru_cache(maxsize=256)
def _stored_info(path: str, kind: str, sha256: str) -> AssetInfo | None:
    """What a stored file is, from its header (content-addressed: the same path and hash is the
    same file); None when it cannot be read."""
    try:
        return inspect_stored(Path(path), kind=kind, sha256=sha256)  # type: ignore[arg-type]
    except (OSError, AssetError):
        return None


def stored_misfit(ctx: Context, asset: Asset, entry: ModelEntry) -> str | None:
    """`fit_problem` of a stored file (its header is read once per process)."""
    info = _stored_info(str(ctx.blobs.path(asset.blob_key)), asset.kind, asset.sha256)
    if info is None:
        return "its file can't be read any more; upload it again."
    return fit_problem(info, entry)


def _skip_reason(ctx: Context, asset: Asset, entry: ModelEntry) -> str | None:
    problem = stored_misfit(ctx, asset, entry)
    if problem is None:
        return None
    return f"Skipped the {KIND_LABELS[asset.kind]} `{asset.name}`, which doesn't fit the model `{entry.display_name}`: {problem}"


async def resolve_assets(
    ctx: Context,
    session: AsyncSession,
    user_id: int,
    spec: GenerationSpec,
    flags: tuple[tuple[str, float], ...] | None,
    base: GenerationSpec | None,
    notes: list[str],
) -> GenerationSpec:
    """`spec` with its `loras` and `embeddings` resolved for `user_id`; files that do not fit
    the job's model are left out, each with a line added to `notes`. `base` (the job being
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
    try:
        hypernets = dict((name.lower(), weight) for name, weight in parse_lora_tags(spec.prompt, "hypernet"))
    except ValueError as error:
        raise UserError(str(error)) from None
    if len(hypernets) > MAX_HYPERNETWORKS_PER_JOB:
        problems.append(f"A job may use at most {MAX_HYPERNETWORKS_PER_JOB} hypernetworks; this one names {len(hypernets)}.")
    if len(wanted) > MAX_LORAS_PER_JOB:
        problems.append(f"A job may use at most {MAX_LORAS_PER_JOB} LoRAs; this one names {len(wanted)}.")
    entry = ctx.registry.get(spec.model) or ctx.registry.default
    skipped: list[str] = []

    async def named(kind: str, weights: dict[str, float]) -> list[AssetRef]:
        """The files `weights` names, with the asker's rights; unknown names are problems, files
        that don't fit the model are skipped (with a line)."""
        found = []
        for name, weight in weights.items():
            asset = await assets.find_usable(session, user_id, kind, name)
            if asset is None:
                problems.append(f"I don't know a {KIND_LABELS[kind]} named `{name}`. `/{kind}s` lists the ones you can use.")
            elif reason := _skip_reason(ctx, asset, entry):
                skipped.append(reason)
            else:
                found.append(_ref(asset, weight))
        return found

    loras = await named("lora", wanted)
    hypernetworks = await named("hypernetwork", hypernets)
    embeddings: list[AssetRef] = []
    seen: set[str] = set()
    text = f"{spec.prompt}\n{spec.negative_prompt}"
    if text.strip():
        for asset in await assets.usable(session, user_id, "embedding"):
            if asset.name in seen or not _mentions(text, asset.name):
                continue  # the user's own comes first in `usable`: it wins a shared one's name
            seen.add(asset.name)
            if reason := _skip_reason(ctx, asset, entry):
                skipped.append(reason)
            else:
                embeddings.append(_ref(asset, 1.0))
    if problems:
        raise UserError(*problems)
    notes += skipped
    return spec.evolve(loras=tuple(loras), embeddings=tuple(embeddings), hypernetworks=tuple(hypernetworks), skipped=tuple(skipped))


async def require_usable(session: AsyncSession, account_id: int, spec: GenerationSpec) -> None:
    """Refuse a job whose LoRAs or embeddings `account_id` may not use now: each must be the
    same file (by hash) as the one of that name the account sees, its own or a shared one.

    Checked on every job as it is queued (`commands.jobs.submit`), so no path that copies a spec
    from another job — a button, a reply, "Imagine this", a clip's Reroll or Longer — can carry
    someone else's private file to the presser."""
    missing = []
    for kind, refs in (("lora", spec.loras), ("embedding", spec.embeddings), ("hypernetwork", spec.hypernetworks)):
        for ref in refs:
            found = await assets.find_usable(session, account_id, kind, ref.name)
            if found is None or found.sha256 != ref.sha256:
                missing.append(f"`{ref.name}`")
    if missing:
        raise UserError(
            f"This job was made with {', '.join(missing)}, which you can't use (it is private, or was replaced). "
            "Copy the prompt into `/imagine` with your own files instead."
        )


def _mentions(text: str, name: str) -> bool:
    """`name` written as a word (A1111 matches embedding names in the tokenized text, which CLIP
    lower-cases)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE) is not None


def _ref(asset: Asset, weight: float) -> AssetRef:
    short = str(asset.info.get("addnet_hash") or asset.sha256)[:12]
    return AssetRef(name=asset.name, blob=asset.blob_key, sha256=asset.sha256, format=asset.format, weight=weight, short_hash=short)


# --- what the model's family can't do ----------------------------------------------------------
# Refused before a job is queued: one line per option, naming the family and what to change (never
# a silent drop, never a failure in the worker after the person was told "queued"). Every path that
# queues a job passes here (`submit._enqueue`): typed commands, buttons, replies, remixes, "Imagine
# this". The family says what it lacks and why (generation.models.families); this says which part
# of a job uses which feature.

DRAWN_AT_SIZE = ("txt2img", "img2img", "inpaint", "outpaint")  # kinds the model draws at the spec's size
CLIP_FEATURES = {"animate": "animate", "video2video": "animate", "deforum": "deforum"}


def video_support(entry: ModelEntry) -> Any:
    """The clips of the model's family (`generation.models.families.base.VideoSupport`: its modes,
    frame rule, defaults and `check`, bound to the family so its messages name it), or None for a
    picture model."""
    return family(entry.family).video()


def video_variant(entry: ModelEntry) -> str:
    """The model's variant as its family names it (the family's first, its usual one, when neither
    the settings nor the source's name say: `tiny-wan` is Wan's text-to-video)."""
    return family(entry.family).variant(entry.guessed_variant).name


def video_models(registry: ModelRegistry) -> list[ModelEntry]:
    """The registry's video models (Wan, LTX-Video), in its order."""
    return [entry for entry in registry if video_support(entry) is not None]


def _video_refusals(entry: ModelEntry, spec: GenerationSpec, registry: ModelRegistry | None) -> list[str] | None:
    """A picture job on a video model, a video job on a picture model, or a video job its family's
    check refuses (frames, size, first and last frames): the refusals, in the family's words; None
    when the model and the job's kind agree and the rest of `unsupported` decides."""
    found = family(entry.family)
    support = found.video()
    name = entry.display_name
    if spec.kind == "video":
        if support is None:
            others = ", ".join(f"`{e.display_name}`" for e in video_models(registry)) if registry is not None else ""
            choice = f"Video models here: {others}." if others else "None is configured here (an admin adds a Wan or LTX-Video model)."
            return [f"`/video` can't draw with `{name}`: {found.why_not('video', entry.guessed_variant)}. {choice}"]
        clip = spec.clip
        assert clip is not None
        has_start, has_end = spec.init_image is not None, clip.end_image is not None
        return list(support.check(video_variant(entry), clip.frames, spec.width, spec.height, has_start, has_end))
    if support is None or (spec.clip is not None and not spec.diffusion):  # an upscale of a clip's frames draws nothing
        return None
    feature = CLIP_FEATURES.get(spec.kind, "pictures")  # AnimateDiff's and Deforum's clips, or a picture
    why = found.why_not(feature, entry.guessed_variant) or f"{found.label} draws its own clips"
    return [f"{_what(feature)} can't be drawn with `{name}`: {why}. For a clip: `/video <prompt> --model {name}`."]


def unsupported(entry: ModelEntry, spec: GenerationSpec, registry: ModelRegistry | None = None) -> list[str]:
    """The parts of `spec` the family of `entry` can't draw, one sentence each."""
    found = family(entry.family)
    variant = entry.guessed_variant
    video = _video_refusals(entry, spec, registry)
    if video is not None and (video or spec.kind != "video"):
        return video
    lines = []
    for feature in _features_used(found, spec):
        why = found.why_not(feature, variant)
        if why is not None:
            lines.append(f"{_what(feature)} can't be used with `{entry.display_name}`: {why}.")
    if spec.detail is not None and (why := found.why_not("inpaint", variant)) is not None:  # ADetailer's pass inpaints
        lines.append(f"`--detail` (and the Detail button) can't be used with `{entry.display_name}`: {why}.")
    if found.flow_matching and spec.diffusion and spec.sampler not in found.samplers:
        lines.append(
            f"`{spec.sampler}` can't be used with `{entry.display_name}`: {found.label} draws with flow matching, whose "
            f"samplers are {', '.join(found.samplers)}. Leave out --sampler or use `--sampler {found.default_sampler}`."
        )
    if spec.diffusion and spec.controls and found.controlnet is not None:  # what its ControlNet pipelines lack
        window = any(ref.start > 0 or ref.end < 1 for ref in spec.controls)
        kinds = _control_kinds(found, spec)
        for what, why in found.controlnet.refusals(
            found.label, kinds=kinds, count=len(spec.controls), mode=spec.control_mode, window=window
        ):
            lines.append(f"{what} can't be used with `{entry.display_name}`: {why}.")
    off_at = found.cfg_off_at
    if spec.diffusion and spec.negative_prompt.strip() and off_at is not None and found.supports("negative") and spec.cfg <= off_at:
        lines.append(
            f"A negative prompt does nothing on {found.label} at --cfg {spec.cfg:g}: its guidance is off up to {off_at:g}. "
            f"Raise --cfg or drop --no."
        )
    if spec.diffusion and spec.steps < found.min_steps:
        lines.append(
            f"{found.label} needs at least {found.min_steps} steps; you asked for {spec.steps}. Use `--steps {found.min_steps}` or more."
        )
    multiple = found.size_multiple
    if spec.kind in DRAWN_AT_SIZE and (spec.width % multiple or spec.height % multiple):
        near = f"{_round(spec.width, multiple)}x{_round(spec.height, multiple)}"
        lines.append(f"{found.label} draws sizes in multiples of {multiple}; {spec.width}x{spec.height} is not. Try `--size {near}`.")
    return lines


def check_family(registry: ModelRegistry, spec: GenerationSpec) -> list[str]:
    """`unsupported` for the job's model (nothing for jobs on a model outside the registry: the
    instruct model of /edit, a model removed since)."""
    entry = registry.get(spec.model)
    return unsupported(entry, spec, registry) if entry is not None else []


def _features_used(found: Family, spec: GenerationSpec) -> list[str]:
    used = []
    if spec.diffusion:
        if spec.negative_prompt.strip():
            used.append("negative")
        used += [name for name, on in (("clip_skip", spec.clip_skip not in (None, 1)), ("tile", spec.tile), ("vae", spec.vae)) if on]
        used += [name for name, on in (("regions", spec.regions), ("controlnet", spec.controls), ("lora", spec.loras)) if on]
        if spec.references:
            used.append("reference")
        if spec.embeddings:
            used.append("embeddings")
        if found.prompt_encoding != "a1111":
            used += _prompt_syntax(spec)
        if _cfg_asked(found, spec):
            used.append("cfg")
    if spec.upscale_method == "latent":
        used.append("latent_upscale")
    if spec.kind == "img2img" or spec.upscale_method == "hires":
        used.append("img2img")
    if spec.kind in ("inpaint", "outpaint"):
        used.append("inpaint")
    if spec.kind in CLIP_FEATURES:
        used.append(CLIP_FEATURES[spec.kind])
    return list(dict.fromkeys(used))


def _control_kinds(found: Family, spec: GenerationSpec) -> list[str]:
    """The pipeline kinds a job's ControlNet passes draw with (generation.engine.Engine.diffuse)."""
    kinds = ["txt2img"] if spec.kind == "txt2img" else []
    if spec.kind == "img2img" or spec.upscale_method == "hires":
        kinds.append("inpaint" if found.img2img_by_inpaint else "img2img")
    if spec.kind in ("inpaint", "outpaint"):
        kinds.append("inpaint")
    return kinds


def _cfg_asked(found: Family, spec: GenerationSpec) -> bool:
    """Whether the job sets a guidance other than the one its variant draws with (a variant
    without guidance has cfg 0: anything else was asked for)."""
    defaults = {v.cfg for v in found.variants if "cfg" in v.unsupported}
    return bool(defaults) and spec.cfg not in defaults


def _prompt_syntax(spec: GenerationSpec) -> list[str]:
    """A1111's syntax a plain-text encoder can't follow: weights other than 1, BREAK, editing."""
    used = []
    for text in (spec.prompt, spec.negative_prompt):
        plain = strip_lora_tags(text)
        if has_schedule(plain):
            used.append("prompt_editing")
        fragments = parse_prompt_attention(plain)
        if any(weight == -1.0 and piece == "BREAK" for piece, weight in fragments):
            used.append("break")
        if any(abs(weight - 1.0) > 1e-6 for piece, weight in fragments if piece != "BREAK"):
            used.append("prompt_weights")
    return used


def _what(feature: str) -> str:
    return {
        "negative": "A negative prompt (--no)",
        "cfg": "--cfg",
        "clip_skip": "--clip-skip",
        "tile": "--tile",
        "vae": "--vae",
        "regions": "Regional prompts (--regions)",
        "controlnet": "ControlNet",
        "reference": "Image references (--sref, --oref)",
        "lora": "LoRAs",
        "embeddings": "Embeddings",
        "prompt_weights": "Prompt weights such as (word:1.3)",
        "prompt_editing": "Prompt editing such as [cat:dog:10]",
        "break": "BREAK",
        "latent_upscale": "The latent upscale",
        "img2img": "Drawing from a picture (remix, Vary, --strength, hires upscale)",
        "inpaint": "Inpainting and outpainting (/inpaint, Zoom Out, Pan)",
        "pictures": "Pictures",
        "animate": "AnimateDiff clips",
        "deforum": "Deforum clips",
        "train": "Training",
    }.get(feature, feature)


def _round(value: int, multiple: int) -> int:
    """The nearest multiple (halfway: up, as people round)."""
    return max(multiple, int(value / multiple + 0.5) * multiple)
