"""The Linear layers of the SD 3.5, Qwen-Image, Z-Image, FLUX.2, Wan and LTX-Video transformers,
computed from their `transformer/config.json` alone. Torch-free (the chat side checks uploaded LoRAs against them).

`generation.models.dit_shapes` does FLUX.1 and Chroma and asks this module for the others. Each
function lists, under diffusers' module paths, what the family's class builds in diffusers 0.42.1
(`SD3Transformer2DModel`, `QwenImageTransformer2DModel`, `ZImageTransformer2DModel`,
`Flux2Transformer2DModel`); tests/test_family_loras.py checks every table layer for layer against the
real classes on the meta device, at the tiny sizes and at the real models' defaults.

Where a family's LoRAs are also published under the original (BFL, ComfyUI) names, a layer that is
one module in both carries that name (`Layer.sgm`), and the original layers that diffusers splits in
several are listed whole in `fused`, as a file's fused weights see them: SD 3.5's
(`joint_blocks.N.x_block.attn.qkv` -> to_q/to_k/to_v) and FLUX.2's (`double_blocks.N.img_attn.qkv`).
Z-Image's ComfyUI name `attention.out` is its `to_out.0`.
"""

from __future__ import annotations

from typing import Any

from generation.models.shapes import Layer, UnsupportedConfig

TIMESTEP_CHANNELS = 256  # the sinusoidal timestep embedding's width, fixed in all four classes

DEFAULTS: dict[str, dict[str, Any]] = {  # each class's __init__ defaults (diffusers 0.42.1)
    "sd3": {
        "patch_size": 2,
        "in_channels": 16,
        "out_channels": 16,
        "num_layers": 18,
        "attention_head_dim": 64,
        "num_attention_heads": 18,
        "joint_attention_dim": 4096,
        "caption_projection_dim": 1152,
        "pooled_projection_dim": 2048,
        "dual_attention_layers": (),
    },
    "qwen": {
        "patch_size": 2,
        "in_channels": 64,
        "out_channels": 16,
        "num_layers": 60,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 3584,
    },
    "zimage": {
        "all_patch_size": (2,),
        "all_f_patch_size": (1,),
        "in_channels": 16,
        "dim": 3840,
        "n_layers": 30,
        "n_refiner_layers": 2,
        "n_heads": 30,
        "n_kv_heads": 30,
        "cap_feat_dim": 2560,
    },
    "flux2": {
        "patch_size": 1,
        "in_channels": 128,
        "out_channels": None,
        "num_layers": 8,
        "num_single_layers": 48,
        "attention_head_dim": 128,
        "num_attention_heads": 48,
        "joint_attention_dim": 15360,
        "timestep_guidance_channels": 256,
        "mlp_ratio": 3.0,
        "guidance_embeds": True,
    },
    "wan": {  # WanTransformer3DModel: Wan 2.1 14B's sizes
        "patch_size": (1, 2, 2),
        "num_attention_heads": 40,
        "attention_head_dim": 128,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 13824,
        "num_layers": 40,
        "image_dim": None,  # Wan 2.1 I2V/FLF2V: the CLIP image features' width
        "added_kv_proj_dim": None,  # and their keys' and values' input in cross-attention
    },
    "ltx": {  # LTXVideoTransformer3DModel: LTX-Video 2B's sizes
        "in_channels": 128,
        "out_channels": 128,
        "num_attention_heads": 32,
        "attention_head_dim": 64,
        "cross_attention_dim": 2048,
        "num_layers": 28,
        "caption_channels": 4096,
    },
}
# The inner widths of the published models (SD 3.5 Medium, Large; Qwen-Image; Z-Image;
# FLUX.2 Klein 4B, 9B, dev; Wan 1.3B, 5B, 14B; LTX-Video 2B, 13B): another width is a model "at a
# non-standard size".
STANDARD_WIDTHS = {
    "sd3": (1536, 2432),
    "qwen": (3072,),
    "zimage": (3840,),
    "flux2": (3072, 4096, 6144),
    "wan": (1536, 3072, 5120),
    "ltx": (2048, 4096),
}
# The config key holding the width of the text features a family's transformer reads.
TEXT_WIDTH_KEYS = {"zimage": "cap_feat_dim", "wan": "text_dim", "ltx": "caption_channels"}
# Config keys that change what the classes build in ways these tables do not model.
_UNMODELLED = {"qwen": ("use_additional_t_cond",), "zimage": ("siglip_feat_dim",)}
ZIMAGE_ADALN = 256  # Z-Image's modulation input: min(dim, 256) (transformer_z_image.ADALN_EMBED_DIM)
ZIMAGE_T_MID = 1024  # its timestep embedder's hidden width


class Layers:
    """What one family's table is built into: diffusers path -> layer (with its original name), the
    fused original layers (flat name -> (name, layer)) and the diffusers layers each one holds, in
    the order of its rows, and the layers whose original stores its two halves the other way round
    (SAI's and BFL's (shift, scale) modulation, diffusers' (scale, shift))."""

    def __init__(self) -> None:
        self.layers: dict[str, Layer] = {}
        self.fused: dict[str, tuple[str, Layer]] = {}
        self.members: dict[str, tuple[str, ...]] = {}
        self.swapped: set[str] = set()

    def linear(self, path: str, inputs: int, outputs: int, original: str | None = None) -> None:
        self.layers[path] = Layer("linear", inputs, outputs, sgm=original)

    def fuse(self, original: str, inputs: int, outputs: int, members: tuple[str, ...] = ()) -> None:
        flat = original.replace(".", "_")
        self.fused[flat] = (original, Layer("linear", inputs, outputs, sgm=original))
        self.members[flat] = members


def merged_config(family: str, config: dict[str, Any]) -> dict[str, Any]:
    """The family's defaults with the config's values, checked (UnsupportedConfig when unusable)."""
    defaults = DEFAULTS[family]
    for key in _UNMODELLED.get(family, ()):
        if config.get(key):
            raise UnsupportedConfig(f"the transformer config sets {key}, which sdbot's layer tables don't model")
    merged = {**defaults, **{k: v for k, v in config.items() if k in defaults}}
    for key, value in merged.items():
        if isinstance(value, bool) or value is None or isinstance(value, (tuple, list)):
            continue
        if not (isinstance(value, (int, float)) and value > 0):
            raise UnsupportedConfig(f"the transformer config's {key} is {value!r}")
    return merged


def width(family: str, c: dict[str, Any]) -> int:
    """The transformer's inner width."""
    return int(c["dim"]) if family == "zimage" else int(c["attention_head_dim"]) * int(c["num_attention_heads"])


def family_layers(family: str, config: dict[str, Any]) -> Layers:
    """The Linear layers of the family's transformer with this config."""
    builders = {"sd3": _sd3, "qwen": _qwen, "zimage": _zimage, "flux2": _flux2, "wan": _wan, "ltx": _ltx}
    if family not in builders:
        raise UnsupportedConfig(f"no transformer layout for the family {family!r}")
    c = merged_config(family, config)
    out = Layers()
    builders[family](out, c, width(family, c))
    return out


def _attention(out: Layers, prefix: str, inner: int, *, context: bool, context_out: bool = True) -> None:
    for projection in ("to_q", "to_k", "to_v"):
        out.linear(f"{prefix}.{projection}", inner, inner)
    out.linear(f"{prefix}.to_out.0", inner, inner)
    if context:
        for projection in ("add_q_proj", "add_k_proj", "add_v_proj"):
            out.linear(f"{prefix}.{projection}", inner, inner)
        if context_out:
            out.linear(f"{prefix}.to_add_out", inner, inner)


def _sd3(out: Layers, c: dict[str, Any], inner: int) -> None:
    """SD3Transformer2DModel: joint blocks (the last one reads the text without updating it), SD 3.5
    Medium's second attention in its dual-attention blocks, GELU MLPs of 4x. SAI's names (kohya's
    and ComfyUI's SD 3.5 LoRAs), as diffusers' single-file conversion maps them."""
    out.linear("time_text_embed.timestep_embedder.linear_1", TIMESTEP_CHANNELS, inner, "t_embedder.mlp.0")
    out.linear("time_text_embed.timestep_embedder.linear_2", inner, inner, "t_embedder.mlp.2")
    out.linear("time_text_embed.text_embedder.linear_1", c["pooled_projection_dim"], inner, "y_embedder.mlp.0")
    out.linear("time_text_embed.text_embedder.linear_2", inner, inner, "y_embedder.mlp.2")
    out.linear("context_embedder", c["joint_attention_dim"], c["caption_projection_dim"], "context_embedder")
    dual = set(c["dual_attention_layers"])
    for i in range(c["num_layers"]):
        block, sai, last = f"transformer_blocks.{i}", f"joint_blocks.{i}", i == c["num_layers"] - 1
        out.linear(f"{block}.norm1.linear", inner, (9 if i in dual else 6) * inner, f"{sai}.x_block.adaLN_modulation.1")
        out.linear(f"{block}.norm1_context.linear", inner, (2 if last else 6) * inner, f"{sai}.context_block.adaLN_modulation.1")
        if last:
            out.swapped.add(f"{block}.norm1_context.linear")
        _attention(out, f"{block}.attn", inner, context=True, context_out=not last)
        _original(out, f"{block}.attn.to_out.0", f"{sai}.x_block.attn.proj")
        if not last:
            _original(out, f"{block}.attn.to_add_out", f"{sai}.context_block.attn.proj")
        out.fuse(f"{sai}.x_block.attn.qkv", inner, 3 * inner, tuple(f"{block}.attn.to_{p}" for p in "qkv"))
        out.fuse(f"{sai}.context_block.attn.qkv", inner, 3 * inner, tuple(f"{block}.attn.add_{p}_proj" for p in "qkv"))
        if i in dual:
            _attention(out, f"{block}.attn2", inner, context=False)
            _original(out, f"{block}.attn2.to_out.0", f"{sai}.x_block.attn2.proj")
            out.fuse(f"{sai}.x_block.attn2.qkv", inner, 3 * inner, tuple(f"{block}.attn2.to_{p}" for p in "qkv"))
        for ff, stream in (("ff", "x_block"),) if last else (("ff", "x_block"), ("ff_context", "context_block")):
            out.linear(f"{block}.{ff}.net.0.proj", inner, 4 * inner, f"{sai}.{stream}.mlp.fc1")
            out.linear(f"{block}.{ff}.net.2", 4 * inner, inner, f"{sai}.{stream}.mlp.fc2")
    out.linear("norm_out.linear", inner, 2 * inner, "final_layer.adaLN_modulation.1")
    out.swapped.add("norm_out.linear")
    out.linear("proj_out", inner, c["patch_size"] ** 2 * c["out_channels"], "final_layer.linear")


def _original(out: Layers, path: str, original: str) -> None:
    layer = out.layers[path]
    out.layers[path] = Layer(layer.kind, layer.inputs, layer.outputs, sgm=original)


def _qwen(out: Layers, c: dict[str, Any], inner: int) -> None:
    """QwenImageTransformer2DModel: dual-stream blocks with their own modulation per stream."""
    out.linear("time_text_embed.timestep_embedder.linear_1", TIMESTEP_CHANNELS, inner)
    out.linear("time_text_embed.timestep_embedder.linear_2", inner, inner)
    out.linear("img_in", c["in_channels"], inner)
    out.linear("txt_in", c["joint_attention_dim"], inner)
    for i in range(c["num_layers"]):
        block = f"transformer_blocks.{i}"
        for stream in ("img", "txt"):
            out.linear(f"{block}.{stream}_mod.1", inner, 6 * inner)
            out.linear(f"{block}.{stream}_mlp.net.0.proj", inner, 4 * inner)
            out.linear(f"{block}.{stream}_mlp.net.2", 4 * inner, inner)
        _attention(out, f"{block}.attn", inner, context=True)
    out.linear("norm_out.linear", inner, 2 * inner)
    out.linear("proj_out", inner, c["patch_size"] ** 2 * c["out_channels"])


def _zimage(out: Layers, c: dict[str, Any], inner: int) -> None:
    """ZImageTransformer2DModel: refiners for the noise and the caption, then the main single-stream
    blocks; SwiGLU feed-forwards (w1, w3 in; w2 out) of int(dim / 3 * 8). Keys and values are as wide
    as queries: diffusers 0.42.1 takes `n_kv_heads` but builds full-width projections."""
    hidden = int(inner / 3 * 8)
    adaln = min(inner, ZIMAGE_ADALN)
    for p, fp in zip(c["all_patch_size"], c["all_f_patch_size"], strict=True):
        key = f"{p}-{fp}"
        out.linear(f"all_x_embedder.{key}", fp * p * p * c["in_channels"], inner)
        out.linear(f"all_final_layer.{key}.linear", inner, p * p * fp * c["in_channels"])
        out.linear(f"all_final_layer.{key}.adaLN_modulation.1", adaln, inner)
    out.linear("t_embedder.mlp.0", TIMESTEP_CHANNELS, ZIMAGE_T_MID)
    out.linear("t_embedder.mlp.2", ZIMAGE_T_MID, adaln)
    out.linear("cap_embedder.1", c["cap_feat_dim"], inner)
    blocks = [(f"noise_refiner.{i}", True) for i in range(c["n_refiner_layers"])]
    blocks += [(f"context_refiner.{i}", False) for i in range(c["n_refiner_layers"])]
    blocks += [(f"layers.{i}", True) for i in range(c["n_layers"])]
    for block, modulated in blocks:
        out.linear(f"{block}.attention.to_q", inner, inner)
        out.linear(f"{block}.attention.to_k", inner, inner)
        out.linear(f"{block}.attention.to_v", inner, inner)
        out.linear(f"{block}.attention.to_out.0", inner, inner, f"{block}.attention.out")  # ComfyUI's name
        out.linear(f"{block}.feed_forward.w1", inner, hidden)
        out.linear(f"{block}.feed_forward.w2", hidden, inner)
        out.linear(f"{block}.feed_forward.w3", inner, hidden)
        if modulated:
            out.linear(f"{block}.adaLN_modulation.0", adaln, 4 * inner)


def _flux2(out: Layers, c: dict[str, Any], inner: int) -> None:
    """Flux2Transformer2DModel: FLUX.1's double and single blocks with SwiGLU MLPs and modulation
    shared by all blocks (no per-block modulation layers); BFL names as ai-toolkit writes them
    (diffusers' `_convert_non_diffusers_flux2_lora_to_diffusers`)."""
    mlp = int(inner * c["mlp_ratio"])
    embed = "time_guidance_embed"
    embedders = [("timestep_embedder", "time_in")] + ([("guidance_embedder", "guidance_in")] if c["guidance_embeds"] else [])
    for name, original in embedders:
        out.linear(f"{embed}.{name}.linear_1", c["timestep_guidance_channels"], inner, f"{original}.in_layer")
        out.linear(f"{embed}.{name}.linear_2", inner, inner, f"{original}.out_layer")
    for stream, chunks in (("double_stream_modulation_img", 6), ("double_stream_modulation_txt", 6), ("single_stream_modulation", 3)):
        out.linear(f"{stream}.linear", inner, chunks * inner, f"{stream}.lin")
    out.linear("x_embedder", c["in_channels"], inner, "img_in")
    out.linear("context_embedder", c["joint_attention_dim"], inner, "txt_in")
    for i in range(c["num_layers"]):
        block, original = f"transformer_blocks.{i}", f"double_blocks.{i}"
        _attention(out, f"{block}.attn", inner, context=True)
        _original(out, f"{block}.attn.to_out.0", f"{original}.img_attn.proj")
        _original(out, f"{block}.attn.to_add_out", f"{original}.txt_attn.proj")
        out.fuse(f"{original}.img_attn.qkv", inner, 3 * inner, tuple(f"{block}.attn.to_{p}" for p in "qkv"))
        out.fuse(f"{original}.txt_attn.qkv", inner, 3 * inner, tuple(f"{block}.attn.add_{p}_proj" for p in "qkv"))
        for ff, stream in (("ff", "img"), ("ff_context", "txt")):
            out.linear(f"{block}.{ff}.linear_in", inner, 2 * mlp, f"{original}.{stream}_mlp.0")
            out.linear(f"{block}.{ff}.linear_out", mlp, inner, f"{original}.{stream}_mlp.2")
    for i in range(c["num_single_layers"]):
        block, original = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        out.linear(f"{block}.attn.to_qkv_mlp_proj", inner, 3 * inner + 2 * mlp, f"{original}.linear1")
        out.linear(f"{block}.attn.to_out", inner + mlp, inner, f"{original}.linear2")
    out.linear("norm_out.linear", inner, 2 * inner, "final_layer.adaLN_modulation.1")
    out.linear("proj_out", inner, c["patch_size"] ** 2 * (c["out_channels"] or c["in_channels"]), "final_layer.linear")


def _wan(out: Layers, c: dict[str, Any], inner: int) -> None:
    """WanTransformer3DModel: self-attention, cross-attention on the text (and, in Wan 2.1's I2V and
    FLF2V, on the CLIP image tokens: `add_k_proj`/`add_v_proj`), a GELU feed-forward; one modulation
    for all blocks (`time_proj`). The original names (`self_attn.q`, `ffn.0`, `head.head`) are the
    ones ComfyUI and musubi-tuner files use (diffusers' `_convert_non_diffusers_wan_lora_to_diffusers`)."""
    embedder = "condition_embedder"
    out.linear(f"{embedder}.time_embedder.linear_1", c["freq_dim"], inner, "time_embedding.0")
    out.linear(f"{embedder}.time_embedder.linear_2", inner, inner, "time_embedding.2")
    out.linear(f"{embedder}.time_proj", inner, 6 * inner, "time_projection.1")
    out.linear(f"{embedder}.text_embedder.linear_1", c["text_dim"], inner, "text_embedding.0")
    out.linear(f"{embedder}.text_embedder.linear_2", inner, inner, "text_embedding.2")
    if c["image_dim"]:
        out.linear(f"{embedder}.image_embedder.ff.net.0.proj", c["image_dim"], c["image_dim"], "img_emb.proj.1")
        out.linear(f"{embedder}.image_embedder.ff.net.2", c["image_dim"], inner, "img_emb.proj.3")
    for i in range(c["num_layers"]):
        block = f"blocks.{i}"
        for attention, original in (("attn1", "self_attn"), ("attn2", "cross_attn")):
            for projection, letter in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o")):
                out.linear(f"{block}.{attention}.{projection}", inner, inner, f"{block}.{original}.{letter}")
        if c["added_kv_proj_dim"]:
            for projection, name in (("add_k_proj", "k_img"), ("add_v_proj", "v_img")):
                out.linear(f"{block}.attn2.{projection}", c["added_kv_proj_dim"], inner, f"{block}.cross_attn.{name}")
        out.linear(f"{block}.ffn.net.0.proj", inner, c["ffn_dim"], f"{block}.ffn.0")
        out.linear(f"{block}.ffn.net.2", c["ffn_dim"], inner, f"{block}.ffn.2")
    patch = c["patch_size"]
    out.linear("proj_out", inner, c["out_channels"] * patch[0] * patch[1] * patch[2], "head.head")


def _ltx(out: Layers, c: dict[str, Any], inner: int) -> None:
    """LTXVideoTransformer3DModel: self-attention (`attn1`), cross-attention on the text (`attn2`)
    and a GELU feed-forward per block; one modulation for all (`time_embed.linear`). LTX-Video's own
    code names its blocks as diffusers does; its patchify and adaLN layers are `patchify_proj` and
    `adaln_single` (diffusers' `_convert_non_diffusers_ltxv_lora_to_diffusers` only drops the
    `diffusion_model.` prefix)."""
    out.linear("proj_in", c["in_channels"], inner, "patchify_proj")
    out.linear("time_embed.emb.timestep_embedder.linear_1", TIMESTEP_CHANNELS, inner, "adaln_single.emb.timestep_embedder.linear_1")
    out.linear("time_embed.emb.timestep_embedder.linear_2", inner, inner, "adaln_single.emb.timestep_embedder.linear_2")
    out.linear("time_embed.linear", inner, 6 * inner, "adaln_single.linear")
    out.linear("caption_projection.linear_1", c["caption_channels"], inner)
    out.linear("caption_projection.linear_2", inner, inner)
    for i in range(c["num_layers"]):
        block = f"transformer_blocks.{i}"
        for projection in ("to_q", "to_k", "to_v", "to_out.0"):
            out.linear(f"{block}.attn1.{projection}", inner, inner)
        out.linear(f"{block}.attn2.to_q", inner, inner)
        out.linear(f"{block}.attn2.to_k", c["cross_attention_dim"], inner)
        out.linear(f"{block}.attn2.to_v", c["cross_attention_dim"], inner)
        out.linear(f"{block}.attn2.to_out.0", inner, inner)
        out.linear(f"{block}.ff.net.0.proj", inner, 4 * inner)
        out.linear(f"{block}.ff.net.2", 4 * inner, inner)
    out.linear("proj_out", inner, c["out_channels"])
