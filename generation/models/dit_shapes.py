"""What a DiT family's transformer layers look like, computed from its config alone. Torch-free.

FLUX.1 and Chroma are done here; SD 3.5, Qwen-Image, Z-Image and FLUX.2 in
`generation.models.dit_layers`, whose tables `dit_shapes` wraps the same way.

The DiT counterpart of `generation.models.shapes` (which does the UNet families): from
`transformer/config.json` (num_layers, num_single_layers, attention_head_dim × num_attention_heads
= the inner width, joint_attention_dim, in_channels, patch_size, out_channels, pooled_projection_dim,
guidance_embeds; Chroma's approximator sizes) and, for FLUX.1, the CLIP text encoder's config, the
name and shape of every Linear layer that diffusers' `FluxTransformer2DModel` /
`ChromaTransformer2DModel` build. The MLP ratio (4) and the timestep embedding's 256 channels are
fixed in those classes. tests/test_flux_loras.py checks the result layer for layer against the real
classes instantiated on the meta device.

Names are diffusers' module paths (`single_transformer_blocks.0.attn.to_q`). LoRAs made with
kohya's sd-scripts or saved by ComfyUI name the original (BFL) modules instead
(`double_blocks_0_img_attn_proj`, `single_blocks_0_linear2`): a layer that is one module in both
knows its BFL name too (`Layer.sgm`, "the original name"), and the BFL modules that diffusers splits
in several (`img_attn.qkv` -> to_q/to_k/to_v, `single_blocks.N.linear1` -> to_q/to_k/to_v/proj_mlp)
are listed whole in `DiTShapes.fused`, as the file's fused weights see them.

Chroma is FLUX.1-schnell without the per-block modulation, the pooled-text and guidance embedders
and the final adaLN (a small "approximator" makes all modulations instead). A LoRA made for FLUX.1
changes some of those layers (kohya trains them by default; CLIP text-encoder layers too): on
Chroma they are left out, and the rest of the LoRA applies (`DiTShapes.lacks`), as ComfyUI does.
The same holds for the guidance embedder on FLUX.1-schnell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from config.models import ARCHITECTURE_NAMES
from generation.models import dit_layers
from generation.models.shapes import Layer, ModelShapes, UnsupportedConfig, read_config, text_encoder_layers

MLP_RATIO = 4  # FluxSingleTransformerBlock's mlp_ratio and FeedForward's mult (both fixed in diffusers)
TIMESTEP_CHANNELS = 256  # the sinusoidal timestep (and guidance) embedding's width
# FLUX.1's and Chroma's own widths: the inner width diffusers' kohya/BFL conversion assumes when it
# splits a single block's fused `linear1` (`_convert_kohya_flux_lora_to_diffusers`: 3072 × 3 + 12288).
FLUX_WIDTH = 3072
FLUX_TEXT_WIDTH = 4096

FLUX_DEFAULTS: dict[str, Any] = {  # FluxTransformer2DModel's __init__ defaults (diffusers 0.42)
    "patch_size": 1,
    "in_channels": 64,
    "out_channels": None,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": False,
}
CHROMA_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in FLUX_DEFAULTS.items() if k not in ("pooled_projection_dim", "guidance_embeds")},
    "approximator_num_channels": 64,
    "approximator_hidden_dim": 5120,
    "approximator_layers": 5,
}
TRANSFORMER_CLASSES = {"flux": "FluxTransformer2DModel", "chroma": "ChromaTransformer2DModel"}

# A single block's fused linear1 (kohya `lora_unet_single_blocks_N_linear1`, BFL `single_blocks.N.linear1`).
FUSED_LINEAR1 = re.compile(r"single_blocks_\d+_linear1$")


def _flat(name: str) -> str:
    return name.replace(".", "_")


@dataclass(frozen=True)
class DiTShapes(ModelShapes):
    """A FLUX.1 or Chroma model's layers: `layers["transformer"]` (and FLUX.1's CLIP as
    `layers["text_encoder"]`), found by diffusers, kohya or BFL names."""

    family: str = "flux"
    width: int = 0  # the transformer's inner width (3072 for FLUX.1 and Chroma)
    double_blocks: int = 0
    single_blocks: int = 0
    # flat BFL name -> (BFL path, the fused layer as a LoRA's down/up weights see it)
    fused: Mapping[str, tuple[str, Layer]] = field(default_factory=dict, repr=False, compare=False)
    # flat names (any spelling) of FLUX.1 layers this model lacks by design, and components it lacks
    optional: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    optional_components: tuple[str, ...] = ()

    @property
    def architecture(self) -> str | None:
        """The family (flux, chroma): for a DiT the block layout names it, whatever its widths."""
        return self.family

    @property
    def standard(self) -> bool:
        if self.family in dit_layers.STANDARD_WIDTHS:
            return self.width in dit_layers.STANDARD_WIDTHS[self.family]
        return self.width == FLUX_WIDTH and self.context_width == FLUX_TEXT_WIDTH

    @property
    def converts_fused_linear1(self) -> bool:
        """Whether diffusers can split a kohya/BFL `linear1` for this model (only at FLUX's width)."""
        return self.width == FLUX_WIDTH

    def find(self, component: str, name: str) -> tuple[str, Layer] | None:
        found = super().find(component, name)
        if found is None and component == "transformer":
            return self.fused.get(_flat(name))
        return found

    def lacks(self, component: str, name: str) -> bool:
        """Whether the layer is one FLUX.1 has and this model lacks by design (left out of a LoRA)."""
        return component in self.optional_components or (component == "transformer" and _flat(name) in self.optional)

    def dimensions(self) -> str:
        blocks = (
            f"{self.double_blocks} double and {self.single_blocks} single blocks" if self.single_blocks else f"{self.double_blocks} blocks"
        )
        return f"a {self.width}-wide transformer with {blocks}, {self.context_width}-wide text features"

    def describe(self, layout: str | None = None) -> str:
        label = ARCHITECTURE_NAMES.get(self.family, self.family)
        return label if self.standard else f"{label} layout at a non-standard size ({self.dimensions()})"


# --- from configs -----------------------------------------------------------------------------------


def _config(family: str, config: dict[str, Any]) -> dict[str, Any]:
    defaults = CHROMA_DEFAULTS if family == "chroma" else FLUX_DEFAULTS
    merged = {**defaults, **{k: v for k, v in config.items() if not k.startswith("_") and k in defaults}}
    for key, value in merged.items():
        if (
            key != "out_channels"
            and key != "guidance_embeds"
            and not (isinstance(value, int) and not isinstance(value, bool) and value > 0)
        ):
            raise UnsupportedConfig(f"the transformer config's {key} is {value!r}")
    return merged


def transformer_layers(family: str, config: dict[str, Any]) -> tuple[dict[str, Layer], dict[str, tuple[str, Layer]]]:
    """The Linear layers of the family's transformer (diffusers path -> layer, with its BFL name
    where it has one of its own), and the fused BFL layers (flat BFL name -> (path, layer))."""
    if family in dit_layers.DEFAULTS:
        table = dit_layers.family_layers(family, config)
        return table.layers, table.fused
    if family not in TRANSFORMER_CLASSES:
        raise UnsupportedConfig(f"no transformer layout for the family {family!r}")
    c = _config(family, config)
    inner = c["attention_head_dim"] * c["num_attention_heads"]
    mlp = inner * MLP_RATIO
    out = c["out_channels"] or c["in_channels"]
    found: dict[str, Layer] = {}
    fused: dict[str, tuple[str, Layer]] = {}

    def linear(path: str, inputs: int, outputs: int, bfl: str | None = None) -> None:
        found[path] = Layer("linear", inputs, outputs, sgm=bfl)

    def fuse(bfl: str, inputs: int, outputs: int) -> None:
        fused[_flat(bfl)] = (bfl, Layer("linear", inputs, outputs, sgm=bfl))

    if family == "flux":
        embedders = [("timestep_embedder", "time_in", TIMESTEP_CHANNELS)]
        if c["guidance_embeds"]:
            embedders.append(("guidance_embedder", "guidance_in", TIMESTEP_CHANNELS))
        embedders.append(("text_embedder", "vector_in", c["pooled_projection_dim"]))
        for name, bfl, inputs in embedders:
            linear(f"time_text_embed.{name}.linear_1", inputs, inner, f"{bfl}.in_layer")
            linear(f"time_text_embed.{name}.linear_2", inner, inner, f"{bfl}.out_layer")
    else:
        hidden = c["approximator_hidden_dim"]
        linear("distilled_guidance_layer.in_proj", c["approximator_num_channels"], hidden, "distilled_guidance_layer.in_proj")
        for k in range(c["approximator_layers"]):
            for number, bfl in ((1, "in_layer"), (2, "out_layer")):
                linear(f"distilled_guidance_layer.layers.{k}.linear_{number}", hidden, hidden, f"distilled_guidance_layer.layers.{k}.{bfl}")
        linear("distilled_guidance_layer.out_proj", hidden, inner, "distilled_guidance_layer.out_proj")
    linear("context_embedder", c["joint_attention_dim"], inner, "txt_in")
    linear("x_embedder", c["in_channels"], inner, "img_in")

    for i in range(c["num_layers"]):
        block, bfl = f"transformer_blocks.{i}", f"double_blocks.{i}"
        if family == "flux":
            linear(f"{block}.norm1.linear", inner, 6 * inner, f"{bfl}.img_mod.lin")
            linear(f"{block}.norm1_context.linear", inner, 6 * inner, f"{bfl}.txt_mod.lin")
        for projection in ("to_q", "to_k", "to_v"):
            linear(f"{block}.attn.{projection}", inner, inner)
        linear(f"{block}.attn.to_out.0", inner, inner, f"{bfl}.img_attn.proj")
        for projection in ("add_q_proj", "add_k_proj", "add_v_proj"):
            linear(f"{block}.attn.{projection}", inner, inner)
        linear(f"{block}.attn.to_add_out", inner, inner, f"{bfl}.txt_attn.proj")
        fuse(f"{bfl}.img_attn.qkv", inner, 3 * inner)
        fuse(f"{bfl}.txt_attn.qkv", inner, 3 * inner)
        for ff, stream in (("ff", "img"), ("ff_context", "txt")):
            linear(f"{block}.{ff}.net.0.proj", inner, mlp, f"{bfl}.{stream}_mlp.0")
            linear(f"{block}.{ff}.net.2", mlp, inner, f"{bfl}.{stream}_mlp.2")

    for i in range(c["num_single_layers"]):
        block, bfl = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        if family == "flux":
            linear(f"{block}.norm.linear", inner, 3 * inner, f"{bfl}.modulation.lin")
        linear(f"{block}.proj_mlp", inner, mlp)
        linear(f"{block}.proj_out", inner + mlp, inner, f"{bfl}.linear2")
        for projection in ("to_q", "to_k", "to_v"):
            linear(f"{block}.attn.{projection}", inner, inner)
        fuse(f"{bfl}.linear1", inner, 3 * inner + mlp)

    if family == "flux":
        linear("norm_out.linear", inner, 2 * inner, "final_layer.adaLN_modulation.1")
    linear("proj_out", inner, c["patch_size"] ** 2 * out, "final_layer.linear")
    return found, fused


def _names(layers: dict[str, Layer], fused: Mapping[str, tuple[str, Layer]]) -> set[str]:
    """Every flat name a file may use for these layers."""
    names = {_flat(path) for path in layers} | {_flat(layer.sgm) for layer in layers.values() if layer.sgm}
    return names | set(fused)


def dit_shapes(family: str, transformer: dict[str, Any], text_encoder: dict[str, Any] | None = None) -> DiTShapes:
    """The shapes of a FLUX.1 or Chroma model with this transformer config (and, for FLUX.1, its
    CLIP text encoder's config; without it the CLIP layers are unknown). UnsupportedConfig for a
    config this does not model. The other DiT families: their transformer alone (their LoRAs
    change only the transformer, as diffusers loads them)."""
    if family in dit_layers.DEFAULTS:
        c = dit_layers.merged_config(family, transformer)
        table = dit_layers.family_layers(family, transformer)
        context = int(c[dit_layers.TEXT_WIDTH_KEYS.get(family, "joint_attention_dim")])
        return DiTShapes(
            layers={"transformer": table.layers},
            context_width=context,
            text_widths=(context,),
            family=family,
            width=dit_layers.width(family, c),
            double_blocks=int(c.get("num_layers") or c.get("n_layers")),
            single_blocks=int(c.get("num_single_layers", 0)),
            fused=table.fused,
        )
    c = _config(family, transformer)
    layers, fused = transformer_layers(family, transformer)
    components: dict[str, dict[str, Layer]] = {"transformer": layers}
    text_widths: tuple[int, ...] = (c["joint_attention_dim"],)  # T5
    optional_components: tuple[str, ...] = ()
    if family == "flux" and text_encoder is not None:
        components["text_encoder"] = text_encoder_layers(text_encoder)
        text_widths = (int(text_encoder["hidden_size"]), c["joint_attention_dim"])
    elif family == "chroma":
        optional_components = ("text_encoder",)  # FLUX.1's CLIP: Chroma reads T5 alone
    # What FLUX.1 of these sizes has (with guidance) and this model lacks: left out of a FLUX.1 LoRA.
    reference = {k: v for k, v in transformer.items() if k in FLUX_DEFAULTS}
    flux_layers, flux_fused = transformer_layers("flux", {**reference, "guidance_embeds": True})
    optional = frozenset(_names(flux_layers, flux_fused) - _names(layers, fused))
    return DiTShapes(
        layers=components,
        context_width=c["joint_attention_dim"],
        text_widths=text_widths,
        family=family,
        width=c["attention_head_dim"] * c["num_attention_heads"],
        double_blocks=c["num_layers"],
        single_blocks=c["num_single_layers"],
        fused=fused,
        optional=optional,
        optional_components=optional_components,
    )


# --- from a model folder, and the tiny models -----------------------------------------------------


def shapes_of_dit_folder(folder: Path, family: str) -> DiTShapes | None:
    """The shapes of a FLUX.1 / Chroma diffusers folder (or a --config folder), from its configs;
    None when they are missing or of a kind this does not model. Cached until a config changes."""
    stamps = []
    for path in (folder / "transformer" / "config.json", folder / "text_encoder" / "config.json"):
        try:
            stat = path.stat()
            stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            stamps.append((str(path), None, None))
    return _cached(family, tuple(stamps))


@lru_cache(maxsize=16)
def _cached(family: str, stamps: tuple[tuple[str, int | None, int | None], ...]) -> DiTShapes | None:
    transformer, encoder = (read_config(Path(path)) if size is not None else None for path, _, size in stamps)
    if transformer is None:
        return None
    if encoder is not None and not str(encoder.get("model_type", "")).startswith("clip"):
        encoder = None  # Chroma's T5: no CLIP layers
    try:
        return dit_shapes(family, transformer, encoder)
    except (UnsupportedConfig, KeyError, TypeError, ValueError):
        return None


@lru_cache(maxsize=4)
def tiny_shapes(source: str) -> DiTShapes:
    """The shapes of a built-in tiny DiT model (`tiny-flux`, `tiny-chroma`, `tiny-sd3`, ...), from
    the configs it is built with (generation.models.tiny_config, torch-free)."""
    from generation.models import tiny_config

    others = {
        "tiny-sd3": ("sd3", tiny_config.SD3_TRANSFORMER),
        "tiny-qwen": ("qwen", tiny_config.QWEN_TRANSFORMER),
        "tiny-qwen-edit-plus": ("qwen", tiny_config.QWEN_TRANSFORMER),
        "tiny-zimage": ("zimage", tiny_config.ZIMAGE_TRANSFORMER),
        "tiny-flux2": ("flux2", tiny_config.FLUX2_TRANSFORMER),
        "tiny-wan": ("wan", tiny_config.WAN_TRANSFORMER),
        "tiny-wan-i2v": ("wan", tiny_config.WAN_I2V_TRANSFORMER),
        "tiny-ltx": ("ltx", tiny_config.LTX_TRANSFORMER),
    }
    if source in others:
        return dit_shapes(*others[source])
    if source == "tiny-chroma":
        return dit_shapes("chroma", tiny_config.CHROMA_TRANSFORMER)
    return dit_shapes("flux", tiny_config.FLUX_TRANSFORMER, tiny_config.TEXT_ENCODER)
