"""Quantized transformer files for FLUX.1-style DiTs (FLUX.1 dev/schnell, Chroma): GGUF and fp8.

Why: a FLUX.1 transformer is 12B parameters, 24 GB in bf16; the GGUF files people download
(city96's Q8_0 .. Q4_K, about 12.7 .. 6.8 GB) and fp8 weight storage make it fit consumer GPUs.

- `read_gguf` looks at a .gguf file without loading its weights and without torch (the gguf
  package memory-maps it; only the header is read): key layout, family, guidance, quant types and
  parameter count, so the loader can pick the model class and config and refuse bad files early.
- `load_gguf_transformer` loads one with diffusers' `from_single_file` and `GGUFQuantizationConfig`:
  the weights stay quantized (GGUFParameter) and are dequantized layer by layer in `compute_dtype`.
  diffusers converts the original BFL key names itself (and skips that when the keys are already
  diffusers'); its converter assumes FLUX's width (3072), which every published FLUX.1/Chroma has.
- `store_in_fp8` keeps an ordinary (unquantized) model's weights in float8_e4m3fn, cast to
  `compute_dtype` one layer at a time (diffusers' layerwise casting): about half the bf16 memory.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

# Bounds on a header: FLUX.1 has ~780 tensors and a dozen metadata keys; an LLM's tokenizer a few MB.
MAX_TENSORS = 100_000
MAX_METADATA_KEYS = 100_000
MAX_HEADER_BYTES = 256 * 1024 * 1024
# The quant types diffusers 0.42.1 can dequantize (diffusers.quantizers.gguf.utils), besides F32/F16.
DIFFUSERS_QUANT_TYPES = frozenset(
    {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"}
)
MODEL_CLASSES = {"flux": "FluxTransformer2DModel", "chroma": "ChromaTransformer2DModel"}
_PREFIX = "model.diffusion_model."  # the ComfyUI / full-checkpoint prefix
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType -> bytes
_STRING, _ARRAY = 8, 9
_ASK = "Give the transformer's .gguf file (e.g. flux1-dev-Q8_0.gguf) or a .safetensors checkpoint instead."


@dataclass(frozen=True)
class GGUFFacts:
    path: Path
    key_layout: Literal["bfl", "diffusers"] | None  # original BFL names (double_blocks.*) or diffusers' (transformer_blocks.*)
    family: Literal["flux", "chroma"] | None  # None: not a FLUX.1-style transformer (FLUX.2, HunyuanVideo, an LLM, ...)
    guidance: bool  # has a guidance embedding: FLUX.1-dev (and fill/depth) has one, schnell and Chroma have none
    in_channels: int | None  # 64 for text-to-image FLUX.1; 384 fill, 128 depth
    quant_types: frozenset[str]  # e.g. {"Q8_0", "F32"}
    parameters: int
    architecture: str | None  # the `general.architecture` metadata ("flux" in city96's files), if any
    tensors: dict[str, tuple[tuple[int, ...], str]] = field(
        repr=False
    )  # name (less any model.diffusion_model. prefix) -> (torch shape, quant type)

    @property
    def unsupported_quant_types(self) -> frozenset[str]:
        return self.quant_types - DIFFUSERS_QUANT_TYPES

    @property
    def model_class(self) -> str | None:
        return MODEL_CLASSES.get(self.family or "")


def read_gguf(path: Path) -> GGUFFacts:
    """What a .gguf transformer file holds, from its header only (torch-free). ValueError if it is not
    a readable GGUF file, with a message for the user."""
    import gguf

    path = Path(path)
    size = _check_header(path)
    try:
        reader = gguf.GGUFReader(path, "r")
    except (ValueError, IndexError, KeyError, OverflowError, TypeError, struct.error) as exc:
        raise ValueError(
            f"{path.name} is a damaged or truncated GGUF file: it ends before its header or weights do. Download it again."
        ) from exc
    if reader.data_offset > MAX_HEADER_BYTES:
        raise ValueError(f"{path.name} has a GGUF header of {reader.data_offset} bytes, too large for a model file. {_ASK}")
    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    parameters = 0
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise ValueError(f"{path.name} is truncated: tensor {t.name} ends past the end of the file. Download it again.")
        tensors[t.name.removeprefix(_PREFIX)] = (tuple(int(d) for d in reversed(t.shape.tolist())), t.tensor_type.name)
        parameters += int(t.n_elements)
    arch_field = reader.get_field("general.architecture")
    architecture = arch_field.contents() if arch_field is not None and arch_field.types == [gguf.GGUFValueType.STRING] else None
    del reader  # drop the memory map
    layout, family, guidance, in_channels = _classify(tensors)
    return GGUFFacts(
        path=path,
        key_layout=layout,
        family=family,
        guidance=guidance,
        in_channels=in_channels,
        quant_types=frozenset(q for _, q in tensors.values()),
        parameters=parameters,
        architecture=architecture,
        tensors=tensors,
    )


def _classify(
    tensors: dict[str, tuple[tuple[int, ...], str]],
) -> tuple[Literal["bfl", "diffusers"] | None, Literal["flux", "chroma"] | None, bool, int | None]:
    names = tensors.keys()

    def has(prefix: str) -> bool:
        return any(n.startswith(prefix) for n in names)

    layout: Literal["bfl", "diffusers"] | None = None
    if has("double_blocks.") or has("single_blocks."):
        layout = "bfl"
    elif has("transformer_blocks.") or has("single_transformer_blocks."):
        layout = "diffusers"
    if layout == "bfl":
        blocks = has("double_blocks.") and has("single_blocks.")
        embed, time, guidance_key = "img_in.weight", "time_in.in_layer.weight", "guidance_in.in_layer.weight"
    else:
        blocks = has("transformer_blocks.") and has("single_transformer_blocks.")
        embed, time = "x_embedder.weight", "time_text_embed.timestep_embedder.linear_1.weight"
        guidance_key = "time_text_embed.guidance_embedder.linear_1.weight"
    # FLUX.2 / later BFL models share the block names but modulate per stream (diffusers checks these first too)
    newer = has("single_stream_modulation.") or has("double_stream_modulation") or has("early_stream_modulations.")
    family: Literal["flux", "chroma"] | None = None
    if layout and blocks and embed in names and not newer:
        if "distilled_guidance_layer.in_proj.weight" in names:
            family = "chroma"
        elif time in names:
            family = "flux"
    in_channels = tensors[embed][0][1] if family and len(tensors[embed][0]) == 2 else None
    return layout, family, guidance_key in names, in_channels


def _check_header(path: Path) -> int:
    """Refuse what is not a GGUF file, or one whose header is truncated or absurdly large, before
    gguf.GGUFReader parses it (it trusts the counts and lengths it reads). Returns the file size."""
    with path.open("rb") as f:
        size = path.stat().st_size
        head = f.read(24)
        if head[:4] != b"GGUF":
            raise ValueError(f"{path.name} is not a GGUF file: {_sniff(head)}. {_ASK}")
        if size < 24:
            raise ValueError(f"{path.name} is a truncated GGUF file ({size} bytes). Download it again.")
        order = "<" if struct.unpack("<I", head[4:8])[0] & 0xFFFF else ">"  # GGUF files may be big-endian
        version, tensor_count, kv_count = struct.unpack(order + "IQQ", head[4:24])
        if version not in (2, 3):
            raise ValueError(f"{path.name} is GGUF version {version}; only versions 2 and 3 can be read. {_ASK}")
        if tensor_count > MAX_TENSORS or kv_count > MAX_METADATA_KEYS:
            raise ValueError(
                f"{path.name} claims {tensor_count} tensors and {kv_count} metadata keys: too large a header, or a damaged file. {_ASK}"
            )
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _skip_metadata(buf, 24, kv_count, order, path.name, min(size, MAX_HEADER_BYTES))
    return size


def _skip_metadata(buf: mmap.mmap, offs: int, count: int, order: str, name: str, end: int) -> int:
    """Walk the metadata key/values, checking every declared length against `end`."""

    def take(n: int) -> int:
        nonlocal offs
        if offs + n > end:
            raise ValueError(f"{name} is a truncated GGUF file, or its header is too large (it runs past {end} bytes). Download it again.")
        offs += n
        return offs - n

    def u(fmt: str) -> int:
        return struct.unpack_from(order + fmt, buf, take(struct.calcsize(fmt)))[0]

    def value(vtype: int) -> None:
        if vtype in _SCALAR_SIZES:
            take(_SCALAR_SIZES[vtype])
        elif vtype == _STRING:
            take(u("Q"))
        elif vtype == _ARRAY:
            item, n = u("I"), u("Q")
            if item in _SCALAR_SIZES:
                take(n * _SCALAR_SIZES[item])
                return
            if offs + n * 8 > end:  # strings and arrays take >= 8 bytes each: bounds the loop
                take(n * 8)
            for _ in range(n):
                value(item)
        else:
            raise ValueError(f"{name} is a damaged GGUF file (unknown metadata type {vtype}). Download it again.")

    for _ in range(count):
        take(u("Q"))  # the key
        value(u("I"))
    return offs


def _sniff(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive, most likely a PyTorch checkpoint (torch.save) renamed .gguf, which sdbot does not open (loading one can run code hidden in it)"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "it is a Python pickle (a .pt/.ckpt checkpoint renamed .gguf), which sdbot does not open (loading one can run code hidden in it)"
    if len(head) >= 10 and head[8:10] == b'{"':
        return "it is a safetensors file (rename it .safetensors)"
    return "it does not start with the GGUF signature" if head else "it is empty"


def load_gguf_transformer(path: Path, transformer_class: type, config: str | Path, compute_dtype: torch.dtype) -> torch.nn.Module:
    """The transformer in a .gguf file, its weights kept quantized and computed in `compute_dtype`.
    `config` is a local diffusers pipeline folder with transformer/config.json (or the transformer
    folder itself); nothing is fetched from the Hub. Loads on the CPU: move it with `.to(device)`."""
    from diffusers import GGUFQuantizationConfig

    path, folder = Path(path), Path(config)
    if (folder / "transformer" / "config.json").is_file():
        subfolder: str | None = "transformer"
    elif (folder / "config.json").is_file():
        subfolder = None
    else:
        raise ValueError(
            f"{folder} has no transformer/config.json: give the model's diffusers folder (e.g. a download of black-forest-labs/FLUX.1-dev without its weights) as its config."
        )
    facts = read_gguf(path)
    if facts.unsupported_quant_types:
        raise ValueError(
            f"{path.name} uses quant types {sorted(facts.unsupported_quant_types)} that diffusers cannot dequantize; choose a Q8_0, Q6_K, Q5_K_S, Q4_K_S or Q4_0 file instead."
        )
    if facts.model_class and facts.model_class != transformer_class.__name__:
        raise ValueError(
            f"{path.name} holds a {facts.family} transformer, not a {transformer_class.__name__}: load it with {facts.model_class}."
        )
    model_config = json.loads((folder / (subfolder or "") / "config.json").read_text())
    if facts.family == "flux" and bool(model_config.get("guidance_embeds")) != facts.guidance:
        wanted = "FLUX.1-dev (guidance_embeds true)" if facts.guidance else "FLUX.1-schnell (guidance_embeds false)"
        raise ValueError(
            f"{path.name} {'has' if facts.guidance else 'lacks'} a guidance embedding but its config {folder} says otherwise: use a {wanted} config folder."
        )
    model = transformer_class.from_single_file(
        str(path),
        quantization_config=GGUFQuantizationConfig(compute_dtype=compute_dtype),
        config=str(folder),
        subfolder=subfolder,
        local_files_only=True,
        torch_dtype=compute_dtype,
    )
    _dequantize_loose_parameters(model, compute_dtype)
    return model


def _dequantize_loose_parameters(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Quantized parameters outside a linear layer (Z-Image's `x_pad_token`, `cap_pad_token`) are
    used as plain tensors by the model's code, which diffusers 0.42.1's GGUF layers don't
    dequantize (the draw fails on a size mismatch): dequantize them once, as they load."""
    import torch
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            continue
        for name, parameter in list(module.named_parameters(recurse=False)):
            if isinstance(parameter, GGUFParameter):
                setattr(module, name, torch.nn.Parameter(dequantize_gguf_tensor(parameter).to(dtype), requires_grad=False))


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes held by a model's parameters and buffers (GGUF ones count their packed bytes)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def store_in_fp8(model: torch.nn.Module, compute_dtype: torch.dtype) -> torch.nn.Module:
    """Keep `model`'s weights in float8_e4m3fn and compute each layer in `compute_dtype` (diffusers'
    layerwise casting: norms and position embeddings stay in `compute_dtype`). Works on CPU too."""
    import torch

    if any(hasattr(p, "quant_type") for p in model.parameters()):
        raise ValueError("this model is already GGUF-quantized; fp8 storage is for unquantized weights")
    if model.dtype != compute_dtype:  # the layers left out (norms) compute in their own dtype
        model.to(compute_dtype)
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)
    return model
