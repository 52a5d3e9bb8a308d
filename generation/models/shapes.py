"""What a model's layers look like, computed from its component configs alone. Torch-free.

An uploaded LoRA or embedding fits a model only if every layer it changes exists in that model
with the same shape. To tell that at upload (in the chat process, which has no torch and loads
no weights), this module derives, from `unet/config.json` and the text encoders' `config.json`,
the name and shape of every Linear and Conv2d layer that diffusers' `UNet2DConditionModel` and
transformers' `CLIPTextModel(WithProjection)` build from those configs. tests/test_model_shapes.py
checks the result layer for layer against the real classes instantiated on the meta device, for
SD 1.x, SD 2.x, SDXL and the tiny models.

Names are the module paths diffusers uses (`down_blocks.0.attentions.0.transformer_blocks.0.
attn2.to_k`). kohya's SDXL LoRAs name the UNet by the original (SGM) blocks instead
(`input_blocks_4_1_transformer_blocks_0_attn2_to_k`); each layer knows that alias too, computed
from the block layout, so both spellings find it.

Configs this does not model (other block types, GLIGEN, class embeddings, ...) give
`UnsupportedConfig`: the caller then falls back to comparing architectures only, and the engine's
own check at load time still refuses a file that does not fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from config.models import ARCHITECTURE_NAMES

# Standard architectures by (cross-attention width, text-encoder widths).
KNOWN_ARCHITECTURES = {(768, (768,)): "sd1", (1024, (1024,)): "sd2", (2048, (768, 1280)): "sdxl"}
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
MAX_CONFIG_BYTES = 1024 * 1024

# diffusers' defaults for the UNet2DConditionModel arguments read here (diffusers 0.42).
_UNET_DEFAULTS: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "only_cross_attention": False,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 1280,
    "transformer_layers_per_block": 1,
    "reverse_transformer_layers_per_block": None,
    "attention_head_dim": 8,
    "num_attention_heads": None,
    "use_linear_projection": False,
    "resnet_time_scale_shift": "default",
    "time_embedding_dim": None,
    "time_cond_proj_dim": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "addition_embed_type": None,
    "projection_class_embeddings_input_dim": None,
    "class_embeddings_concat": False,
}
# Options that build layers this module does not model: any other value is UnsupportedConfig.
_UNET_PLAIN = {
    "time_embedding_type": "positional",
    "class_embed_type": None,
    "encoder_hid_dim_type": None,
    "attention_type": "default",
    "dual_cross_attention": False,
    "num_class_embeds": None,
}
_DOWN_TYPES = ("DownBlock2D", "CrossAttnDownBlock2D")
_UP_TYPES = ("UpBlock2D", "CrossAttnUpBlock2D")
# Inside a resnet, the original (SGM) layer names kohya's SDXL files use.
_SGM_RESNET = {"conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


class UnsupportedConfig(ValueError):
    """A config with parts this module does not model; the reason says which."""


@dataclass(frozen=True)
class Layer:
    kind: Literal["linear", "conv"]
    inputs: int
    outputs: int
    kernel: tuple[int, int] = (1, 1)
    sgm: str | None = None  # the original (SGM) name of a UNet layer, dots as in diffusers' paths

    @property
    def flat_inputs(self) -> int:
        """Inputs times kernel area: what a LoRA's flattened down weight has as columns."""
        return self.inputs * self.kernel[0] * self.kernel[1]

    def text(self) -> str:
        """ "640 inputs → 320 outputs", with the kernel for a convolution: how a person reads a shape."""
        kernel = f", {self.kernel[0]}×{self.kernel[1]} kernel" if self.kind == "conv" and self.kernel != (1, 1) else ""
        return f"{self.inputs} inputs → {self.outputs} outputs{kernel}"


@dataclass(frozen=True)
class ModelShapes:
    """The layers of a model's UNet and text encoders, and the widths that name its architecture."""

    layers: dict[str, dict[str, Layer]]  # component -> module path -> layer
    context_width: int | None  # what the UNet's cross-attention reads: the text features' width
    text_widths: tuple[int, ...]  # each text encoder's hidden (and token embedding) width
    channels: tuple[int, ...] = ()  # the UNet's block widths
    _flat: dict[str, dict[str, str]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for component, layers in self.layers.items():
            names = self._flat.setdefault(component, {})
            for path, layer in layers.items():
                names[_flat(path)] = path
                if layer.sgm:
                    names.setdefault(_flat(layer.sgm), path)

    @property
    def architecture(self) -> str | None:
        """sd1, sd2 or sdxl when the widths are a standard model's; None for any other."""
        return KNOWN_ARCHITECTURES.get((self.context_width or 0, self.text_widths))

    def find(self, component: str, name: str) -> tuple[str, Layer] | None:
        """The layer a file's module name means (dots or underscores; diffusers or SGM names)."""
        path = self._flat.get(component, {}).get(_flat(name))
        return (path, self.layers[component][path]) if path is not None else None

    def dimensions(self) -> str:
        """The widths that matter for LoRAs and embeddings, in words."""
        encoders = (
            f"a {self.text_widths[0]}-wide text encoder"
            if len(self.text_widths) == 1
            else f"{len(self.text_widths)} text encoders ({', '.join(str(w) for w in self.text_widths)} wide)"
        )
        parts = [f"{self.context_width}-wide text features", encoders]
        if self.channels:
            parts.append(f"UNet {min(self.channels)}–{max(self.channels)} channels")
        return ", ".join(parts)

    def describe(self, layout: str | None = None) -> str:
        """ "SDXL" for a standard model; else its dimensions ("SD 1.x layout at a non-standard size
        (32-wide text features, ...)"), with the layout it was set up as, when there is one."""
        if self.architecture is not None:
            return ARCHITECTURE_NAMES[self.architecture]
        what = f"{ARCHITECTURE_NAMES[layout]} layout at a non-standard size" if layout in ARCHITECTURE_NAMES else "a custom model"
        return f"{what} ({self.dimensions()})"


def _flat(name: str) -> str:
    return name.replace(".", "_")


# --- from configs -----------------------------------------------------------------------------------


def shapes_from_configs(unet: dict[str, Any], text_encoders: list[dict[str, Any]]) -> ModelShapes:
    """The shapes of a model with this UNet config and these text encoder configs (in order:
    text_encoder, text_encoder_2). UnsupportedConfig for parts this module does not model."""
    if not text_encoders:
        raise UnsupportedConfig("the model has no text encoder config")
    layers = {"unet": unet_layers(unet)}
    widths = []
    for component, config in zip(COMPONENTS[1:], text_encoders, strict=False):
        layers[component] = text_encoder_layers(config)
        widths.append(int(config["hidden_size"]))
    context = _per_block(_unet_config(unet)["cross_attention_dim"], 1)[0]
    return ModelShapes(layers, context, tuple(widths), tuple(_unet_config(unet)["block_out_channels"]))


def text_encoder_layers(config: dict[str, Any]) -> dict[str, Layer]:
    """CLIPTextModel's (and CLIPTextModelWithProjection's) Linear layers."""
    try:
        hidden, inner, count = int(config["hidden_size"]), int(config["intermediate_size"]), int(config["num_hidden_layers"])
    except (KeyError, TypeError, ValueError):
        raise UnsupportedConfig("the text encoder config lacks hidden_size, intermediate_size or num_hidden_layers") from None
    found: dict[str, Layer] = {}
    for i in range(count):
        prefix = f"text_model.encoder.layers.{i}"
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            found[f"{prefix}.self_attn.{projection}"] = Layer("linear", hidden, hidden)
        found[f"{prefix}.mlp.fc1"] = Layer("linear", hidden, inner)
        found[f"{prefix}.mlp.fc2"] = Layer("linear", inner, hidden)
    if "CLIPTextModelWithProjection" in (config.get("architectures") or ()):
        found["text_projection"] = Layer("linear", hidden, int(config.get("projection_dim", 512)))
    return found


def _unet_config(config: dict[str, Any]) -> dict[str, Any]:
    merged = {**_UNET_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
    for key, plain in _UNET_PLAIN.items():
        if merged.get(key, plain) != plain:
            raise UnsupportedConfig(f"the UNet has {key}={merged[key]!r}")
    if merged["addition_embed_type"] not in (None, "text_time"):
        raise UnsupportedConfig(f"the UNet has addition_embed_type={merged['addition_embed_type']!r}")
    if merged["class_embeddings_concat"]:
        raise UnsupportedConfig("the UNet concatenates class embeddings")
    return merged


def _per_block(value: Any, blocks: int) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value] * blocks


def unet_layers(config: dict[str, Any]) -> dict[str, Layer]:
    """UNet2DConditionModel's Linear and Conv2d layers, as its `__init__` builds them."""
    c = _unet_config(config)
    channels = list(c["block_out_channels"])
    blocks = len(channels)
    downs, ups = list(c["down_block_types"]), list(c["up_block_types"])
    if len(downs) != blocks or len(ups) != blocks:
        raise UnsupportedConfig("the UNet's block lists differ in length")
    for kind in (*downs, *ups):
        if kind not in (*_DOWN_TYPES, *_UP_TYPES):
            raise UnsupportedConfig(f"the UNet has a {kind}")
    if c["mid_block_type"] not in ("UNetMidBlock2DCrossAttn", None):
        raise UnsupportedConfig(f"the UNet has a {c['mid_block_type']}")
    heads = _per_block(c["num_attention_heads"] or c["attention_head_dim"], blocks)
    cross = _per_block(c["cross_attention_dim"], blocks)
    per_block = _per_block(c["layers_per_block"], blocks)
    depth = _per_block(c["transformer_layers_per_block"], blocks)
    only_cross = _per_block(c["only_cross_attention"], blocks)
    linear_projection = bool(c["use_linear_projection"])
    temb_in = channels[0]
    temb = c["time_embedding_dim"] or channels[0] * 4
    time_out = 2 if c["resnet_time_scale_shift"] == "scale_shift" else 1

    found: dict[str, Layer] = {}
    found["conv_in"] = Layer("conv", c["in_channels"], channels[0], (c["conv_in_kernel"],) * 2, "input_blocks.0.0")
    found["time_embedding.linear_1"] = Layer("linear", temb_in, temb, sgm="time_embed.0")
    found["time_embedding.linear_2"] = Layer("linear", temb, temb, sgm="time_embed.2")
    if c["time_cond_proj_dim"]:
        found["time_embedding.cond_proj"] = Layer("linear", c["time_cond_proj_dim"], temb_in)
    if c["addition_embed_type"] == "text_time":
        found["add_embedding.linear_1"] = Layer("linear", c["projection_class_embeddings_input_dim"], temb, sgm="label_emb.0.0")
        found["add_embedding.linear_2"] = Layer("linear", temb, temb, sgm="label_emb.0.2")

    def resnet(path: str, sgm: str, inputs: int, outputs: int) -> None:
        found[f"{path}.conv1"] = Layer("conv", inputs, outputs, (3, 3), f"{sgm}.{_SGM_RESNET['conv1']}")
        found[f"{path}.time_emb_proj"] = Layer("linear", temb, outputs * time_out, sgm=f"{sgm}.{_SGM_RESNET['time_emb_proj']}")
        found[f"{path}.conv2"] = Layer("conv", outputs, outputs, (3, 3), f"{sgm}.{_SGM_RESNET['conv2']}")
        if inputs != outputs:
            found[f"{path}.conv_shortcut"] = Layer("conv", inputs, outputs, (1, 1), f"{sgm}.{_SGM_RESNET['conv_shortcut']}")

    def transformer(path: str, sgm: str, width: int, n_heads: int, layers: int, context: int, cross_only: bool) -> None:
        inner = n_heads * (width // n_heads)
        projection = "linear" if linear_projection else "conv"
        found[f"{path}.proj_in"] = Layer(projection, width, inner, sgm=f"{sgm}.proj_in")
        for k in range(layers):
            block = f"transformer_blocks.{k}"
            attentions = {"attn1": context if cross_only else inner, "attn2": context}
            for name, keys in attentions.items():
                for projection_name, inputs in (("to_q", inner), ("to_k", keys), ("to_v", keys), ("to_out.0", inner)):
                    found[f"{path}.{block}.{name}.{projection_name}"] = Layer(
                        "linear", inputs, inner, sgm=f"{sgm}.{block}.{name}.{projection_name}"
                    )
            found[f"{path}.{block}.ff.net.0.proj"] = Layer("linear", inner, inner * 8, sgm=f"{sgm}.{block}.ff.net.0.proj")
            found[f"{path}.{block}.ff.net.2"] = Layer("linear", inner * 4, inner, sgm=f"{sgm}.{block}.ff.net.2")
        found[f"{path}.proj_out"] = Layer(projection, inner, width, sgm=f"{sgm}.proj_out")

    def layer_depths(value: Any, layers: int) -> list[int]:
        return list(value) if isinstance(value, list | tuple) else [value] * layers

    # down: the SGM input block index counts resnet(+attention) layers and downsamplers in order
    sgm_index = 1
    output = channels[0]
    for i, kind in enumerate(downs):
        inputs, output = output, channels[i]
        depths = layer_depths(depth[i], per_block[i])
        for j in range(per_block[i]):
            resnet(f"down_blocks.{i}.resnets.{j}", f"input_blocks.{sgm_index}.0", inputs if j == 0 else output, output)
            if kind == "CrossAttnDownBlock2D":
                transformer(
                    f"down_blocks.{i}.attentions.{j}", f"input_blocks.{sgm_index}.1", output, heads[i], depths[j], cross[i], only_cross[i]
                )
            sgm_index += 1
        if i < blocks - 1:
            found[f"down_blocks.{i}.downsamplers.0.conv"] = Layer("conv", output, output, (3, 3), f"input_blocks.{sgm_index}.0.op")
            sgm_index += 1

    if c["mid_block_type"] == "UNetMidBlock2DCrossAttn":
        width = channels[-1]
        resnet("mid_block.resnets.0", "middle_block.0", width, width)
        transformer("mid_block.attentions.0", "middle_block.1", width, heads[-1], layer_depths(depth[-1], 1)[0], cross[-1], False)
        resnet("mid_block.resnets.1", "middle_block.2", width, width)

    reversed_channels = list(reversed(channels))
    reversed_depth = c["reverse_transformer_layers_per_block"] or list(reversed(depth))
    sgm_index = 0
    output = reversed_channels[0]
    for i, kind in enumerate(ups):
        previous, output = output, reversed_channels[i]
        skip_in = reversed_channels[min(i + 1, blocks - 1)]
        layers = list(reversed(per_block))[i] + 1
        depths = layer_depths(reversed_depth[i], layers)
        block_heads, block_cross, block_only = list(reversed(heads))[i], list(reversed(cross))[i], list(reversed(only_cross))[i]
        for j in range(layers):
            skip = skip_in if j == layers - 1 else output
            resnet(f"up_blocks.{i}.resnets.{j}", f"output_blocks.{sgm_index}.0", (previous if j == 0 else output) + skip, output)
            if kind == "CrossAttnUpBlock2D":
                transformer(
                    f"up_blocks.{i}.attentions.{j}", f"output_blocks.{sgm_index}.1", output, block_heads, depths[j], block_cross, block_only
                )
            if j == layers - 1 and i < blocks - 1:
                position = 2 if kind == "CrossAttnUpBlock2D" else 1
                found[f"up_blocks.{i}.upsamplers.0.conv"] = Layer(
                    "conv", output, output, (3, 3), f"output_blocks.{sgm_index}.{position}.conv"
                )
            sgm_index += 1
    found["conv_out"] = Layer("conv", channels[0], c["out_channels"], (c["conv_out_kernel"],) * 2, "out.2")
    return found


# --- from a model folder ------------------------------------------------------------------------------


def shapes_of_folder(folder: Path) -> ModelShapes | None:
    """The shapes of a diffusers model folder, from its configs; None when they are missing,
    unreadable or of a kind this module does not model. Cached until a config file changes."""
    paths = [folder / "unet" / "config.json", folder / "text_encoder" / "config.json", folder / "text_encoder_2" / "config.json"]
    stamps = []
    for path in paths:
        try:
            stat = path.stat()
            stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            stamps.append((str(path), None, None))
    return _cached_shapes(tuple(stamps))


@lru_cache(maxsize=32)
def _cached_shapes(stamps: tuple[tuple[str, int | None, int | None], ...]) -> ModelShapes | None:
    configs = [read_config(Path(path)) if size is not None else None for path, _, size in stamps]
    unet, encoders = configs[0], [c for c in configs[1:] if c is not None]
    if unet is None or not encoders:
        return None
    try:
        return shapes_from_configs(unet, encoders)
    except (UnsupportedConfig, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None


def read_config(path: Path) -> dict[str, Any] | None:
    """A component's config.json, or None when it is missing, too big or not a JSON object."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
