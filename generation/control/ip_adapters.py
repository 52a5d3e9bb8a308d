"""Image references (`--sref` style, `--oref` subject) through diffusers' IP-Adapter, on the UNet
families (SD 1.x/2.x, SDXL). Engine thread only.

An IP-Adapter (its image projection and its per-layer image keys and values, and the CLIP image
encoder it was trained with) is loaded once and kept in the ControlNets' LRU, one budget for both
(`ControlNets.keep`). A job with references puts it on the pipeline for that job alone
(`applied`): the UNet's attention processors, its `encoder_hid_proj` and the pipeline's image
encoder are saved first and restored afterwards, so the next job on the kept pipeline draws as if
no reference had ever been there. The reference pictures are encoded once per job (`encode`); every
pass of the job (hires tiles, a batch's images) reads those embeddings.

Style and subject are both an image prompt. What differs is where they act and how strongly:
- style: the IP-Adapter acts on the style layers only, as InstantStyle does: the middle
  cross-attention of the first up block with cross-attention (SDXL: up_blocks.0, the scale dict
  `{"up": {"block_0": [0, 1, 0]}}`; SD 1.x/2.x: up_blocks.1, `[0, 1, 0]`; the tiny model:
  up_blocks.1, `[0, 1]`), at scale sw/100 (`STYLE_SCALE_AT_100`): colours and texture, little layout;
- subject: every cross-attention layer, at scale ow/100 * 0.6 (`SUBJECT_SCALE_AT_100`): what the
  picture shows and how it is laid out.
With both, the adapter is loaded twice (one per reference, diffusers' multi-IP-Adapter), each with
its own picture and scale.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from config.models import IPAdapterEntry
from generation.errors import EngineUserError, ModelLoadError
from generation.spec import GenerationSpec, ReferenceRef

TINY = "tiny"  # the built-in tiny IP-Adapter's name (the tiny model's)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class IPAdapter:
    """An IP-Adapter as loaded: its state dict (diffusers' dict form) and its image encoder."""

    state_dict: dict[str, dict[str, torch.Tensor]]
    encoder: Any  # CLIPVisionModelWithProjection

    def nbytes(self) -> int:
        tensors = [t for part in self.state_dict.values() for t in part.values()]
        return sum(t.numel() * t.element_size() for t in tensors) + sum(p.numel() * p.element_size() for p in self.encoder.parameters())


def tiny_entry(models_dir: Path) -> IPAdapterEntry:
    from generation.control.tiny_ip_adapter import ENCODER_FOLDER, WEIGHT_NAME, ensure_tiny_ip_adapter

    folder = ensure_tiny_ip_adapter(models_dir)
    return IPAdapterEntry(source=str(folder), weight_name=WEIGHT_NAME, image_encoder=str(folder / ENCODER_FOLDER))


def load_ip_adapter(name: str, entry: IPAdapterEntry, device: torch.device, dtype: torch.dtype) -> IPAdapter:
    """Read an IP-Adapter's `.safetensors` (as `load_ip_adapter` splits it) and its image encoder."""
    from safetensors import safe_open
    from transformers import CLIPVisionModelWithProjection

    path = Path(entry.source) / entry.weight_name
    try:
        state: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
        with safe_open(str(path), framework="pt", device="cpu") as file:
            for key in file.keys():  # noqa: SIM118 (safe_open is no dict)
                part, _, rest = key.partition(".")
                if part in state:  # on the device already: a job's load then copies nothing across
                    state[part][rest] = file.get_tensor(key).to(device, dtype)
        if not state["image_proj"] or not state["ip_adapter"]:
            raise ValueError("no image_proj.* and ip_adapter.* tensors in it")
        encoder = CLIPVisionModelWithProjection.from_pretrained(entry.image_encoder, dtype=dtype, use_safetensors=True)
    except Exception as error:  # library errors into advice
        raise ModelLoadError(
            f"I could not load the IP-Adapter `{name}` ({path}, image encoder {entry.image_encoder}): "
            f"{type(error).__name__}: {error}. Check SDBOT_IP_ADAPTERS: a `.safetensors` IP-Adapter and a "
            "CLIPVisionModelWithProjection folder."
        ) from error
    return IPAdapter(state, encoder.to(device).eval())


def style_scale(unet: Any, scale: float) -> dict[str, Any]:
    """InstantStyle's scale dict: `scale` on the middle attention of the first up block with
    cross-attention, 0 elsewhere (see the module's docstring)."""
    kinds = list(unet.config.up_block_types)
    block = next(i for i, kind in enumerate(kinds) if "CrossAttn" in kind)
    layers = unet.config.layers_per_block
    count = (layers[-1 - block] if isinstance(layers, list | tuple) else layers) + 1
    per_layer = [0.0] * count
    per_layer[count // 2] = scale
    return {"up": {f"block_{block}": per_layer}}


class References:
    """The references of the job now running: the IP-Adapter on its pipeline, and its embeddings."""

    def __init__(self, adapter: IPAdapter, refs: tuple[ReferenceRef, ...], pictures: list[list[Image.Image]]):
        self.adapter = adapter
        self.refs = refs
        self.pictures = pictures
        self._embeds: dict[tuple[int, bool], list[torch.Tensor]] = {}  # by (pipeline, CFG on)
        self._encoded: list[torch.Tensor] | None = None  # (negative, positive) per reference

    @contextlib.contextmanager
    def applied(self, pipe: Any) -> Iterator[None]:
        """The IP-Adapter on `pipe` (its UNet and image encoder) for this job, restored after."""
        unet = pipe.unet
        saved = (unet.attn_processors, unet.encoder_hid_proj, unet.config.encoder_hid_dim_type)
        own_encoder, own_extractor = getattr(pipe, "image_encoder", None), getattr(pipe, "feature_extractor", None)
        try:
            pipe.image_encoder = self.adapter.encoder  # load_ip_adapter then leaves it as it is
            with _quiet("diffusers.models.modeling_utils"):  # its `to()` of the UNet warns on every load
                pipe.load_ip_adapter(
                    [self.adapter.state_dict] * len(self.refs), subfolder=[None] * len(self.refs), weight_name=[None] * len(self.refs)
                )
            pipe.set_ip_adapter_scale([style_scale(unet, ref.scale) if ref.kind == "style" else ref.scale for ref in self.refs])
            yield
        finally:
            unet.set_attn_processor(saved[0])
            unet.encoder_hid_proj = saved[1]
            unet.config.encoder_hid_dim_type = saved[2]
            pipe.image_encoder, pipe.feature_extractor = own_encoder, own_extractor

    def arguments(self, pipe: Any, guided: bool, rows: int) -> dict[str, Any]:
        """`ip_adapter_image_embeds` for a pipeline call: the pictures encoded once per job (by the
        pipeline's own `prepare_ip_adapter_image_embeds`, as a bare pipeline encodes them), each
        repeated for `rows` images per prompt row of the call (the pipeline repeats them again by
        its num_images_per_prompt). A reference of several pictures (a moodboard, /blend) is the
        mean of their embeddings: one image prompt, as one picture's is (diffusers would give each
        picture its own tokens, which weighs a board of ten ten times a picture)."""
        if self._encoded is None:
            with torch.inference_mode():
                encoded = pipe.prepare_ip_adapter_image_embeds(self.pictures, None, pipe._execution_device, 1, True)
            # (negative + positive, pictures, ...) -> the pictures' mean, kept as one picture's
            self._encoded = [both.mean(dim=1, keepdim=True) for both in encoded]
        embeds = []
        for both in self._encoded:
            negative, positive = both.chunk(2)
            negative, positive = negative.repeat(rows, *[1] * (negative.dim() - 1)), positive.repeat(rows, *[1] * (positive.dim() - 1))
            embeds.append(torch.cat([negative, positive]) if guided else positive)
        return {"ip_adapter_image_embeds": embeds}


def adapter_entry(name: str, entries: dict[str, IPAdapterEntry], models_dir: Path) -> IPAdapterEntry:
    if name == TINY:
        return tiny_entry(models_dir)
    entry = entries.get(name)
    if entry is None:
        raise EngineUserError(f"the IP-Adapter `{name}` is not configured any more (SDBOT_IP_ADAPTERS); draw it without --sref/--oref.")
    return entry


def check_spec(spec: GenerationSpec) -> None:
    """What the engine can't do with references (the command layer refuses these before queueing)."""
    if spec.regions:
        raise EngineUserError("image references and regional prompts can't be used together yet; drop --sref/--oref or --regions.")
    if len({ref.adapter for ref in spec.references}) > 1:
        raise EngineUserError("a job's references must use one IP-Adapter.")
