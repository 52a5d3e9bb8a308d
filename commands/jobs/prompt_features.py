"""What a prompt's features do to a job before it is queued: styles, wildcards, regions, and the
uploaded LoRAs and embeddings it names (`commands.jobs.model_fit`).

Called by `commands.jobs.submit` inside the job's transaction, after the options are resolved:
1. styles (`--style a,b`): their templates wrap the prompt and negative, in order (A1111's rule);
   the names are kept in the spec for the parameters;
2. wildcards (`{a|b}`, `__name__`): the lists the prompt names are copied into the spec, so the
   job reads the same lines whenever it runs; the picks are made per image by the engine from each
   image's seed. A trial expansion here catches unknown lists and broken braces before queueing;
3. regions (`--regions`): the prompt must have as many parts as the layout has cells.

Image references (`--sref` style, `--oref` subject, weights `--sw` / `--ow`) are fitted here too
(`fit_references`), their pictures found by `commands.jobs.sources.find_references`: a remix,
Vary or Reroll keeps the picture's references (`build_spec` carries them); `--sw` / `--ow` alone
reweigh them, a new `--sref` / `--oref` replaces the one of its kind. Which IP-Adapter draws them
is chosen for the job's model: a built-in tiny one on `tiny` and `tiny-flux`, else the first of
SDBOT_IP_ADAPTERS made for the model's family that draws the job's kinds (FLUX.1 Redux draws a
subject only). Families without a reference method are refused by
`commands.jobs.model_fit` (feature "reference"), before anything is queued.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.jobs.model_fit import resolve_assets
from commands.jobs.options import NO_REFERENCE, ImagineOptions, InitImage
from config.models import ModelEntry, ReferenceMethod
from config.styles import Style, StyleError, apply_styles, load_builtin_styles, load_styles_file
from generation.control.catalog import refit
from generation.models.families import family
from generation.prompts import wildcards
from generation.spec import GenerationSpec, ReferenceKind, ReferenceRef
from storage import prompt_library
from storage.tables import User

TINY_ADAPTER = "tiny"  # generation.control.ip_adapters.TINY (commands/ imports no torch)
TINY_FLUX_ADAPTER = "tiny-flux-ip-adapter"  # generation.control.flux_references.TINY_IP_ADAPTER
REFERENCE_FLAGS: dict[ReferenceKind, tuple[str, str]] = {"style": ("sref", "sw"), "subject": ("oref", "ow")}
log = logging.getLogger(__name__)


REGION_KINDS = ("txt2img", "img2img", "inpaint")  # the kinds that keep the picture's frame


async def apply_prompt_features(
    ctx: Context,
    session: AsyncSession,
    user: User,
    spec: GenerationSpec,
    opts: ImagineOptions,
    base: GenerationSpec | None,
    notes: list[str],
) -> GenerationSpec:
    """The spec with its prompt features applied; what the user should know is added to `notes`
    (LoRAs and embeddings skipped because they do not fit the model)."""
    styles = opts.styles
    if styles:
        library = await style_library(ctx, session, user.id)
        unknown = [name for name in styles if name not in library]
        if unknown:
            raise UserError(
                f"I don't know the style{'s' if len(unknown) > 1 else ''} {', '.join(f'`{n}`' for n in unknown)}. "
                "`/styles` lists them; save your own with `/style save NAME <template with {prompt}>`."
            )
        prompt, negative = apply_styles([library[name] for name in styles], spec.prompt, spec.negative_prompt)
        spec = spec.evolve(prompt=prompt, negative_prompt=negative, styles=styles)
    spec = await _snapshot_wildcards(ctx, session, user.id, spec, base)
    if spec.kind == "instruct" and ctx.registry.get(spec.model) is None:  # Instruct Pix2Pix: your LoRAs fit another model
        if opts.loras or "<lora:" in spec.prompt.lower() or "<lyco:" in spec.prompt.lower():
            notes.append("LoRAs don't apply to /edit on Instruct Pix2Pix: it runs on its own model.")
        spec = spec.evolve(loras=(), embeddings=(), skipped=())
    elif spec.diffusion:
        spec = await resolve_assets(ctx, session, user.id, spec, opts.loras, base, notes)
    elif spec.skipped:  # an upscale or face fix of such a picture uses no LoRA at all
        spec = spec.evolve(skipped=())
    if spec.controls:
        if not spec.diffusion:  # an upscale or face fix of a ControlNet picture draws nothing to steer
            spec = spec.evolve(controls=())
        else:
            try:  # a remix with another --model takes that model's ControlNets of the same types
                controls = refit(spec.controls, ctx.settings.controlnets, ctx.registry.get(spec.model) or ctx.registry.default)
            except ValueError as error:
                raise UserError(str(error)) from None
            spec = spec.evolve(controls=controls)
    if spec.regions:
        _check_regions(spec, inherited=base is not None and base.regions == spec.regions)
    elif spec.base_ratio is not None:
        raise UserError("`--base-ratio` goes with `--regions`: e.g. `--regions cols --base-ratio 0.2`.")
    if spec.kind not in REGION_KINDS and spec.regions:
        # A zoom, pan or upscale changes the picture's frame (or works in tiles): the regions no
        # longer sit where they were, so the parts are joined into one prompt.
        from generation.prompts.region_layout import split_regions

        plain = split_regions(spec.prompt).plain()
        spec = spec.evolve(regions=None, base_ratio=None, prompt=plain)
    return spec


# --- styles ---------------------------------------------------------------------------------------


async def style_library(ctx: Context, session: AsyncSession, user_id: int | None) -> dict[str, Style]:
    """Every style `user_id` may use, by name. Later sources win a name clash: built-in, the
    admin's styles file, global styles saved by admins, the user's own."""
    try:
        library = dict(_file_styles(ctx.settings.styles_file))
    except StyleError as error:  # the admin's file: the log says what is wrong, users that it is the admin's
        log.error("%s", error)
        raise UserError("Styles are unavailable until an admin fixes SDBOT_STYLES_FILE (the bot's log says what is wrong).") from None
    for row in await prompt_library.styles_for(session, user_id):
        library[row.name] = Style(row.name, row.prompt, row.negative, owner=None if row.owner_id is None else "you")
    return library


@lru_cache(maxsize=4)
def _file_styles(extra: Path | None) -> dict[str, Style]:
    styles = dict(load_builtin_styles())
    if extra is not None:
        styles.update(load_styles_file(extra))
    return styles


# --- wildcards ------------------------------------------------------------------------------------


async def _snapshot_wildcards(
    ctx: Context, session: AsyncSession, user_id: int, spec: GenerationSpec, base: GenerationSpec | None
) -> GenerationSpec:
    texts = f"{spec.prompt}\n{spec.negative_prompt}"
    if not wildcards.has_wildcards(texts):
        return spec.evolve(wildcards={})
    own = await prompt_library.wildcards_of(session, user_id)
    inherited = base.wildcards if base is not None else {}
    known: dict[str, tuple[str, ...]] = {}
    wanted = wildcards.referenced_files(texts, known)
    while wanted - known.keys():  # follow lists that name other lists
        for name in wanted - known.keys():
            lines = own.get(name) or folder_list(wildcard_folder(ctx), name) or inherited.get(name)
            if lines is None:
                raise UserError(
                    f"There is no wildcard list `__{name}__`. `/wildcard list` shows the lists you can use; "
                    f"add your own with `/wildcard add {name} first line | second line`."
                )
            known[name] = tuple(lines)
        wanted = wildcards.referenced_files(texts, known)
    snapshot = {name: known[name] for name in sorted(wanted)}
    try:  # the same expansion the engine will make for the first image: bad braces fail here, not later
        wildcards.expand(spec.prompt, spec.seed, snapshot)
        wildcards.expand(spec.negative_prompt, spec.seed, snapshot, salt="negative")
    except wildcards.WildcardError as error:
        raise UserError(str(error)) from None
    return spec.evolve(wildcards=snapshot)


def wildcard_folder(ctx: Context) -> Path:
    return ctx.settings.wildcards_dir or ctx.settings.data_dir / "wildcards"


def folder_list(folder: Path, name: str) -> tuple[str, ...] | None:
    """One list of the configured folder (`colors/warm` is colors/warm.txt, any case), or None."""
    if not wildcards.valid_name(name) or not folder.is_dir():
        return None
    path = folder / f"{name}.txt"
    try:
        if path.is_file():
            return wildcards.read_wildcard_file(path)
        return wildcards.read_wildcard_folder(folder).get(name.lower())  # Colors.txt for __colors__
    except wildcards.WildcardError as error:
        raise UserError(f"The wildcard list `{name}` can't be used: {error}") from None


def folder_lists(ctx: Context) -> Mapping[str, tuple[str, ...]]:
    folder = wildcard_folder(ctx)
    return wildcards.read_wildcard_folder(folder) if folder.is_dir() else {}


# --- regions --------------------------------------------------------------------------------------


def _check_regions(spec: GenerationSpec, *, inherited: bool) -> None:
    from generation.prompts.region_layout import check_regions

    assert spec.regions is not None
    prompt = wildcards.expand(spec.prompt, spec.seed, spec.wildcards) if spec.wildcards else spec.prompt
    problems = check_regions(spec.regions, prompt, spec.base_ratio)
    if problems and inherited:
        problems.append(
            f"The picture you started from was drawn with `--regions {spec.regions}`; add `--regions off` to draw yours without regions."
        )
    if problems:
        raise UserError(*problems)


@dataclass(frozen=True)
class Picked:
    """A reference's pictures as found for a request (one, or a moodboard's), before it is fitted
    to the job's model. Each picture comes with its size in bytes when it is a new upload (recorded
    with the job), else None."""

    kind: ReferenceKind
    pictures: tuple[tuple[InitImage, int | None], ...]
    board: str = ""  # the moodboard they are, if they are one
    default: bool = False  # the person's default moodboard (/settings), not asked for in this request

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(picture.blob_key for picture, _ in self.pictures)


def fit_references(ctx: Context, spec: GenerationSpec, opts: ImagineOptions, picked: Sequence[Picked], notes: list[str]) -> GenerationSpec:
    """The job's references: the remixed picture's, replaced by new ones of their kind and
    reweighed by `--sw` / `--ow`, each with the IP-Adapter that draws it on the job's model."""
    assert all(
        getattr(opts, flag) in (None, NO_REFERENCE) or any(p.kind == kind for p in picked) for kind, (flag, _) in REFERENCE_FLAGS.items()
    ), "--sref/--oref given, but the caller found no picture for them (commands.jobs.sources.find_references)"
    refs = {ref.kind: ref for ref in spec.references if getattr(opts, REFERENCE_FLAGS[ref.kind][0]) != NO_REFERENCE}
    inherited = set(refs)
    default = next((pick for pick in picked if pick.default), None)
    for pick in picked:
        if not (pick.default and pick.kind in refs):  # a remix keeps its picture's own style over the default
            refs[pick.kind] = ReferenceRef(kind=pick.kind, images=pick.images, board=pick.board)
    for kind, (flag, weight_flag) in REFERENCE_FLAGS.items():
        weight = getattr(opts, weight_flag)
        if weight is None:
            continue
        if kind not in refs:
            raise UserError(f"`--{weight_flag}` weighs a {kind} reference: add `--{flag}` with a picture, or leave it out.")
        refs[kind] = refs[kind].evolve(weight=weight)
    if not refs:
        return spec
    if not spec.diffusion:  # an upscale or face fix of such a picture draws nothing to steer
        return spec.evolve(references=())
    if spec.kind == "instruct":
        notes.append("--sref/--oref don't apply to /edit; attach the pictures to it instead, where its model takes references.")
        return spec.evolve(references=())
    if spec.regions:
        raise UserError("Image references (--sref, --oref) and regional prompts (--regions) can't be used together yet; drop one.")
    entry = ctx.registry.get(spec.model) or ctx.registry.default
    asked = any(not pick.default for pick in picked) or opts.sw is not None or opts.ow is not None
    if asked and reference_pictures_limit(entry):
        return _as_reference_pictures(spec, refs, entry, notes)
    if not asked and not family(entry.family).supports("reference"):  # inherited by a remix, or a default, on another family
        if inherited:
            notes.append(f"{family(entry.family).label} can't draw image references, so the picture's --sref/--oref aren't used.")
        return spec.evolve(references=())
    if not asked and default is not None and not inherited:
        try:
            _adapter_for(ctx, spec, set(refs))
        except UserError:  # a default must not stop every drawing on a model without an IP-Adapter
            notes.append(f"Your default moodboard `{default.board}` isn't used: `{entry.display_name}` has no IP-Adapter configured here.")
            return spec.evolve(references=())
    adapter, method = _adapter_for(ctx, spec, set(refs))
    ordered = tuple(refs[kind].evolve(adapter=adapter, method=method) for kind in REFERENCE_FLAGS if kind in refs)  # style first, as drawn
    return spec.evolve(references=ordered)


def reference_pictures_limit(entry: ModelEntry) -> int:
    """How many reference pictures a model's own pipeline reads beside a prompt, where that is its
    reference method (FLUX.2 Klein: 4, Qwen-Image-Edit-Plus: 3: the models that edit with several
    pictures, whose edit pipeline draws a prompt from reference pictures); 0 elsewhere."""
    edit = family(entry.family).edit
    if family(entry.family).supports("reference") or edit is None or edit.pipeline(entry.guessed_variant) is None:
        return 0
    limit = edit.limit(entry.guessed_variant)
    return limit if limit > 1 else 0


def _as_reference_pictures(spec: GenerationSpec, refs: Mapping[str, ReferenceRef], entry: ModelEntry, notes: list[str]) -> GenerationSpec:
    """A drawing with references on a model that reads reference pictures itself: its edit job,
    the pictures (style first) beside the prompt, at the asked size. Such a model has no weights
    and no style/subject split: the prompt says what to take from them."""
    label = family(entry.family).variant(entry.guessed_variant).label or family(entry.family).label
    if spec.init_image is not None:
        raise UserError(
            f"On `{entry.display_name}` ({label}) references are pictures beside the prompt, and a remix can't have them too: "
            "use `/edit <instruction>` with the pictures, or draw from the prompt with --sref/--oref and no picture to remix."
        )
    if spec.controls:
        raise UserError(
            f"On `{entry.display_name}` ({label}) references are pictures beside the prompt, which its ControlNet can't take too: drop one."
        )
    weighed = [f"--{REFERENCE_FLAGS[ref.kind][1]} {ref.weight}" for ref in refs.values() if ref.weight != 100]
    if weighed:
        raise UserError(
            f"`{entry.display_name}` ({label}) reads reference pictures as they are, without a weight: leave out {', '.join(weighed)}."
        )
    keys = [key for kind in REFERENCE_FLAGS if kind in refs for key in refs[kind].images]
    limit = reference_pictures_limit(entry)
    if len(keys) > limit:
        raise UserError(
            f"`{entry.display_name}` ({label}) reads up to {limit} reference pictures; these references have {len(keys)}. "
            "Use a smaller moodboard, or one reference."
        )
    notes.append(f"{label} reads the reference pictures beside your prompt (no style/subject split): say in the prompt what to take.")
    return spec.evolve(
        kind="instruct",
        init_image=keys[0],
        edit_images=tuple(keys[1:]),
        references=(),
        strength=None,
        image_cfg=None,
        operation="References",
    )


def _adapter_for(ctx: Context, spec: GenerationSpec, kinds: Collection[str] = ()) -> tuple[str, ReferenceMethod]:
    """The IP-Adapter (on FLUX.1: its IP-Adapter or Redux) for the job's model that draws every
    reference kind in `kinds`, and its method: ("", "ip-adapter") where the family has no reference
    method (the family check refuses the job with its reason). The first of SDBOT_IP_ADAPTERS made
    for the family that fits; a built-in tiny one on the tiny models (no real one fits them)."""
    entry = ctx.registry.get(spec.model) or ctx.registry.default
    kind = family(entry.family)
    if not kind.supports("reference"):
        return "", "ip-adapter"
    if entry.kind == "tiny":
        return (TINY_FLUX_ADAPTER, "flux-ip-adapter") if entry.family == "flux" else (TINY_ADAPTER, "ip-adapter")
    made_for = {name: adapter for name, adapter in ctx.settings.ip_adapters.items() if adapter.architecture == entry.family}
    for name, adapter in made_for.items():
        if set(kinds) <= set(adapter.kinds):
            return name, adapter.method
    if made_for:  # only Redux, which draws a subject: the job has a style reference
        raise UserError(
            f"On `{entry.display_name}` image references are drawn by Redux ({', '.join(f'`{n}`' for n in made_for)}), which draws "
            f"what a picture shows (--oref), not its style. A style reference (--sref) on {kind.label} needs an IP-Adapter in "
            "SDBOT_IP_ADAPTERS (architecture flux); ask an admin, or use --oref."
        )
    raise UserError(
        f"Image references on `{entry.display_name}` need an IP-Adapter made for {kind.label}, and none is configured here. "
        f"Ask an admin to add one to SDBOT_IP_ADAPTERS (architecture {entry.family}), or leave out --sref/--oref."
    )
