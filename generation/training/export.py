"""What a training run learned, as files every tool reads: kohya LoRA and LyCORIS LoHa / LoKr
safetensors (A1111, ComfyUI, kohya's own scripts, diffusers for LoRA, and our own loader in
`generation.assets.adapters`), and A1111 / kohya textual-inversion embeddings, each with kohya's
`ss_*` training metadata and the SAI model spec's `modelspec.*` keys; A1111 hypernetworks as the
`.pt` A1111 saves (`hypernetwork_pt`) and as sdbot stores them (`hypernetwork_stored`).

Names. Each peft layer holding the adapter becomes one module, `<prefix><path with . as _>`:
`lora_unet_` for the UNet, `lora_te_` for SD 1.x/2.x's text encoder, `lora_te1_` / `lora_te2_`
for SDXL's two. SD 1.x/2.x UNet paths are diffusers' (kohya's own SD 1.x UNet uses them too);
an SDXL UNet is named by its original (SGM) blocks, `input_blocks_4_1_transformer_blocks_0_...`,
as kohya's sdxl_train_network writes it, from `generation.models.shapes` (diffusers' name where a
layer has no SGM alias). diffusers, A1111, ComfyUI and our loader read both spellings.

Scale. What a loader applies at weight 1 must be what was trained: the scale the adapter's
config gives each layer (lora_alpha / r, ...), whatever weight `set_adapters` set since.
- LoRA: kohya's scale is alpha / rank (rank = lora_down's rows), so the file's alpha is peft's
  lora_alpha (times sqrt(r) under rsLoRA, whose scale is alpha / sqrt(r)).
- LoHa: A1111's scale is alpha / rank with rank = hada_w1_b's rows = peft's r: peft's alpha.
- LoKr: A1111 (and LyCORIS, ComfyUI) take the rank from lokr_w2_b (else lokr_w1_b) and apply
  alpha / rank; a module whose w1 and w2 are both whole matrices has no rank and is applied at
  scale 1 whatever its alpha says. peft always applies alpha / r, and keeps w2 whole when
  r >= max(w2's sides) / 2 (w1 whole unless `decompose_both`), which on narrow layers happens at
  ordinary ranks: SD's 320-wide layers factor as 16 x 20, so w2 is whole from rank 10 on (768:
  24 x 32, from 16), and the tiny model's 32- and 64-wide layers (4 x 8, 8 x 8) from 4. For such a
  module peft's alpha / r is baked into lokr_w1 (the small factor) and the file's alpha is set
  to r, LyCORIS's own convention for whole matrices, so a reader that does compute alpha / r
  still gets 1. Every module's scale is checked against our loader's `lycoris_scale`.

Precision. Weights are saved as float16, kohya's usual `save_precision` for shared SD LoRAs
(half the size; the pictures stay within 2/255 of the float32 adapter, tests/
test_training_export.py). A tensor that float16 cannot hold (|x| > 65504) keeps the whole file
in float32. Alphas are saved as float32 scalars, so the scale is exact whatever the weights'
precision (kohya casts them too; every reader takes `.item()`). Embedding vectors are saved as
float32: they are tiny, and A1111's own embeddings are float32.

Refused with ValueError (kohya's layout cannot hold them): DoRA, LoRA biases, LoRA on
embedding layers, transposed (fan_in_fan_out) weights, and an adapter no layer holds.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import struct
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Literal

import torch
from safetensors.torch import save

from generation.assets.adapters import lycoris_scale
from generation.assets.hypernetwork_files import A1111_CREATED, read_pt, to_safetensors
from generation.training.spec import METHOD_LABELS, TrainingSpec

Method = Literal["lora", "loha", "lokr"]
SAVE_DTYPE = torch.float16
FLOAT16_MAX = 65504.0

# Prefixes by component; SDXL's first text encoder is `lora_te1_`, SD 1.x/2.x's only one `lora_te_`.
PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}
SDXL_PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
# The parameter dicts that tell which kind of peft layer holds an adapter.
_HOLDERS = (("lora", "lora_A"), ("lora", "lora_embedding_A"), ("loha", "hada_w1_a"), ("lokr", "lokr_w1"), ("lokr", "lokr_w1_a"))
# Wrappers whose path prefix is not part of a module's name (peft's PeftModel, torch.compile).
_WRAPPER_PREFIXES = ("base_model.model.", "_orig_mod.")

LOHA_PARTS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
LOKR_PARTS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")

# kohya's `ss_base_model_version` and the SAI model spec's architecture ids, per architecture.
BASE_MODEL_VERSIONS = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}
SPEC_ARCHITECTURES = {"sd1": "stable-diffusion-v1", "sd2": "stable-diffusion-v2-512", "sdxl": "stable-diffusion-xl-v1-base"}
SPEC_V2_V = "stable-diffusion-v2-768-v"
SPEC_IMPLEMENTATION_SGM = "https://github.com/Stability-AI/generative-models"
NETWORK_MODULES = {"lora": "networks.lora", "dreambooth": "networks.lora", "loha": "lycoris.kohya", "lokr": "lycoris.kohya"}
TAG_DATASET = "dataset"  # the one dataset's name in `ss_tag_frequency` / `ss_dataset_dirs`


# --- LoRA / LyCORIS files ---------------------------------------------------------------------------


def adapter_file(
    components: dict[str, torch.nn.Module],
    adapter: str,
    method: Method,
    metadata: dict[str, str],
    *,
    sdxl: bool,
    dtype: torch.dtype = SAVE_DTYPE,
) -> bytes:
    """The peft adapter `adapter` on `components` ("unet", "text_encoder", "text_encoder_2": the
    pipeline's modules) as safetensors bytes in kohya / LyCORIS layout (module docstring), with
    `metadata` (str -> str) and kohya's `sshs_model_hash`. Loading it at weight 1 gives exactly
    the trained change of every layer."""
    if method not in ("lora", "loha", "lokr"):
        raise ValueError(f"unknown method {method!r}: lora, loha or lokr")
    prefixes = SDXL_PREFIXES if sdxl else PREFIXES
    unknown = [name for name in components if name not in prefixes]
    if unknown:
        raise ValueError(f"unknown component {unknown[0]!r}: unet, text_encoder or text_encoder_2")
    if components.get("text_encoder_2") is not None and not sdxl:
        raise ValueError("a second text encoder is SDXL's: pass sdxl=True")
    _check_metadata(metadata)

    tensors: dict[str, torch.Tensor] = {}
    for component, model in components.items():
        if model is None:
            continue
        sgm = _sgm_names(model) if sdxl and component == "unet" else {}
        for path, layer in _adapter_layers(model, adapter, method):
            name = prefixes[component] + sgm.get(path, path).replace(".", "_")
            parts = {"lora": _lora_parts, "loha": _loha_parts, "lokr": _lokr_parts}[method](layer, adapter, name)
            for suffix, tensor in parts.items():
                key = f"{name}.{suffix}"
                if key in tensors:
                    raise ValueError(f"two layers are both named {name}")
                tensors[key] = tensor
    if not tensors:
        raise ValueError(f"no layer of {', '.join(components)} holds a {method} adapter named {adapter!r}")

    weights = [t for k, t in tensors.items() if not k.endswith(".alpha")]
    if dtype == torch.float16 and any(t.abs().max().item() > FLOAT16_MAX for t in weights if t.numel()):
        dtype = torch.float32  # float16 cannot hold it: the whole file stays float32
    if any(not torch.isfinite(t).all() for t in weights):
        raise ValueError(f"the {method} adapter {adapter!r} holds NaN or infinite weights; it was not saved")
    out = {k: (t if k.endswith(".alpha") else t.to(dtype)).detach().to("cpu").contiguous() for k, t in sorted(tensors.items())}
    data = save(out)
    return save(out, {**metadata, "sshs_model_hash": _data_hash(data)})


def _check_metadata(metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map strings to strings ({key!r}: {type(value).__name__})")


def _data_hash(data: bytes) -> str:
    """kohya's `sshs_model_hash` (A1111's "addnet" hash, its "Lora hashes"): sha256 of the tensor
    bytes after the header; metadata does not change it."""
    (length,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + length :]).hexdigest()


def _adapter_layers(model: torch.nn.Module, adapter: str, method: Method) -> Iterable[tuple[str, Any]]:
    """(module path, peft layer) of every layer holding `adapter`, checked to be of `method`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for path, module in model.named_modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        holds = {kind for kind, attribute in _HOLDERS if adapter in getattr(module, attribute, {})}
        if not holds:
            continue
        if holds != {method}:
            raise ValueError(f"the adapter {adapter!r} on {path} is a {', '.join(sorted(holds))} adapter, not {method}")
        if method == "lora" and adapter not in module.lora_A:
            raise ValueError(f"the LoRA {adapter!r} on {path} is on an embedding layer, which kohya's layout cannot hold")
        for prefix in _WRAPPER_PREFIXES:
            while path.startswith(prefix):
                path = path[len(prefix) :]
        yield path, module


def _sgm_names(unet: torch.nn.Module) -> dict[str, str]:
    """An SDXL UNet's diffusers module paths -> their original (SGM) names; {} for a UNet
    `generation.models.shapes` does not model (diffusers' names are then used)."""
    from generation.models.shapes import UnsupportedConfig, unet_layers

    try:
        layers = unet_layers(dict(unet.config))
    except (UnsupportedConfig, KeyError, TypeError, ValueError, IndexError, AttributeError):
        return {}
    return {path: layer.sgm for path, layer in layers.items() if layer.sgm}


def _lora_parts(layer: Any, adapter: str, name: str) -> dict[str, torch.Tensor]:
    if layer.use_dora.get(adapter, False):
        raise ValueError(f"{name}: DoRA adapters are not saved in kohya's layout")
    if getattr(layer, "fan_in_fan_out", False):
        raise ValueError(f"{name}: transposed (fan_in_fan_out) LoRA weights are not saved in kohya's layout")
    down, up = layer.lora_A[adapter], layer.lora_B[adapter]
    if getattr(up, "bias", None) is not None:
        raise ValueError(f"{name}: LoRA biases (lora_bias) are not saved in kohya's layout")
    rank, alpha = layer.r[adapter], float(layer.lora_alpha[adapter])
    # kohya applies alpha / rank; peft applied lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA.
    file_alpha = alpha * math.sqrt(rank) if layer.use_rslora.get(adapter, False) else alpha
    if down.weight.shape[0] != rank:
        raise ValueError(f"{name}: its down weight has {down.weight.shape[0]} rows, its rank is {rank}")
    return {
        "lora_down.weight": down.weight.detach().float(),
        "lora_up.weight": up.weight.detach().float(),
        "alpha": torch.tensor(file_alpha, dtype=torch.float32),
    }


def _loha_parts(layer: Any, adapter: str, name: str) -> dict[str, torch.Tensor]:
    parts = {p: getattr(layer, p)[adapter].detach().float() for p in LOHA_PARTS if adapter in getattr(layer, p)}
    return _with_scale(parts, "loha", layer.alpha[adapter] / layer.r[adapter], layer.r[adapter], name)


def _lokr_parts(layer: Any, adapter: str, name: str) -> dict[str, torch.Tensor]:
    parts = {p: getattr(layer, p)[adapter].detach().float() for p in LOKR_PARTS if adapter in getattr(layer, p)}
    return _with_scale(parts, "lokr", layer.alpha[adapter] / layer.r[adapter], layer.r[adapter], name)


def _a1111_rank(parts: dict[str, torch.Tensor], kind: str) -> int | None:
    """The rank A1111 divides alpha by (network.NetworkModule.calc_scale): hada_w1_b's rows for
    LoHa; lokr_w2_b's, else lokr_w1_b's rows for LoKr; None for a LoKr of whole matrices."""
    keys = ("hada_w1_b",) if kind == "loha" else ("lokr_w2_b", "lokr_w1_b")
    return next((int(parts[k].shape[0]) for k in keys if k in parts), None)


def _with_scale(parts: dict[str, torch.Tensor], kind: str, scale: float, r: int, name: str) -> dict[str, torch.Tensor]:
    """The module's tensors and an alpha such that A1111's scale is peft's `scale` (alpha / r):
    alpha = scale * rank where the file has a rank, else `scale` baked into the small factor
    lokr_w1 and alpha = r (module docstring)."""
    rank = _a1111_rank(parts, kind)
    if rank is not None:
        parts["alpha"] = torch.tensor(scale * rank, dtype=torch.float32)
        baked = 1.0
    else:  # a LoKr of whole w1 and w2 (a factored w1 has a rank): applied at scale 1
        parts["lokr_w1"] = parts["lokr_w1"] * scale
        parts["alpha"] = torch.tensor(float(r), dtype=torch.float32)
        baked = scale
    loaded = lycoris_scale(parts, kind)  # what our loader (A1111's rule) will apply
    if not math.isclose(loaded * baked, scale, rel_tol=1e-5):
        raise AssertionError(f"{name}: the file's scale {loaded} would not be the trained {scale}")
    return parts


# --- embeddings -------------------------------------------------------------------------------------


def embedding_file(vectors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A textual-inversion embedding as safetensors bytes: A1111's `{"emb_params": [n, dim]}`
    for one text encoder (`vectors = {"clip_l": ...}`), kohya's SDXL `{"clip_l": [n, 768],
    "clip_g": [n, 1280]}` for two. float32, with `metadata`."""
    _check_metadata(metadata)
    unknown = [key for key in vectors if key not in ("clip_l", "clip_g")]
    if unknown or "clip_l" not in vectors:
        raise ValueError(f"an embedding's vectors are clip_l (and SDXL's clip_g), not {sorted(vectors)}")
    rows = set()
    for key, v in vectors.items():
        if v.dim() != 2 or v.shape[0] < 1:
            raise ValueError(f"the {key} vectors must be [n, width], not {list(v.shape)}")
        if not torch.isfinite(v).all():
            raise ValueError(f"the {key} vectors hold NaN or infinite values; they were not saved")
        rows.add(v.shape[0])
    if len(rows) != 1:
        counts = ", ".join(f"{k} {v.shape[0]}" for k, v in vectors.items())
        raise ValueError(f"clip_l and clip_g must hold as many vectors ({counts})")
    out = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in vectors.items()}
    if "clip_g" not in out:
        out = {"emb_params": out["clip_l"]}
    return save(out, dict(metadata) or None)


# --- hypernetworks ---------------------------------------------------------------------------------


def hypernetwork_pt(tensors: dict[str, torch.Tensor], *, name: str, steps: int, model_name: str, comment: str) -> bytes:
    """A hypernetwork of A1111's default structure (`A1111_CREATED`) as A1111's `Hypernetwork.save`
    writes it with `torch.save`: for each width `(keys' state, values' state)`, each the state dict
    of its `HypernetworkModule` (its Sequential is `linear`: `linear.0.weight`, ...), and its fields.
    `tensors`: `<width>.<0|1>.<index>.<weight|bias>` (`trainer.Learned.hypernetwork`). float32, as
    A1111 saves its own."""
    structure = A1111_CREATED
    widths = list(dict.fromkeys(int(key.split(".", 1)[0]) for key in tensors))  # in the run's order, as A1111's enable_sizes
    saved: dict[Any, Any] = {}
    for width in widths:
        pair = []
        for which in (0, 1):
            prefix = f"{width}.{which}."
            state = OrderedDict(
                (f"linear.{key[len(prefix) :]}", value.detach().to("cpu", torch.float32).contiguous().clone())
                for key, value in tensors.items()
                if key.startswith(prefix)
            )
            if not state:
                raise ValueError(f"the hypernetwork has no {('keys', 'values')[which]} module for width {width}")
            for value in state.values():
                if not torch.isfinite(value).all():
                    raise ValueError("the hypernetwork holds NaN or infinite values; it was not saved")
            pair.append(state)
        saved[width] = (pair[0], pair[1])
    saved |= {
        "step": steps,
        "name": name,
        "layer_structure": list(structure.layer_structure),
        "activation_func": structure.activation,
        "is_layer_norm": structure.layer_norm,
        "weight_initialization": "Normal",
        "sd_checkpoint": None,  # A1111's short hash of the model: sdbot's models need not be files it could hash
        "sd_checkpoint_name": model_name,
        "activate_output": structure.activate_output,
        "use_dropout": False,
        "dropout_structure": list(structure.dropout),
        "last_layer_dropout": False,
        "optional_info": comment,
    }
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    return buffer.getvalue()


def hypernetwork_stored(pt: bytes, name: str, metadata: dict[str, str]) -> bytes:
    """The `.safetensors` form sdbot stores, made from the `.pt` by the reader an upload goes
    through (so the stored file is what uploading the `.pt` stores), with `metadata` besides."""
    _check_metadata(metadata)
    return to_safetensors(read_pt(pt, f"`{name}.pt`"), metadata)


# --- metadata ---------------------------------------------------------------------------------------


def training_metadata(
    spec: TrainingSpec,
    *,
    architecture: str,
    captions: list[str],
    steps_done: int,
    loss: float | None,
    base_model_name: str,
    started_at: float | None = None,
    v_prediction: bool = False,
) -> dict[str, str]:
    """kohya's `ss_*` training metadata (train_network.py's names and value formats) and the SAI
    model spec's `modelspec.*`, all strings. `architecture`: sd1, sd2 or sdxl
    (`generation.assets.adapters.model_architecture`); `captions`: the caption each picture was
    trained with; `started_at`: the run's start (unix time; now if not given); `v_prediction`: an
    SD 2.x 768-v model."""
    if architecture not in BASE_MODEL_VERSIONS:
        raise ValueError(f"unknown architecture {architecture!r}: sd1, sd2 or sdxl")
    now = time.time()
    started = now if started_at is None else started_at
    method = spec.method
    images = len(spec.images)
    per_epoch = max(1, math.ceil(images / spec.batch))
    version = BASE_MODEL_VERSIONS[architecture] + ("_v" if architecture == "sd2" and v_prediction else "")
    meta: dict[str, Any] = {
        # the same run (resumed, or saved at each checkpoint) keeps its session id, as in kohya
        "ss_session_id": int.from_bytes(hashlib.sha256(spec.model_dump_json().encode()).digest()[:4], "big"),
        "ss_training_started_at": started,
        "ss_training_finished_at": now,
        "ss_output_name": spec.name,
        "ss_learning_rate": spec.lr,
        "ss_unet_lr": spec.lr if method != "embedding" else None,
        "ss_text_encoder_lr": spec.lr if method != "embedding" and spec.text_encoder else None,
        "ss_num_train_images": images,
        "ss_num_reg_images": spec.class_images if method == "dreambooth" else 0,
        "ss_num_batches_per_epoch": per_epoch,
        "ss_num_epochs": math.ceil(spec.steps / per_epoch),
        "ss_epoch": math.ceil(steps_done / per_epoch),
        "ss_batch_size_per_device": spec.batch,
        "ss_total_batch_size": spec.batch,
        "ss_max_train_steps": spec.steps,
        "ss_steps": steps_done,
        "ss_v2": architecture == "sd2",
        "ss_base_model_version": version,
        "ss_sd_model_name": base_model_name,
        "ss_resolution": (spec.resolution, spec.resolution),
        "ss_seed": spec.seed,
        "ss_min_snr_gamma": spec.snr_gamma or None,
        "ss_tag_frequency": json.dumps({TAG_DATASET: tag_frequency(captions)}),
        "ss_dataset_dirs": json.dumps({TAG_DATASET: {"n_repeats": 1, "img_count": images}}),
        "ss_training_comment": _comment(spec, steps_done, loss),
    }
    if method in NETWORK_MODULES:
        meta |= {"ss_network_module": NETWORK_MODULES[method], "ss_network_dim": spec.rank, "ss_network_alpha": spec.alpha}
        if method in ("loha", "lokr"):
            meta["ss_network_args"] = json.dumps({"algo": method})
    if method == "dreambooth":
        meta["ss_prior_loss_weight"] = spec.prior_weight
    adapter = {"embedding": "textual-inversion", "hypernetwork": "hypernetwork"}.get(method, "lora")
    spec_architecture = SPEC_V2_V if architecture == "sd2" and v_prediction else SPEC_ARCHITECTURES[architecture]
    sgm_named = method == "embedding" or architecture == "sdxl"  # kohya's choice of implementation id
    date = datetime.datetime.fromtimestamp(started, tz=datetime.UTC).isoformat(timespec="seconds")
    usage = (
        f"write {spec.name} in a prompt"
        if method == "embedding"
        else f"<hypernet:{spec.name}:1> in a prompt, with the word {spec.trigger}"
        if method == "hypernetwork"
        else f"<lora:{spec.name}:0.8> in a prompt, with the word {spec.trigger}"
    )
    meta |= {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{spec_architecture}/{adapter}",
        "modelspec.implementation": SPEC_IMPLEMENTATION_SGM if sgm_named else "diffusers",
        "modelspec.implementation_version": "sdbot",
        "modelspec.title": spec.name,
        "modelspec.resolution": f"{spec.resolution}x{spec.resolution}",
        "modelspec.date": date,
        "modelspec.prediction_type": "v" if v_prediction else "epsilon",
        "modelspec.trigger_phrase": spec.trigger,
        "modelspec.usage_hint": usage,
        "sdbot.method": method,
    }
    if loss is not None:
        meta["sdbot.loss"] = f"{loss:.6g}"
    return {key: str(value) for key, value in meta.items()}


def tag_frequency(captions: Iterable[str]) -> dict[str, int]:
    """kohya's tag counts (train_util.set_tag_frequency): each caption split on commas, tags
    stripped and lower-cased, empty ones skipped."""
    counts: dict[str, int] = {}
    for caption in captions:
        for tag in caption.split(","):
            tag = tag.strip().lower()
            if tag:
                counts[tag] = counts.get(tag, 0) + 1
    return counts


def _comment(spec: TrainingSpec, steps_done: int, loss: float | None) -> str:
    words = [f"{METHOD_LABELS[spec.method]} trained in chat with sdbot: {steps_done} of {spec.steps} steps"]
    if loss is not None:
        words.append(f"final loss {loss:.4g}")
    words.append(f"trigger: {spec.trigger}")
    return "; ".join(words)
