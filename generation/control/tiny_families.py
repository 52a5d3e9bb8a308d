"""The built-in tiny ControlNets of the transformer families that take ControlNets (SD 3.5,
Qwen-Image, Z-Image): one per control type, random weights in the real architectures, built from
the family's tiny model (tiny-sd3, tiny-qwen, tiny-zimage), saved with `save_pretrained` and loaded
through the same code as real ones (generation.control.nets). SD 1.x's are in `tiny`.

Each is built as diffusers builds a ControlNet from a transformer, which starts it at zero (its
output projections, and the map's embedding, are zero modules, as in training): the builder gives
those random weights, so the map visibly changes the picture (tests/test_family_controlnet.py
measures it).

- SD 3.5: `SD3ControlNetModel.from_transformer` (InstantX's form: one joint block, the transformer's
  patch and text embeddings, zero pooled projections). from_transformer writes into the
  transformer's own config (docs/rules.md), so it gets a copy loaded for the build.
- Qwen-Image: `QwenImageControlNetModel.from_transformer`, one block at the tiny transformer's width.
- Z-Image: `ZImageControlNetModel` in the plain 1.x union form (16 channels: the map's latents;
  control blocks at both of the tiny transformer's layers). Its pipeline links the transformer's
  embedders and refiners into it when it is used (`from_transformer`), so nothing of them is saved.

The map's latents of SD 3.5 and Qwen-Image are sampled from the tiny VAEs, whose random encoders
give a spread (~1 and ~0.5) far larger than what tells two maps apart, so the map steers less than
it would with a real VAE: two maps (a picture's left or right half white) give pictures ~10 (SD
3.5), ~4 (Qwen-Image) and ~12 (Z-Image, whose pipeline takes the latents' mean) of 255 apart on
average; larger output weights saturate the tiny transformers rather than widen that.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from generation.models import tiny_qwen, tiny_sd3, tiny_zimage
from generation.models.tiny import SEED, build_atomically
from generation.models.tiny_dit import _seeded
from generation.spec import CONTROL_TYPES

VERSIONS = {"sd3": "tiny-controlnet-sd35-v1", "qwen": "tiny-controlnet-qwen-v1", "zimage": "tiny-controlnet-zimage-v1"}
# The scale of the random weights given to each family's zero modules: (the map's embedding, the
# outputs). Larger outputs saturate the tiny transformers (the picture stops following the map).
SCALES = {"sd3": (1.0, 0.02), "qwen": (1.0, 0.01), "zimage": (1.0, 0.1)}


def ensure(models_dir: Path, control_type: str, family: str) -> Path:
    """The folder of `family`'s tiny ControlNet for `control_type`, built once (all types at once)."""
    root = Path(models_dir) / VERSIONS[family]
    if not (root / control_type / "config.json").exists():
        build_atomically(root, lambda folder: _save(folder, family, models_dir))
    return root / control_type


def _save(folder: Path, family: str, models_dir: Path) -> None:
    folder.mkdir(parents=True)
    transformer = tiny_transformer(family, models_dir)
    for index, control_type in enumerate(CONTROL_TYPES):
        with _seeded(SEED + 300 + index):
            net = BUILDERS[family](transformer)
        net.save_pretrained(folder / control_type, safe_serialization=True)


def tiny_transformer(family: str, models_dir: Path) -> Any:
    """The family's tiny transformer, loaded from its tiny model's folder (built there if needed)."""
    import diffusers

    folder, class_name = {
        "sd3": (tiny_sd3.ensure, "SD3Transformer2DModel"),
        "qwen": (tiny_qwen.ensure, "QwenImageTransformer2DModel"),
        "zimage": (tiny_zimage.ensure, "ZImageTransformer2DModel"),
    }[family]
    return getattr(diffusers, class_name).from_pretrained(folder(models_dir), subfolder="transformer")


@torch.no_grad()
def _randomize(family: str, inputs: list[torch.nn.Module], outputs: list[torch.nn.Module]) -> None:
    """Random weights for a ControlNet's zero modules: the map's embedding and its outputs."""
    for modules, scale in zip((inputs, outputs), SCALES[family], strict=True):
        for module in modules:
            for parameter in module.parameters():
                parameter.copy_(scale * torch.randn_like(parameter))


def build_sd3(transformer: Any) -> Any:
    """An SD 3.5 ControlNet of one joint block (the tiny transformer's last block is context-pre-only,
    which a ControlNet block is not)."""
    from diffusers import SD3ControlNetModel

    net = SD3ControlNetModel.from_transformer(transformer, num_layers=1, num_extra_conditioning_channels=0)
    _randomize("sd3", [net.pos_embed_input], list(net.controlnet_blocks))
    return net


def build_qwen(transformer: Any) -> Any:
    """A Qwen-Image ControlNet of one block, as `QwenImageControlNetModel.from_transformer` makes it,
    built from its own arguments: from_transformer's config carries the transformer's other keys,
    which loading it would warn about every time."""
    from diffusers import QwenImageControlNetModel

    config = transformer.config
    net = QwenImageControlNetModel(
        patch_size=config.patch_size,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        num_layers=1,
        attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads,
        joint_attention_dim=config.joint_attention_dim,
        axes_dims_rope=tuple(config.axes_dims_rope),
    )
    for part in ("pos_embed", "time_text_embed", "txt_norm", "img_in", "txt_in"):
        getattr(net, part).load_state_dict(getattr(transformer, part).state_dict())
    net.transformer_blocks.load_state_dict(transformer.transformer_blocks.state_dict(), strict=False)
    _randomize("qwen", [net.controlnet_x_embedder], list(net.controlnet_blocks))
    return net


def build_zimage(transformer: Any, control_in_dim: int | None = None) -> Any:
    """A Z-Image ControlNet in the plain union form (`control_in_dim` the latents' channels; 33: the
    2.x union's, whose mask and masked-picture channels the txt2img pipeline fills with zeros)."""
    from diffusers import ZImageControlNetModel

    config = transformer.config
    net = ZImageControlNetModel(
        control_layers_places=list(range(config.n_layers)),
        control_in_dim=control_in_dim or config.in_channels,
        all_patch_size=tuple(config.all_patch_size),
        all_f_patch_size=tuple(config.all_f_patch_size),
        dim=config.dim,
        n_refiner_layers=config.n_refiner_layers,
        n_heads=config.n_heads,
        n_kv_heads=config.n_kv_heads,
        norm_eps=config.norm_eps,
        qk_norm=config.qk_norm,
    )
    layers = list(net.control_layers)
    _randomize("zimage", [net.control_all_x_embedder], [layers[0].before_proj, *(layer.after_proj for layer in layers)])
    return net


BUILDERS: dict[str, Callable[[Any], Any]] = {"sd3": build_sd3, "qwen": build_qwen, "zimage": build_zimage}
