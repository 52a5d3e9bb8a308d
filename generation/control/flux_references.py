"""Image references (`--sref` style, `--oref` subject) on FLUX.1, by one of two methods, each a
SDBOT_IP_ADAPTERS entry with architecture flux (config.models.IPAdapterEntry). Engine thread only.

- IP-Adapter (kind ip-adapter; XLabs' FLUX.1 IP-Adapter and its CLIP ViT-L image encoder): diffusers'
  FLUX `load_ip_adapter` puts image keys and values into every double block's attention; the
  picture's CLIP embedding becomes 4 tokens of T5's width through its projection. A job with
  references puts it on the pipeline for that job alone (`applied`): the transformer's attention
  processors, its `encoder_hid_proj` and the pipeline's image encoder and feature extractor are
  saved first and restored afterwards, so the next job draws as if it had never been there. Both
  kinds: FLUX.1's IP-Adapter has no style-only layers (InstantStyle's split is a UNet's), so a
  style reference is the same image prompt at half a subject's scale (generation.spec.
  REFERENCE_SCALES: --sw 100 is scale 0.35, --ow 100 scale 0.7, on every double block); some of
  the picture's content comes with its look. With both, the adapter is loaded twice (diffusers'
  multi-IP-Adapter), each with its own picture and scale.
- Redux (kind redux; FLUX.1-Redux-dev): an image variation. Its SigLIP encoder and `image_embedder`
  turn the picture into 729 tokens of T5's width, which `FluxPriorReduxPipeline` appends to the
  prompt's T5 tokens; the transformer reads them as prompt (nothing on the pipeline changes). So
  it draws what a picture shows: subject only, and a style reference is refused before queueing.
  The weight multiplies the picture's tokens only (--ow / 100; 100 is Redux as BFL ships it),
  as ComfyUI's StyleModelApply strength does: the prior's own `prompt_embeds_scale` would scale
  the prompt's tokens with them (0 would erase the prompt). At --ow 0 the picture's tokens are
  left out: the prompt alone.

A reference of several pictures (a moodboard, /blend) is drawn from the mean of their embeddings:
the IP-Adapter's CLIP embeddings averaged into one picture's (diffusers would give each picture its
own 4 tokens); Redux's through the prior's weighted sum (`prompt_embeds_scale` 1/n per picture with
the prompt's tokens given once per picture, which sums them back to one prompt): the prompt's
tokens, then the mean of the pictures' tokens. Both models are loaded once and kept in the
ControlNets' LRU (`ControlNets.keep`), the UNet IP-Adapters' budget. The pictures are encoded once
per job (Redux: once per prompt of the job); every pass (hires tiles, a batch's images) reads them.

Chroma is refused (generation.models.families.chroma): these models were trained on FLUX.1 [dev]'s
weights, which Chroma retrained; none is made for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from config.models import IPAdapterEntry
from generation.control.ip_adapters import _quiet
from generation.errors import EngineUserError, ModelLoadError
from generation.spec import ReferenceRef

TINY_IP_ADAPTER = "tiny-flux-ip-adapter"  # the built-in tiny ones of tiny-flux (tiny_flux_references)
TINY_REDUX = "tiny-flux-redux"
REDUX_TEXT_TOKENS = 512  # FluxPriorReduxPipeline encodes the prompt at T5's 512 tokens
# diffusers' FLUX `load_ip_adapter` reads these prefixes of a `.safetensors` (XLabs' and its own)
_PROJECTION_PREFIXES = ("ip_adapter_proj_model.", "image_proj.")
_LAYER_PREFIXES = ("double_blocks.", "ip_adapter.")


def _bytes(modules: list[Any], tensors: list[torch.Tensor] | None = None) -> int:
    parameters = [p for module in modules for p in module.parameters()]
    return sum(t.numel() * t.element_size() for t in [*parameters, *(tensors or [])])


@dataclass
class FluxIPAdapter:
    """A FLUX.1 IP-Adapter as loaded: its state dict (diffusers' dict form) and its image encoder."""

    state_dict: dict[str, dict[str, torch.Tensor]]
    encoder: Any  # CLIPVisionModelWithProjection

    def nbytes(self) -> int:
        return _bytes([self.encoder], [t for part in self.state_dict.values() for t in part.values()])


@dataclass
class Redux:
    """A FLUX.1 Redux as loaded: FluxPriorReduxPipeline's image side (SigLIP, its processor, the embedder)."""

    image_encoder: Any  # SiglipVisionModel
    feature_extractor: Any  # SiglipImageProcessor
    image_embedder: Any  # ReduxImageEncoder

    def nbytes(self) -> int:
        return _bytes([self.image_encoder, self.image_embedder])


def adapter_entry(name: str, entries: dict[str, IPAdapterEntry], models_dir: Path) -> IPAdapterEntry:
    """The entry `name` names: a built-in tiny one (built on first use), else SDBOT_IP_ADAPTERS'."""
    from generation.control import tiny_flux_references as tiny

    if name == TINY_IP_ADAPTER:
        folder = tiny.ensure_tiny_flux_ip_adapter(models_dir)
        return IPAdapterEntry(
            source=str(folder), weight_name=tiny.WEIGHT_NAME, image_encoder=str(folder / tiny.ENCODER_FOLDER), architecture="flux"
        )
    if name == TINY_REDUX:
        return IPAdapterEntry(source=str(tiny.ensure_tiny_flux_redux(models_dir)), architecture="flux", kind="redux")
    entry = entries.get(name)
    if entry is None:
        raise EngineUserError(
            f"the reference model `{name}` is not configured any more (SDBOT_IP_ADAPTERS); draw it without --sref/--oref."
        )
    return entry


def check_entry(name: str, entry: IPAdapterEntry, refs: tuple[ReferenceRef, ...]) -> None:
    """What the command layer refused before queueing, checked again against the entry as it is now."""
    if entry.architecture != "flux":
        raise EngineUserError(f"`{name}` in SDBOT_IP_ADAPTERS is for {entry.architecture}, not FLUX.1; draw it without --sref/--oref.")
    for ref in refs:
        if ref.method != entry.method:
            raise EngineUserError(f"`{name}` is now a {entry.kind}, not the {ref.method} this job was queued for; draw it again.")
        if ref.kind not in entry.kinds:
            raise EngineUserError(f"`{name}` is a Redux, which draws what a picture shows (--oref), not its style (--sref).")


def load(name: str, entry: IPAdapterEntry, device: torch.device, dtype: torch.dtype) -> FluxIPAdapter | Redux:
    """Read a FLUX.1 IP-Adapter (its `.safetensors` split as diffusers' FLUX `load_ip_adapter`
    splits it, and its CLIP image encoder), or a Redux's image side, onto `device`."""
    try:
        return _load_redux(entry, device, dtype) if entry.kind == "redux" else _load_ip_adapter(entry, device, dtype)
    except Exception as error:  # library errors into advice
        what = (
            "a FluxPriorReduxPipeline folder (image_encoder/, feature_extractor/, image_embedder/)"
            if entry.kind == "redux"
            else "a `.safetensors` FLUX.1 IP-Adapter (XLabs' layout) and a CLIPVisionModelWithProjection folder"
        )
        raise ModelLoadError(
            f"I could not load the FLUX.1 {entry.kind} `{name}` ({entry.source}): {type(error).__name__}: {error}. "
            f"Check SDBOT_IP_ADAPTERS: {what}."
        ) from error


def _load_ip_adapter(entry: IPAdapterEntry, device: torch.device, dtype: torch.dtype) -> FluxIPAdapter:
    from safetensors import safe_open
    from transformers import CLIPVisionModelWithProjection

    state: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}  # this order: load_ip_adapter checks it
    with safe_open(str(Path(entry.source) / entry.weight_name), framework="pt", device="cpu") as file:
        for key in file.keys():  # noqa: SIM118 (safe_open is no dict)
            rest = key.partition(".")[2]
            if key.startswith(_PROJECTION_PREFIXES):
                state["image_proj"][rest] = file.get_tensor(key).to(device, dtype)
            elif key.startswith(_LAYER_PREFIXES):
                renamed = (
                    rest.replace("ip_adapter_double_stream_k_proj", "to_k_ip")
                    .replace("ip_adapter_double_stream_v_proj", "to_v_ip")
                    .replace("processor.", "")
                )
                state["ip_adapter"][renamed] = file.get_tensor(key).to(device, dtype)
    if "proj.weight" not in state["image_proj"] or not state["ip_adapter"]:
        raise ValueError("no ip_adapter_proj_model.proj.* and double_blocks.* tensors in it (a plain FLUX.1 IP-Adapter's)")
    encoder = CLIPVisionModelWithProjection.from_pretrained(entry.image_encoder, dtype=dtype, use_safetensors=True)
    return FluxIPAdapter(state, encoder.to(device).eval())


def _load_redux(entry: IPAdapterEntry, device: torch.device, dtype: torch.dtype) -> Redux:
    from diffusers import FluxPriorReduxPipeline

    with _quiet("diffusers.pipelines.pipeline_utils"):  # it notes the text encoders it has not
        prior = FluxPriorReduxPipeline.from_pretrained(entry.source, dtype=dtype, use_safetensors=True)
    return Redux(prior.image_encoder.to(device).eval(), prior.feature_extractor, prior.image_embedder.to(device).eval())


_ABSENT = object()


def _put_back(owner: Any, name: str, value: Any) -> None:
    if value is not _ABSENT:
        setattr(owner, name, value)
    elif hasattr(owner, name):
        delattr(owner, name)


class IPAdapterReferences:
    """The references of the job now running, drawn by a FLUX.1 IP-Adapter (module docstring)."""

    def __init__(self, adapter: FluxIPAdapter, refs: tuple[ReferenceRef, ...], pictures: list[list[Image.Image]]):
        self.adapter = adapter
        self.refs = refs
        self.pictures = pictures
        self._embeds: list[torch.Tensor] | None = None  # one (1, 1, dim) mean embedding per reference

    @contextlib.contextmanager
    def applied(self, pipe: Any) -> Iterator[None]:
        """The IP-Adapter on `pipe` (its transformer and image encoder) for this job, restored after."""
        transformer = pipe.transformer
        # FLUX's transformer has no encoder_hid_proj (nor its config an encoder_hid_dim_type) until
        # an IP-Adapter is loaded: absent ones are taken away again
        processors = transformer.attn_processors
        projection = getattr(transformer, "encoder_hid_proj", _ABSENT)
        dim_type = getattr(transformer.config, "encoder_hid_dim_type", _ABSENT)
        own_encoder, own_extractor = pipe.image_encoder, pipe.feature_extractor
        count = len(self.refs)
        try:
            pipe.image_encoder = self.adapter.encoder  # load_ip_adapter then leaves it as it is
            with _quiet("diffusers.models.modeling_utils"):
                pipe.load_ip_adapter([self.adapter.state_dict] * count, weight_name=[None] * count, subfolder=[None] * count)
            scales = [ref.scale for ref in self.refs]
            # one float per adapter: a list of one would be read as per-layer scales of a single adapter
            pipe.set_ip_adapter_scale(scales[0] if count == 1 else scales)
            yield
        finally:
            transformer.set_attn_processor(processors)
            _put_back(transformer, "encoder_hid_proj", projection)
            _put_back(transformer.config, "encoder_hid_dim_type", dim_type)
            pipe.image_encoder, pipe.feature_extractor = own_encoder, own_extractor

    def update_call(self, pipe: Any, call: dict[str, Any]) -> None:
        """`ip_adapter_image_embeds` for a pipeline call: each reference's pictures encoded once per
        job by the pipeline's own `encode_image` and averaged into one picture's embedding (the
        pipeline repeats it for every image of the call)."""
        if self._embeds is None:
            with torch.inference_mode():
                device = pipe._execution_device
                encoded = [pipe.encode_image(pictures, device, 1) for pictures in self.pictures]
            self._embeds = [both.mean(dim=0, keepdim=True)[None].to(pipe.transformer.dtype) for both in encoded]
        call["ip_adapter_image_embeds"] = self._embeds


class ReduxReferences:
    """The subject reference of the job now running, drawn by FLUX.1 Redux (module docstring)."""

    def __init__(self, redux: Redux, refs: tuple[ReferenceRef, ...], pictures: list[list[Image.Image]]):
        (ref,) = refs  # check_entry: one subject reference
        self.redux = redux
        self.refs = refs
        self.pictures = pictures[0]
        self.multiplier = ref.scale
        self._prompts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # by prompt text: (prompt_embeds, pooled)

    def applied(self, pipe: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # Redux changes the prompt's embeddings, nothing on the pipeline

    def update_call(self, pipe: Any, call: dict[str, Any]) -> None:
        """The call's prompts as Redux's prompt embeddings (the prompt's T5 tokens, then the
        pictures'), one row per image: given as embeddings, the pipeline doesn't repeat them by
        `num_images_per_prompt`."""
        if self.multiplier == 0:  # --ow 0: the prompt alone
            return
        rows = [self._embeds(pipe, text) for text in call.pop("prompt")]
        images = call.pop("num_images_per_prompt", 1)
        call["prompt_embeds"] = torch.cat([embeds for embeds, _ in rows]).repeat_interleave(images, dim=0)
        call["pooled_prompt_embeds"] = torch.cat([pooled for _, pooled in rows]).repeat_interleave(images, dim=0)
        call["num_images_per_prompt"] = 1

    def _embeds(self, pipe: Any, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        if text not in self._prompts:
            from diffusers import FluxPriorReduxPipeline

            prior = FluxPriorReduxPipeline(
                image_encoder=self.redux.image_encoder,
                feature_extractor=self.redux.feature_extractor,
                image_embedder=self.redux.image_embedder,
                text_encoder=pipe.text_encoder,
                tokenizer=pipe.tokenizer,
                text_encoder_2=pipe.text_encoder_2,
                tokenizer_2=pipe.tokenizer_2,
            )
            count = len(self.pictures)
            with torch.inference_mode():
                # the prompt encoded once (the prior's encode_prompt is the pipeline's), given once per picture
                prompt, pooled, _ = pipe.encode_prompt(
                    prompt=[text], prompt_2=None, device=pipe._execution_device, max_sequence_length=REDUX_TEXT_TOKENS
                )
                output = prior(
                    image=list(self.pictures),
                    prompt_embeds=prompt.repeat(count, 1, 1),
                    pooled_prompt_embeds=pooled.repeat(count, 1),
                    prompt_embeds_scale=[1 / count] * count,
                    pooled_prompt_embeds_scale=[1 / count] * count,
                )
                embeds = output.prompt_embeds.clone()
                embeds[:, prompt.shape[1] :] *= self.multiplier
            self._prompts[text] = (embeds, output.pooled_prompt_embeds)
        return self._prompts[text]


FluxReferences = IPAdapterReferences | ReduxReferences


def references(adapter: FluxIPAdapter | Redux, refs: tuple[ReferenceRef, ...], pictures: list[list[Image.Image]]) -> FluxReferences:
    if isinstance(adapter, Redux):
        return ReduxReferences(adapter, refs, pictures)
    return IPAdapterReferences(adapter, refs, pictures)
