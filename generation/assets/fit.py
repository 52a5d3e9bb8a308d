"""Does an uploaded LoRA or embedding fit a model? Torch-free: answered from the file's safetensors
header and the model's component configs (`generation.models.shapes`), without loading either.

A LoRA fits when every layer it changes exists in the model with the file's shape: the same
outputs, the same inputs (times the kernel area for a convolution; a 1x1 convolution and a linear
layer are interchangeable, as diffusers and A1111 treat them). An embedding fits when it has one
set of vectors per text encoder, each as wide as that encoder's tokens. The first layer that
does not fit is named in the reply, with both shapes, in words: "made for SDXL (2048-wide text
features); the model `tiny` uses 32-wide text features".

A file also says what it was made for in its metadata: kohya's `ss_base_model_version`, `ss_v2`
and `ss_sd_model_name`, and the SAI model spec's `modelspec.architecture`. Those are claims;
the shapes decide, and a claim that contradicts them is said in the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from config.models import ARCHITECTURE_NAMES

if TYPE_CHECKING:
    from generation.assets.safetensors_header import TensorEntry
    from generation.models.shapes import ModelShapes

# A file's components -> the model's (kohya/diffusers prefixes are read in generation.assets.files).
MODEL_COMPONENTS = {"unet": "unet", "transformer": "transformer", "te1": "text_encoder", "te2": "text_encoder_2"}
DENOISERS = {"unet": "UNet", "transformer": "transformer"}
# A FLUX.1 single block's fused q/k/v/MLP input, as kohya and BFL name it (generation.models.dit_shapes).
_FUSED_LINEAR1 = re.compile(r"single_blocks_\d+_linear1$")
ENCODER_NAMES = {"te1": "text encoder", "te2": "second text encoder"}
# Embedding layouts: which text encoder each set of vectors is for.
VECTOR_ENCODERS = {"clip_l": 0, "clip_g": 1}
# Module names (dots or `_`): the UNet's cross-attention K/V, which read the text features, and
# the text encoder's layers that take its full width.
_CROSS_KV = re.compile(r"attn2[._](?:processor[._])?to_[kv](?:_lora)?$")
_TEXT_LAYER = re.compile(r"(?:self_attn[._](?:q|k|v|out)_proj|mlp[._]fc1)$")
# Old diffusers attention-processor names for the projections they wrap.
_PROCESSOR = ((re.compile(r"[._]processor[._](to_[qkv])$"), r"_\1"), (re.compile(r"[._]processor[._]to_out$"), "_to_out_0"))


@dataclass(frozen=True)
class FileLayer:
    """One layer a LoRA file changes, with the shape it expects."""

    component: str  # unet, te1, te2
    name: str  # the module as the file names it
    outputs: int
    flat_inputs: int  # inputs times the kernel area
    kernel: tuple[int, int] | None = None  # where the file says (a LoRA's conv down weight, a Tucker core)

    def text(self) -> str:
        if self.kernel and self.kernel != (1, 1):
            area = self.kernel[0] * self.kernel[1]
            return f"{self.flat_inputs // area} inputs → {self.outputs} outputs, {self.kernel[0]}×{self.kernel[1]} kernel"
        return f"{self.flat_inputs} inputs → {self.outputs} outputs"


def layer_of(component: str, name: str, parts: dict[str, TensorEntry]) -> FileLayer | None:
    """The shape a LoRA module's tensors expect of the layer they change (None if they don't
    say). `parts` are the module's tensors by suffix, as `generation.assets.files` groups them."""
    for down_key, up_key, mid_key in (("down", "up", None), ("lora_down.weight", "lora_up.weight", "lora_mid.weight")):
        if down_key in parts and up_key in parts:
            down, up = parts[down_key].shape, parts[up_key].shape
            mid = parts[mid_key].shape if mid_key and mid_key in parts else None
            kernel = tuple(mid[2:4]) if mid and len(mid) == 4 else tuple(down[2:4]) if len(down) == 4 else None
            area = kernel[0] * kernel[1] if kernel else 1
            return FileLayer(component, name, up[0], down[1] * area, kernel)  # type: ignore[arg-type]
    if "hada_w1_a" in parts and "hada_w1_b" in parts:
        a, b = parts["hada_w1_a"].shape, parts["hada_w1_b"].shape
        if "hada_t1" in parts:  # Tucker: t1 [r, r, kh, kw], w1_a [r, out], w1_b [r, in]
            kernel = tuple(parts["hada_t1"].shape[2:4])
            return FileLayer(component, name, a[1], b[1] * kernel[0] * kernel[1], kernel)  # type: ignore[arg-type]
        return FileLayer(component, name, a[0], b[1])  # w1_a [out, r], w1_b [r, in * kh * kw]
    w1 = _factor(parts, "lokr_w1", None)
    w2 = _factor(parts, "lokr_w2", "lokr_t2")
    if w1 and w2:
        return FileLayer(component, name, w1[0] * w2[0], w1[1] * w2[1], w2[2])
    return None


def _factor(parts: dict[str, TensorEntry], key: str, tucker: str | None) -> tuple[int, int, tuple[int, int] | None] | None:
    """A LoKr factor's (outputs, flat inputs, kernel): whole, factored a @ b, or Tucker."""
    if key in parts:
        shape = parts[key].shape
        kernel = tuple(shape[2:4]) if len(shape) == 4 else None
        return shape[0], shape[1] * (kernel[0] * kernel[1] if kernel else 1), kernel  # type: ignore[return-value]
    a, b = parts.get(f"{key}_a"), parts.get(f"{key}_b")
    if a is None or b is None:
        return None
    if tucker and tucker in parts:  # t [r, r, kh, kw], a [r, out], b [r, in]
        kernel = tuple(parts[tucker].shape[2:4])
        return a.shape[1], b.shape[1] * kernel[0] * kernel[1], kernel  # type: ignore[return-value]
    return a.shape[0], b.shape[1], None


def _model_name(name: str) -> str:
    for pattern, replacement in _PROCESSOR:
        name = pattern.sub(replacement, name)
    return name


# --- what the file is made for, in words ------------------------------------------------------------


def made_for(
    architecture: str | None,
    context_width: int | None = None,
    text_width: int | None = None,
    vector_widths: dict[str, int] | None = None,
    transformer_width: int | None = None,
) -> str | None:
    """ "SDXL (2048-wide text features)", "a model with a 1024-wide text encoder", "SD 1.x
    (768-wide vectors)", "FLUX.1 (a 3072-wide transformer)", ...; None when the file says nothing
    about its model."""
    if transformer_width:
        detail = f"a {transformer_width}-wide transformer"
    elif vector_widths:
        detail = f"{' and '.join(str(w) for w in vector_widths.values())}-wide vectors"
    elif context_width:
        detail = f"{context_width}-wide text features"
    elif text_width:
        detail = f"a {text_width}-wide text encoder"
    else:
        return ARCHITECTURE_NAMES.get(architecture or "")
    if architecture in ARCHITECTURE_NAMES:
        return f"{ARCHITECTURE_NAMES[architecture]} ({detail})"
    return f"a model with {detail}"


def context_widths(layers: tuple[FileLayer, ...]) -> set[int]:
    """The text-feature widths a LoRA's cross-attention keys and values read (one, for a sound file)."""
    return {layer.flat_inputs for layer in layers if layer.component == "unet" and _CROSS_KV.search(layer.name)}


def text_encoder_widths(layers: tuple[FileLayer, ...]) -> set[int]:
    """The widths of the first text encoder's layers a LoRA changes (one, for a sound file)."""
    return {layer.flat_inputs for layer in layers if layer.component == "te1" and _TEXT_LAYER.search(layer.name)}


# --- the fit ----------------------------------------------------------------------------------------


def lora_misfit(layers: tuple[FileLayer, ...], shapes: ModelShapes, model: str, file_made_for: str | None) -> str | None:
    """Why a LoRA does not fit the model (one sentence naming the first layer that does not), or
    None when every layer it changes is there with its shape."""
    headline = f"it is made for {file_made_for}" if file_made_for else "it was made for another model"
    denoiser = _other_denoiser(layers, shapes, model)
    if denoiser:
        return f"{headline}; {denoiser}"
    applied = 0
    for layer in layers:
        component = MODEL_COMPONENTS[layer.component]
        found = shapes.find(component, _model_name(layer.name))
        if found is None and _lacks(shapes, component, layer.name):
            continue  # a FLUX.1 layer this model lacks by design (Chroma's modulation, ...): left out
        applied += 1
        if found is None:
            if component not in shapes.layers:
                return (
                    f"{headline}: it changes a {ENCODER_NAMES.get(layer.component, component)} (`{layer.name}`), "
                    f"and `{model}` has {len(shapes.text_widths)} text encoder{'s' if len(shapes.text_widths) > 1 else ''}."
                )
            where = f" of its {ENCODER_NAMES[layer.component]}" if layer.component in ENCODER_NAMES else ""
            return f"{headline}: it changes the layer `{layer.name}`, which `{model}` does not have{where}."
        path, target = found
        kernel_fits = layer.kernel is None or layer.kernel == target.kernel or (layer.kernel == (1, 1) and target.kind == "linear")
        if layer.outputs == target.outputs and layer.flat_inputs == target.flat_inputs and kernel_fits:
            if _FUSED_LINEAR1.search(path.replace(".", "_")) and not getattr(shapes, "converts_fused_linear1", True):
                return (
                    f"{headline}: its fused single-block layer `{layer.name}` is converted by diffusers only for FLUX.1's "
                    f"full width (3072), and `{model}` is {getattr(shapes, 'width', '?')} wide."
                )
            continue
        if _CROSS_KV.search(path.replace(".", "_")) and layer.flat_inputs != target.inputs:
            why = f"`{model}` uses {target.inputs}-wide text features"
        elif component == "transformer" and target.inputs == getattr(shapes, "width", None) != layer.flat_inputs:
            why = f"`{model}`'s transformer is {target.inputs} wide"
        elif layer.component in ENCODER_NAMES and layer.flat_inputs != target.inputs:
            why = f"`{model}`'s {ENCODER_NAMES[layer.component]} is {target.inputs} wide"
        else:
            why = f"`{model}` is built differently"
        return f"{headline}; {why} (layer `{path}`: {layer.text()} in the file, {target.text()} in the model)."
    if layers and not applied:
        return f"{headline}: none of the layers it changes is in `{model}`."
    return None


def _other_denoiser(layers: tuple[FileLayer, ...], shapes: ModelShapes, model: str) -> str | None:
    """Why a UNet LoRA can't go on a transformer model, or the reverse (None when it is not that)."""
    for layer in layers:
        if layer.component in DENOISERS and layer.component not in shapes.layers:
            has = next((DENOISERS[c] for c in DENOISERS if c in shapes.layers), "another kind of model")
            return (
                f"it changes {DENOISERS[layer.component]} layers (such as `{layer.name}`), and `{model}` is "
                f"{shapes.describe()}, a {has} model without a {DENOISERS[layer.component]}."
            )
    return None


def left_out(layers: tuple[FileLayer, ...], shapes: ModelShapes) -> list[str]:
    """The layers of a LoRA that are left out on this model because it lacks them by design (a
    FLUX.1 LoRA's modulation, guidance, pooled-text and CLIP layers on Chroma): their names."""
    return [
        layer.name
        for layer in layers
        if shapes.find(MODEL_COMPONENTS[layer.component], _model_name(layer.name)) is None
        and _lacks(shapes, MODEL_COMPONENTS[layer.component], layer.name)
    ]


def _lacks(shapes: ModelShapes, component: str, name: str) -> bool:
    """A layer the model lacks by design (`generation.models.dit_shapes.DiTShapes.lacks`: FLUX.1's
    own layers on Chroma); UNet models have none such."""
    lacks = getattr(shapes, "lacks", None)
    return bool(lacks is not None and lacks(component, name))


def embedding_misfit(widths: dict[str, int], shapes: ModelShapes, model: str, file_made_for: str | None) -> str | None:
    """Why an embedding does not fit the model, or None. `widths`: its vectors' width per text
    encoder (`clip_l`, and `clip_g` for SDXL's second)."""
    wanted = shapes.text_widths
    given = sorted(widths.items(), key=lambda item: VECTOR_ENCODERS.get(item[0], 0))
    headline = f"it is made for {file_made_for}" if file_made_for else "it was made for another model"
    if len(given) != len(wanted):
        ours = " and ".join(f"{w}" for w in wanted)
        return (
            f"{headline}: it holds vectors for {len(given)} text encoder{'s' if len(given) > 1 else ''}, and `{model}` has "
            f"{len(wanted)} ({ours} wide)."
        )
    for (key, width), encoder_width in zip(given, wanted, strict=True):
        if width != encoder_width:
            return f"{headline}; `{model}`'s text encoder takes {encoder_width}-wide vectors (its `{key}` vectors are {width} wide)."
    return None


# --- what the file says it is made for --------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What a file's metadata says it was made for."""

    architecture: str | None  # a family id (sd1, sd2, sdxl, sd3, flux, chroma, qwen, zimage, flux2), or None for a model sdbot does not run
    label: str  # in words: "SDXL", or the metadata's own value
    source: str  # the metadata key and value, as written

    def contradicts(self, architecture: str | None) -> bool:
        if architecture == "flux" and self.architecture in _FLUX_LAYOUT:
            return False  # a FLUX.1-layout file made for Chroma (or the reverse): the same block names
        return architecture is not None and self.architecture != architecture


_FLUX_LAYOUT = ("flux", "chroma")
_SPEC_ARCHITECTURES = (
    ("stable-diffusion-xl", "sdxl"),
    ("stable-diffusion-v2", "sd2"),
    ("stable-diffusion-v1", "sd1"),
    ("flux-1", "flux"),
    ("chroma", "chroma"),
    ("stable-diffusion-v3", "sd3"),
    ("qwen-image", "qwen"),
    ("z-image", "zimage"),
    ("flux-2", "flux2"),
)
_KOHYA_VERSIONS = (
    ("sdxl", "sdxl"),
    ("sd_v2", "sd2"),
    ("sd_v1", "sd1"),
    ("sd3", "sd3"),
    ("flux2", "flux2"),
    ("flux_2", "flux2"),
    ("flux", "flux"),
    ("chroma", "chroma"),
    ("qwen_image", "qwen"),
    ("qwen-image", "qwen"),
    ("z_image", "zimage"),
    ("z-image", "zimage"),
)
_MODEL_NAME_HINTS = (
    (re.compile(r"xl", re.I), "sdxl"),
    (re.compile(r"(?:^|[^0-9])(?:v2|sd2|2[-._]?[01])(?:[^0-9]|$)", re.I), "sd2"),
    (re.compile(r"(?:v1[-._]?[45]|sd[-_]?1[-._]?[45]|sd15)", re.I), "sd1"),
)
MAX_CLAIM_CHARS = 100


def metadata_claim(metadata: dict[str, str]) -> Claim | None:
    """The file's own word on its base model, strongest first: the SAI model spec, kohya's base
    version (and its older `ss_v2` flag), then a recognisable base checkpoint name."""

    def shown(key: str) -> str:
        value = metadata[key][:MAX_CLAIM_CHARS]
        return f"`{key}: {''.join(c if c.isprintable() and c != '`' else '?' for c in value)}`"

    spec = metadata.get("modelspec.architecture")
    if isinstance(spec, str) and spec.strip():
        base = spec.split("/")[0].lower()
        found = next((arch for prefix, arch in _SPEC_ARCHITECTURES if base.startswith(prefix)), None)
        return Claim(found, ARCHITECTURE_NAMES.get(found or "", base[:MAX_CLAIM_CHARS]), shown("modelspec.architecture"))
    version = metadata.get("ss_base_model_version")
    if isinstance(version, str) and version.strip():
        lowered = version.lower()
        found = next((arch for prefix, arch in _KOHYA_VERSIONS if lowered.startswith(prefix)), None)
        return Claim(found, ARCHITECTURE_NAMES.get(found or "", lowered[:MAX_CLAIM_CHARS]), shown("ss_base_model_version"))
    if metadata.get("ss_v2") in ("True", "False"):
        found = "sd2" if metadata["ss_v2"] == "True" else "sd1"
        return Claim(found, ARCHITECTURE_NAMES[found], shown("ss_v2"))
    name = metadata.get("ss_sd_model_name")
    if isinstance(name, str):
        found = next((arch for pattern, arch in _MODEL_NAME_HINTS if pattern.search(name)), None)
        if found:
            return Claim(found, ARCHITECTURE_NAMES[found], shown("ss_sd_model_name"))
    return None


def claim_note(
    claim: Claim | None,
    file_architecture: str | None,
    *,
    fits: bool,
    model: str,
    model_words: str,
    model_architecture: str | None,
) -> str | None:
    """One line when the metadata's claim disagrees with the shapes, which decide: with the
    file's own (when they name an architecture), else with the model the file fits."""
    if claim is None:
        return None
    if claim.contradicts(file_architecture):
        return (
            f"Its metadata says it was made for {claim.label} ({claim.source}), but its layers are shaped for "
            f"{ARCHITECTURE_NAMES[file_architecture or '']}; I went by the layers."
        )
    if file_architecture is None and fits and claim.architecture != model_architecture:
        return (
            f"Its metadata says it was made for {claim.label} ({claim.source}), but its layers fit `{model}` "
            f"({model_words}); I went by the layers."
        )
    return None
