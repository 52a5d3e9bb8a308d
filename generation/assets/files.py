"""Inspect an uploaded LoRA, LyCORIS or textual-inversion file before anything loads it.

Uploaded files are untrusted. This module never unpickles, never calls `torch.load` and never
imports torch. `generation.assets.safetensors_header` reads and checks the container (header, dtypes,
offsets); this module then decides what the file is:

- the name ends in `.safetensors` (pickle-based `.ckpt/.pt/.pth/.bin` are refused, and the reply
  says how to convert them on a trusted machine);
- the tensors form a LoRA (kohya, LoCon, diffusers/peft), a LyCORIS LoHa/LoKr, or an embedding
  (A1111, kohya SDXL, diffusers), of the kind asked for; a full checkpoint is refused;
- the base architecture is read from the shapes (cross-attention context 768 / 1024 / 2048 ->
  SD 1.x / SD 2.x / SDXL; text-encoder width; embedding width), with key names as a fallback;
- LoRAs named by FLUX.1's blocks (for FLUX.1 and Chroma models): `generation.assets.dit_loras`.

Formats, as the key names look (module names use `_` for kohya/LyCORIS, `.` for diffusers):
- kohya:     `lora_unet_<module>.lora_down.weight` [r, in] / `.lora_up.weight` [out, r] /
             `.alpha` [] ; text encoders `lora_te_` (SD 1.x/2.x), `lora_te1_` + `lora_te2_` (SDXL)
- locon:     kohya with conv modules (resnet convs, samplers): `lora_down` [r, in, k, k]
             (optionally `lora_mid` for a Tucker middle); 1x1 `proj_in/proj_out` convs of a plain
             SD 1.x LoRA do not count
- diffusers: `unet.<module>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r],
             `text_encoder.` / `text_encoder_2.` (peft: `base_model.model.`), and the older
             `.lora.down.weight`, `.lora_linear_layer.down.weight`, `processor.to_q_lora.down.weight`
- loha:      `<kohya module>.hada_w1_a` [out, r] `hada_w1_b` [r, in] `hada_w2_a` `hada_w2_b` (+ `alpha`,
             Tucker `hada_t1`/`hada_t2` with `hada_w*_a` [r, out])
- lokr:      `<kohya module>.lokr_w1` or `lokr_w1_a`+`lokr_w1_b`, `lokr_w2` or `lokr_w2_a`+`lokr_w2_b`
             (+ `alpha`, `lokr_t2`); the weight is kron(w1, w2)
- a1111-ti:  `emb_params` [n, dim] (or a flattened `string_to_param.*`)
- kohya-sdxl-ti: `clip_l` [n, 768] and `clip_g` [n, 1280]
- diffusers-ti: one tensor [dim] or [n, dim] whose key is the token
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from config.models import ARCHITECTURE_NAMES
from generation.assets.dit_loras import FORMAT_NAMES as DIT_FORMAT_NAMES
from generation.assets.dit_loras import flux_lora
from generation.assets.family_loras import family_lora
from generation.assets.fit import Claim, FileLayer, context_widths, layer_of, made_for, metadata_claim, text_encoder_widths
from generation.assets.hypernetwork_files import check_shapes, read_pt, structure_of, to_safetensors, widths_of
from generation.assets.safetensors_header import (
    CONVERT_ADVICE,
    FLOAT_DTYPES,
    MAX_TENSORS,
    AssetError,
    TensorEntry,
    is_int,
    quote,
    read_header,
    read_header_file,
)
from generation.errors import PICKLE_SUFFIXES

AssetKind = Literal["lora", "embedding", "hypernetwork"]
# The text widths that name a hypernetwork's model (the cross-attention context it changes).
HYPERNETWORK_CONTEXTS = {768: "sd1", 1024: "sd2"}

# --- limits ---------------------------------------------------------------------------------------
MAX_EMBEDDING_VECTORS = 75  # one prompt chunk; an embedding with more could never be used whole
MAX_EMBEDDING_DIM = 4096
MAX_TOKEN_CHARS = 100  # a diffusers embedding's token (its key)
# Metadata (kohya's `ss_*` and `modelspec.*`): what is read for hints, and how much of it.
MAX_TAG_FREQUENCY_CHARS = 1024 * 1024  # a larger `ss_tag_frequency` is ignored, not parsed
MAX_TAGS_SCANNED = 100_000
TOP_TAGS = 5
MAX_TRIGGER_CHARS = 64
MAX_TITLE_CHARS = 100
MAX_NAME_CHARS = 64  # asset names

SAFETENSORS_SUFFIX = ".safetensors"

# Context width of the UNet's cross-attention (attn2 to_k/to_v input) -> architecture.
CONTEXT_DIMS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
# Text-encoder width -> architecture (1280: SDXL's second encoder, OpenCLIP bigG).
TEXT_DIMS = {768: "sd1", 1024: "sd2", 1280: "sdxl"}
# A single-encoder embedding's width -> architecture (1280 alone is half an SDXL embedding).
EMBEDDING_DIMS = {768: "sd1", 1024: "sd2"}

LORA_FORMATS = ("kohya", "locon", "diffusers", "loha", "lokr", "comfyui")
EMBEDDING_FORMATS = ("a1111-ti", "kohya-sdxl-ti", "diffusers-ti")
FORMAT_NAMES = {
    "kohya": "kohya LoRA",
    "locon": "kohya LoCon (LoRA with conv layers)",
    "diffusers": "diffusers/peft LoRA",
    "loha": "LyCORIS LoHa",
    "lokr": "LyCORIS LoKr",
    "a1111-ti": "A1111 textual-inversion embedding",
    "kohya-sdxl-ti": "kohya SDXL textual-inversion embedding",
    "diffusers-ti": "diffusers textual-inversion embedding",
    **DIT_FORMAT_NAMES,
}


@dataclass(frozen=True)
class AssetInfo:
    kind: AssetKind
    format: str  # one of LORA_FORMATS or EMBEDDING_FORMATS
    # "sd1", "sd2", "sdxl", "flux" (FLUX.1's layout: FLUX.1 or Chroma), "sd3", "qwen", "zimage", "flux2";
    # None when the file does not tell (its layers fit several; the model's fit check decides)
    architecture: str | None
    rank: int | None  # LoRAs: the largest rank (LoHa/LoKr: inner dim; None for full-rank LoKr)
    tensors: int
    size: int  # bytes
    sha256: str
    vectors: int | None = None  # embeddings: how many token vectors
    token: str | None = None  # diffusers-ti: the token its key names
    triggers: tuple[str, ...] = ()  # hints from kohya's metadata: output name, most used tags
    title: str | None = None  # `modelspec.title`
    modules: int = 0  # LoRAs: how many layers it changes
    components: tuple[str, ...] = ()  # LoRAs: of "unet", "transformer", "te1", "te2"
    # What it needs of a model (generation.assets.fit): the layers a LoRA changes and their shapes,
    # the widths that name its model; an embedding's vector width per text encoder.
    layers: tuple[FileLayer, ...] = field(default=(), repr=False)
    context_width: int | None = None  # LoRAs: the text features its cross-attention reads
    text_width: int | None = None  # LoRAs: its (first) text encoder's width
    vector_widths: dict[str, int] = field(default_factory=dict)  # embeddings: {"clip_l": 768, "clip_g": 1280}
    claim: Claim | None = None  # what its metadata says it was made for
    transformer_width: int | None = None  # DiT LoRAs: the transformer's inner width (3072 for FLUX.1)
    left_out: int = 0  # DiT LoRAs: text-encoder layers, which are not loaded (dit_loras, family_loras)
    left_out_what: str = "T5"  # what those layers are, in the upload reply ("text-encoder", "norm")
    widths: tuple[int, ...] = ()  # hypernetworks: the attention input widths it changes

    @property
    def made_for(self) -> str | None:
        """ "SDXL (2048-wide text features)", "a model with 32-wide text features", ...; None
        when the file says nothing about its model."""
        return made_for(self.architecture, self.context_width, self.text_width, self.vector_widths, self.transformer_width)

    @property
    def architecture_name(self) -> str:
        """ "SDXL"; for a file of no known architecture, its widths ("a model with 32-wide text features")."""
        return ARCHITECTURE_NAMES.get(self.architecture or "") or self.made_for or "any model (its layers don't say which)"

    def stored_fields(self, *, triggers: list[str], title: str | None, addnet_hash: str, **more: Any) -> dict[str, Any]:
        """What `storage.assets.add` keeps of the file: its columns and its `info` (with the
        trigger words and title to show, its AddNet hash, and `more`, e.g. `trained`). One place
        for an upload and a trained file alike, so both read back the same."""
        return {
            "sha256": self.sha256,
            "format": self.format,
            "architecture": self.architecture,
            "rank": self.rank,
            "size": self.size,
            "info": {
                "triggers": triggers,
                "title": title,
                "tensors": self.tensors,
                "vectors": self.vectors,
                "addnet_hash": addnet_hash,
                "made_for": self.made_for,
                **more,
            },
        }

    def summary(self) -> str:
        """One line for the upload reply."""
        parts = [f"{FORMAT_NAMES[self.format]} for {self.architecture_name}"]
        if self.kind == "lora":
            parts.append(f"rank {self.rank}" if self.rank is not None else "full rank")
            where = {"unet": "UNet", "transformer": "transformer", "te1": "text encoder", "te2": "text encoder 2"}
            parts.append(f"{self.modules} layers ({', '.join(where[c] for c in self.components)})")
            if self.left_out:
                parts.append(f"{self.left_out} {self.left_out_what} layers left out (diffusers does not load them)")
        else:
            parts.append(f"{self.vectors} vector{'s' if self.vectors != 1 else ''}")
        parts.append(_megabytes(self.size))
        line = ", ".join(parts)
        if self.triggers:
            line += "; trigger words: " + ", ".join(self.triggers)
        return line


# --- names ----------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}")


def valid_asset_name(name: str) -> bool:
    """Letters, digits, `_`, `-` and `.`; 1-64 characters; not starting with `.`."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def safe_name_from_filename(filename: str) -> str:
    """A valid asset name made from an uploaded file's name: the base name without its suffix,
    accents dropped, other characters turned into `_`, at most 64 characters ("asset" if nothing
    is left)."""
    base = re.split(r"[\\/]", filename or "")[-1]
    lowered = base.lower()
    for suffix in (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES):
        if lowered.endswith(suffix):
            base = base[: -len(suffix)]
            break
    ascii_base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", ascii_base)
    name = re.sub(r"_{2,}", "_", name).lstrip("._")[:MAX_NAME_CHARS].rstrip("._")
    return name if valid_asset_name(name) else "asset"


# --- classification ---------------------------------------------------------------------------------

# kohya / LyCORIS: `lora_unet_<module>.<suffix>`, text encoders `lora_te_`, `lora_te1_`, `lora_te2_`.
_KOHYA_KEY = re.compile(r"(lora_unet|lora_te[12]?)_([A-Za-z0-9_]+)\.([a-z0-9_]+(?:\.weight)?)")
_KOHYA_SUFFIXES = frozenset(
    {
        "lora_down.weight",
        "lora_up.weight",
        "lora_mid.weight",
        "alpha",
        "dora_scale",
        "hada_w1_a",
        "hada_w1_b",
        "hada_w2_a",
        "hada_w2_b",
        "hada_t1",
        "hada_t2",
        "lokr_w1",
        "lokr_w1_a",
        "lokr_w1_b",
        "lokr_w2",
        "lokr_w2_a",
        "lokr_w2_b",
        "lokr_t2",
    }
)
_KOHYA_COMPONENTS = {"lora_unet": "unet", "lora_te": "te1", "lora_te1": "te1", "lora_te2": "te2"}
# diffusers / peft: `<prefix>.<module><suffix>`; prefix-less UNet keys are diffusers' oldest layout.
_DIFFUSERS_KEY = re.compile(
    r"(unet\.|text_encoder\.|text_encoder_2\.|base_model\.model\.|(?=(?:down_blocks|up_blocks|mid_block)\.))"
    r"(.+?)"
    r"(\.lora_A\.weight|\.lora_B\.weight|\.lora_B\.bias|\.lora\.down\.weight|\.lora\.up\.weight"
    r"|\.lora_linear_layer\.down\.weight|\.lora_linear_layer\.up\.weight|_lora\.down\.weight|_lora\.up\.weight"
    r"|\.alpha|\.lora_magnitude_vector(?:\.weight)?)"
)
_DIFFUSERS_DOWN = {".lora_A.weight", ".lora.down.weight", ".lora_linear_layer.down.weight", "_lora.down.weight"}
_DIFFUSERS_UP = {".lora_B.weight", ".lora.up.weight", ".lora_linear_layer.up.weight", "_lora.up.weight"}
_DIFFUSERS_COMPONENTS = {"unet.": "unet", "text_encoder.": "te1", "text_encoder_2.": "te2", "": "unet"}

# A full model: original (LDM) checkpoint prefixes, or a diffusers UNet / VAE / CLIP state dict.
_CHECKPOINT_KEY = re.compile(
    r"(model\.diffusion_model\.|first_stage_model\.|cond_stage_model\.|conditioner\.embedders\.|model_ema\."
    r"|(?:unet\.|vae\.|text_encoder(?:_2)?\.)?(?:down_blocks|up_blocks|mid_block|conv_in|conv_out|conv_norm_out"
    r"|time_embedding|add_embedding|encoder\.down_blocks|decoder\.up_blocks|quant_conv|post_quant_conv"
    r"|text_model\.embeddings|text_model\.encoder\.layers)\.)"
)

_PROJ_1X1 = re.compile(r"(?:proj_in|proj_out)$")
_SDXL_ONLY_NAME = re.compile(r"transformer_blocks_[1-9]")  # SD 1.x/2.x have one block per attention


@dataclass
class _Module:
    component: str  # unet, te1, te2
    name: str  # normalised with `_`
    parts: dict[str, TensorEntry]


def inspect_asset(data: bytes, filename: str, *, kind: AssetKind, max_bytes: int, max_tensors: int = MAX_TENSORS) -> AssetInfo:
    """What an uploaded file is, checked from its bytes alone; AssetError (with a message for the
    user) when sdbot will not use it as a `kind`."""
    if kind not in ("lora", "embedding", "hypernetwork"):
        raise ValueError(f"unknown asset kind {kind!r}")
    shown = quote(filename)
    lowered = filename.lower()
    suffix = "." + lowered.rsplit(".", 1)[-1] if "." in lowered else ""
    if suffix in PICKLE_SUFFIXES:
        raise AssetError(
            f"{shown} is a pickle-based PyTorch file ({suffix}). Opening one can run any code hidden "
            f"in it, so sdbot accepts only .safetensors files. {CONVERT_ADVICE}"
        )
    header = None
    if not lowered.endswith(SAFETENSORS_SUFFIX):
        # judged by its content: a LoRA saved from `/lora download` in the console keeps the store's name
        try:
            header = read_header(data, filename, max_tensors=max_tensors)
        except AssetError:
            what = {"lora": "LoRAs and LyCORIS files", "embedding": "embeddings"}.get(kind)
            raise AssetError(
                f"{shown} is not a .safetensors file. Upload {what} as .safetensors files."
                if what
                else f"{shown} is neither an A1111 hypernetwork (.pt) nor a .safetensors file."
            ) from None
    if len(data) > max_bytes:
        raise AssetError(
            f"{shown} is {_megabytes(len(data))}, over the {_megabytes(max_bytes)} limit for uploads. "
            "Upload a smaller file (a LoRA of lower rank, or saved in F16)."
        )
    tensors, metadata = header or read_header(data, filename, max_tensors=max_tensors)
    return _classify(shown, kind, tensors, metadata, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def inspect_stored(path: Path, *, kind: AssetKind, sha256: str) -> AssetInfo:
    """What a file stored at upload is, from its header alone (the bytes were checked then and
    are content-addressed): what a job needs to check it against its model."""
    tensors, metadata = read_header_file(path)
    return _classify(quote(path.name), kind, tensors, metadata, size=path.stat().st_size, sha256=sha256)


def _classify(
    shown: str, kind: AssetKind, tensors: dict[str, TensorEntry], metadata: dict[str, str], *, size: int, sha256: str
) -> AssetInfo:
    triggers, title = metadata_hints(metadata)
    if kind == "hypernetwork" or structure_of(metadata, shown) is not None:
        return _hypernetwork(shown, kind, tensors, metadata, size=size, sha256=sha256)
    common = {
        "tensors": len(tensors),
        "size": size,
        "sha256": sha256,
        "triggers": triggers,
        "title": title,
        "claim": metadata_claim(metadata),
    }

    # The DiT families' block names: SD 3.5, Qwen-Image, Z-Image, FLUX.2 (or joint blocks several of
    # them share), then FLUX.1's (FLUX.1 and Chroma models).
    dit = family_lora(shown, tensors) or flux_lora(shown, tensors)
    if dit is not None:
        if kind != "lora":
            family = ARCHITECTURE_NAMES.get(dit["architecture"] or "")
            what = _article(f"{family} LoRA") if family else "a LoRA for a transformer model"
            raise AssetError(f"{shown} is {what}, not an embedding. Upload it as a LoRA instead.")
        return AssetInfo(kind="lora", **dit, **common)
    lora = _lora_modules(shown, tensors)
    embedding = None if lora is not None else _embedding_layout(shown, tensors)
    if lora is not None:
        fmt, modules = lora
        if kind != "lora":
            raise AssetError(f"{shown} is {_article(FORMAT_NAMES[fmt])}, not an embedding. Upload it as a LoRA instead.")
        layers = tuple(layer for m in modules if (layer := layer_of(m.component, m.name, m.parts)) is not None)
        contexts, text_widths = context_widths(layers), text_encoder_widths(layers)
        return AssetInfo(
            kind="lora",
            format=fmt,
            architecture=_lora_architecture(modules, contexts, text_widths),
            rank=_rank(fmt, modules),
            modules=len(modules),
            components=tuple(c for c in ("unet", "te1", "te2") if any(m.component == c for m in modules)),
            layers=layers,
            context_width=next(iter(contexts)) if len(contexts) == 1 else None,
            text_width=next(iter(text_widths)) if len(text_widths) == 1 else None,
            **common,
        )
    if embedding is not None:
        fmt, architecture, vectors, token, widths = embedding
        if kind != "embedding":
            raise AssetError(f"{shown} is {_article(FORMAT_NAMES[fmt])}, not a LoRA. Upload it as an embedding instead.")
        return AssetInfo(
            kind="embedding",
            format=fmt,
            architecture=architecture,
            rank=None,
            vectors=vectors,
            token=token,
            vector_widths=widths,
            **common,
        )
    raise AssetError(
        f"{shown} is not a LoRA, LyCORIS (LoHa/LoKr) or embedding file sdbot knows "
        f"(its first tensor is {quote(next(iter(tensors)))}). sdbot takes kohya/LoCon, diffusers/peft, "
        "LoHa and LoKr LoRAs, and A1111, kohya SDXL and diffusers embeddings."
    )


def prepare_upload(data: bytes, filename: str, *, kind: AssetKind, max_bytes: int) -> tuple[AssetInfo, bytes]:
    """What an upload is, and the bytes to store for it: the file itself, or, for an A1111
    hypernetwork `.pt`, its `.safetensors` form (read without running code: hypernetwork_files)."""
    if kind == "hypernetwork" and filename.lower().endswith(".pt"):
        if len(data) > max_bytes:
            raise AssetError(f"{quote(filename)} is {_megabytes(len(data))}, over the {_megabytes(max_bytes)} limit for uploads.")
        data = to_safetensors(read_pt(data, quote(filename)))
        filename = filename[: -len(".pt")] + SAFETENSORS_SUFFIX
    return inspect_asset(data, filename, kind=kind, max_bytes=max_bytes), data


def _hypernetwork(
    shown: str, kind: AssetKind, tensors: dict[str, TensorEntry], metadata: dict[str, str], *, size: int, sha256: str
) -> AssetInfo:
    structure = structure_of(metadata, shown)
    if structure is None:
        raise AssetError(
            f"{shown} is not a hypernetwork: upload A1111's .pt file as it is (sdbot reads it without running it), "
            "or the .safetensors `/hypernetwork download` gives."
        )
    if kind != "hypernetwork":
        raise AssetError(f"{shown} is a hypernetwork, not a {kind}. Upload it with `/hypernetwork upload`.")
    check_shapes({key: tuple(entry.shape) for key, entry in tensors.items()}, structure, shown)
    widths = widths_of(list(tensors))
    context = next((width for width in widths if width in HYPERNETWORK_CONTEXTS), None)
    return AssetInfo(
        kind="hypernetwork",
        format="a1111-hypernetwork",
        architecture=HYPERNETWORK_CONTEXTS.get(context or 0),
        rank=None,
        tensors=len(tensors),
        size=size,
        sha256=sha256,
        modules=len(widths),
        components=("unet",),
        context_width=context,
        widths=widths,
        title=metadata.get("name"),
    )


def inspect_asset_file(
    path: Path | str, *, kind: AssetKind, max_bytes: int, filename: str | None = None, max_tensors: int = MAX_TENSORS
) -> AssetInfo:
    """`inspect_asset` on a file on disk; its size is checked before it is read."""
    path = Path(path)
    name = filename or path.name
    size = path.stat().st_size
    if size > max_bytes:
        raise AssetError(f"{quote(name)} is {_megabytes(size)}, over the {_megabytes(max_bytes)} limit for uploads.")
    return inspect_asset(path.read_bytes(), name, kind=kind, max_bytes=max_bytes, max_tensors=max_tensors)


def _lora_modules(shown: str, tensors: dict[str, TensorEntry]) -> tuple[str, list[_Module]] | None:
    """(format, modules) when the file is a LoRA of some format; None when none of its keys are
    LoRA keys; AssetError when it is a checkpoint, mixes layouts, or a module is incomplete."""
    kohya: dict[str, _Module] = {}
    diffusers: dict[str, _Module] = {}
    others: list[str] = []
    for key, entry in tensors.items():
        match = _KOHYA_KEY.fullmatch(key)
        if match and match[3] in _KOHYA_SUFFIXES:
            prefix, name, suffix = match.groups()
            module = kohya.setdefault(f"{prefix}_{name}", _Module(_KOHYA_COMPONENTS[prefix], name, {}))
            module.parts[suffix] = entry
            continue
        match = _DIFFUSERS_KEY.fullmatch(key)
        if match:
            prefix, name, suffix = match.groups()
            component = _DIFFUSERS_COMPONENTS.get(prefix) or ("te1" if "text_model." in name else "unet")
            module = diffusers.setdefault(prefix + name, _Module(component, name.replace(".", "_"), {}))
            role = "down" if suffix in _DIFFUSERS_DOWN else "up" if suffix in _DIFFUSERS_UP else suffix.lstrip(".")
            if role in module.parts:
                raise AssetError(f"{shown} is damaged: layer {quote(prefix + name)} has two {role} weights.")
            module.parts[role] = entry
            continue
        others.append(key)

    if not kohya and not diffusers:
        if len(tensors) > 2 and any(_CHECKPOINT_KEY.match(k) for k in others):
            raise _checkpoint_error(shown)
        return None
    if others:
        if any(_CHECKPOINT_KEY.match(k) for k in others):
            raise _checkpoint_error(shown)
        raise AssetError(
            f"{shown} looks like a LoRA but also holds tensors sdbot does not know, such as "
            f"{quote(others[0])}. Upload a plain LoRA, LoCon, LoHa or LoKr file."
        )
    if kohya and diffusers:
        raise AssetError(f"{shown} mixes kohya and diffusers LoRA key names; convert it to one of them and upload it again.")
    if diffusers:
        modules = list(diffusers.values())
        for module in modules:
            _check_pair(shown, module, "down", "up")
            _check_alpha(shown, module)
        return "diffusers", modules

    modules = list(kohya.values())
    counts = {"loha": 0, "lokr": 0, "lora": 0}
    for module in modules:
        parts = module.parts
        if any(p.startswith("hada_") for p in parts):
            counts["loha"] += 1
            needed = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}
            if not needed <= parts.keys() or any(p.startswith(("lora_", "lokr_")) for p in parts):
                raise _incomplete(shown, module, "LoHa needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b")
            shapes = [parts[p].shape for p in sorted(needed)]
            if any(len(shape) < 2 for shape in shapes) or parts["hada_w1_b"].shape[0] != parts["hada_w2_b"].shape[0]:
                raise _incomplete(shown, module, "its LoHa weights have inconsistent shapes")
        elif any(p.startswith("lokr_") for p in parts):
            counts["lokr"] += 1
            w1 = "lokr_w1" in parts or {"lokr_w1_a", "lokr_w1_b"} <= parts.keys()
            w2 = "lokr_w2" in parts or {"lokr_w2_a", "lokr_w2_b"} <= parts.keys()
            if not (w1 and w2) or any(p.startswith("lora_") for p in parts):
                raise _incomplete(shown, module, "LoKr needs lokr_w1 (or lokr_w1_a and _b) and lokr_w2 (or lokr_w2_a and _b)")
            if any(len(e.shape) < 2 for p, e in parts.items() if p.startswith("lokr_")):
                raise _incomplete(shown, module, "its LoKr weights have inconsistent shapes")
        else:
            counts["lora"] += 1
            _check_pair(shown, module, "lora_down.weight", "lora_up.weight")
        _check_alpha(shown, module)
    if counts["loha"] or counts["lokr"]:
        return ("loha" if counts["loha"] >= counts["lokr"] else "lokr"), modules
    locon = any(_is_conv_layer(m) for m in modules)
    return ("locon" if locon else "kohya"), modules


def _check_pair(shown: str, module: _Module, down: str, up: str) -> None:
    parts = module.parts
    if down not in parts or up not in parts:
        raise _incomplete(shown, module, "a LoRA layer needs both its down (A) and up (B) weights")
    d, u = parts[down].shape, parts[up].shape
    if len(d) < 2 or len(u) < 2 or d[0] != u[1] or d[0] == 0:
        raise _incomplete(shown, module, f"its down {list(d)} and up {list(u)} weights do not fit together")


def _check_alpha(shown: str, module: _Module) -> None:
    alpha = module.parts.get("alpha")
    if alpha is not None and _elements(alpha.shape) != 1:
        raise _incomplete(shown, module, "its alpha is not a single number")


def _is_conv_layer(module: _Module) -> bool:
    """A conv layer beyond the 1x1 proj_in/proj_out convs every SD 1.x LoRA touches."""
    down = module.parts.get("lora_down.weight")
    if down is None or len(down.shape) != 4:
        return False
    return tuple(down.shape[2:]) != (1, 1) or "lora_mid.weight" in module.parts or not _PROJ_1X1.search(module.name)


def _incomplete(shown: str, module: _Module, why: str) -> AssetError:
    return AssetError(f"{shown} is damaged or incomplete: layer {quote(module.name)}: {why}.")


def _checkpoint_error(shown: str) -> AssetError:
    return AssetError(
        f"{shown} is a full model checkpoint (UNet, VAE or text-encoder weights), not a LoRA, "
        "LyCORIS or embedding. Whole models are not uploaded here: ask an admin to add it to the "
        "model list, or upload a LoRA extracted from it."
    )


def _rank(fmt: str, modules: list[_Module]) -> int | None:
    ranks: list[int] = []
    for module in modules:
        p = module.parts
        if fmt == "diffusers":
            ranks.append(p["down"].shape[0])
        elif "lora_down.weight" in p:
            ranks.append(p["lora_down.weight"].shape[0])
        elif "hada_w1_b" in p:
            ranks.append(p["hada_w1_b"].shape[0])
        else:
            ranks += [p[k].shape[0] for k in ("lokr_w1_b", "lokr_w2_b") if k in p]
    return max(ranks) if ranks else None


def _lora_architecture(modules: list[_Module], contexts: set[int], widths: set[int]) -> str | None:
    """From shapes first: the cross-attention context widths, then the text encoder's widths;
    then names (a second text encoder, or more than one transformer block per attention)."""
    found = {CONTEXT_DIMS.get(d) for d in contexts}
    if len(found) == 1 and None not in found:
        return found.pop()
    if contexts:
        return None  # cross-attention of a width no SD model has, or several: it does not say
    if any(m.component == "te2" for m in modules):
        return "sdxl"
    found = {TEXT_DIMS.get(d) for d in widths}
    if len(found) == 1 and None not in found:
        return found.pop()
    if not widths and any(m.component == "unet" and _SDXL_ONLY_NAME.search(m.name) for m in modules):
        return "sdxl"
    return None


def _embedding_layout(shown: str, tensors: dict[str, TensorEntry]) -> tuple[str, str | None, int, str | None, dict[str, int]] | None:
    """(format, architecture, vectors, token, vector width per text encoder) for an embedding
    layout; None if it is not one."""
    keys = set(tensors)
    if keys == {"clip_l", "clip_g"}:
        n_l, dim_l = _vectors(shown, "clip_l", tensors["clip_l"])
        n_g, dim_g = _vectors(shown, "clip_g", tensors["clip_g"])
        if n_l != n_g:
            raise AssetError(f"{shown} is damaged: its clip_l has {n_l} vectors but its clip_g has {n_g}.")
        if (dim_l, dim_g) != (768, 1280):
            raise AssetError(
                f"{shown} is not an SDXL embedding: its clip_l is {dim_l} wide and its clip_g {dim_g} (SDXL's are 768 and 1280)."
            )
        return "kohya-sdxl-ti", "sdxl", n_l, None, {"clip_l": dim_l, "clip_g": dim_g}
    if len(keys) != 1:
        return None
    (key,) = keys
    n, dim = _vectors(shown, key, tensors[key])
    if dim == 1280:
        raise AssetError(
            f"{shown} holds only the second half of an SDXL embedding (1280 wide, for the clip_g "
            "text encoder). Upload an SDXL embedding that holds both clip_l and clip_g."
        )
    architecture = EMBEDDING_DIMS.get(dim)
    if key in ("emb_params", "string_to_param.*"):
        return "a1111-ti", architecture, n, None, {"clip_l": dim}
    if len(key) > MAX_TOKEN_CHARS or not key.strip() or not key.isprintable():
        raise AssetError(f"{shown} is an embedding whose token (its tensor's name) is not usable text.")
    return "diffusers-ti", architecture, n, key, {"clip_l": dim}


def _vectors(shown: str, key: str, entry: TensorEntry) -> tuple[int, int]:
    shape = entry.shape
    if entry.dtype not in FLOAT_DTYPES or len(shape) not in (1, 2):
        raise AssetError(
            f"{shown} is not a LoRA or an embedding sdbot knows: its tensor {quote(key)} "
            f"({entry.dtype}, shape {list(shape)}) is not a list of embedding vectors."
        )
    n, dim = (1, shape[0]) if len(shape) == 1 else shape
    if not (1 <= n <= MAX_EMBEDDING_VECTORS and 1 <= dim <= MAX_EMBEDDING_DIM):
        raise AssetError(
            f"{shown} is not a usable embedding: {quote(key)} holds {n} vectors of width {dim} "
            f"(sdbot takes 1 to {MAX_EMBEDDING_VECTORS} vectors)."
        )
    return n, dim


# --- metadata ---------------------------------------------------------------------------------------


def metadata_hints(metadata: dict[str, str]) -> tuple[tuple[str, ...], str | None]:
    """Trigger-word hints and a title from kohya's training metadata: `ss_output_name`, then the
    most frequent tags of `ss_tag_frequency` (a JSON string: dataset -> {tag: count}, summed over
    the datasets), and `modelspec.title`. Never fails: malformed or oversized values are ignored."""
    triggers: list[str] = []
    seen: set[str] = set()

    def add(words: str) -> None:
        clean = _clean_text(words, MAX_TRIGGER_CHARS)
        if clean and clean.lower() not in seen:
            seen.add(clean.lower())
            triggers.append(clean)

    output_name = metadata.get("ss_output_name")
    if isinstance(output_name, str):
        add(output_name)
    for tag in _top_tags(metadata.get("ss_tag_frequency")):
        add(tag)
    title = metadata.get("modelspec.title")
    return tuple(triggers), (_clean_text(title, MAX_TITLE_CHARS) or None) if isinstance(title, str) else None


def _top_tags(raw: object) -> list[str]:
    if not isinstance(raw, str) or len(raw) > MAX_TAG_FREQUENCY_CHARS:
        return []
    try:
        datasets = json.loads(raw)
    except (ValueError, RecursionError):
        return []
    if not isinstance(datasets, dict):
        return []
    counts: dict[str, int] = {}
    scanned = 0
    for tags in datasets.values():
        if not isinstance(tags, dict):
            continue
        for tag, count in tags.items():
            scanned += 1
            if scanned > MAX_TAGS_SCANNED:
                break
            if is_int(count) and count > 0 and isinstance(tag, str) and len(tag) <= MAX_TRIGGER_CHARS:
                tag = " ".join(tag.split())
                if tag:
                    counts[tag] = counts.get(tag, 0) + count
    order = {tag: i for i, tag in enumerate(counts)}
    return sorted(counts, key=lambda t: (-counts[t], order[t]))[:TOP_TAGS]


def _clean_text(text: str, limit: int) -> str:
    printable = "".join(c if c.isprintable() else " " for c in text[: limit * 4])
    return " ".join(printable.split())[:limit].strip()


# --- architecture checks ----------------------------------------------------------------------------


def check_architecture(info: AssetInfo, model_architecture: str | None, *, model: str = "the model") -> str | None:
    """Why the file does not fit a model of `model_architecture`, by architecture alone: for a
    model whose layers this machine cannot see (`generation.assets.fit` checks layers where it
    can). The shapes' architecture, else the metadata's claim. Starts "it is made for ..."; None
    when they match or either is unknown (loading it will tell)."""
    claim = info.claim
    architecture = info.architecture or (claim.architecture if claim else None)
    if architecture is None or not model_architecture or architecture == model_architecture:
        return None
    if architecture == "flux" and model_architecture == "chroma":
        return None  # Chroma keeps FLUX.1's blocks: the layers decide where the model's configs are known
    made = info.made_for if info.architecture else f"{claim.label} (its metadata says {claim.source})"  # type: ignore[union-attr]
    return f"it is made for {made}; `{model}` is {ARCHITECTURE_NAMES.get(model_architecture, model_architecture)}."


def _article(name: str) -> str:
    """ "an SD 1.x", "an SDXL", "an A1111 ...", "a kohya ...", "a LyCORIS ..." (as they are read)."""
    return f"{'an' if name[:1] in 'AEIOSX' else 'a'} {name}"


# --- helpers ----------------------------------------------------------------------------------------


def _elements(shape: Iterable[int]) -> int:
    count = 1
    for d in shape:
        count *= d
    return count


def _megabytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KB" if size >= 1024 else f"{size} bytes"
    return f"{size / (1024 * 1024):.1f} MB"
