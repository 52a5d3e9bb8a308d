"""The safetensors container of an uploaded file, read and checked with plain Python.

Uploaded files are untrusted. This reads the layout itself (an 8-byte little-endian header
length, a JSON header, then the raw tensor bytes) and checks everything a loader would trust, the
way the safetensors library validates a file, and then some: the bytes are safetensors, not a
pickle or a PyTorch zip renamed; the header is bounded, is a JSON object without duplicate keys,
and every tensor has a dtype sdbot loads, a shape, and offsets that tile the data exactly (no
gaps, no overlaps, nothing past the end). Nothing is unpickled, and torch is never imported.

What the tensors are (a LoRA, an embedding, for which architecture) is `generation.assets.files`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# --- limits ---------------------------------------------------------------------------------------
# The JSON header. safetensors itself allows 100 MB; real LoRA headers are tens of KB to a few MB
# (thousands of tensors, kohya's training metadata, a base64 thumbnail in `modelspec.thumbnail`).
MAX_HEADER_BYTES = 16 * 1024 * 1024
# Tensors in one file. A full SDXL LoRA (UNet + both text encoders) has ~2,200 (kohya: down, up,
# alpha per module); a fully decomposed LoKr up to 7 per module, ~5,000.
MAX_TENSORS = 16_384
MAX_DIMS = 8  # dimensions of one tensor (LoRA weights have 0-4)

# dtype -> bytes per element. Floats are what sdbot loads; integer dtypes only for scalars (a LoRA's
# `alpha`: diffusers' `convert_state_dict_to_kohya` writes it as I64). Everything else safetensors
# knows (BOOL, F8_*, F4, U16-U64, C64, ...) is refused: the engine would not load it sensibly.
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
SCALAR_INT_DTYPES = {"I8": 1, "U8": 1, "I16": 2, "I32": 4, "I64": 8}

CONVERT_ADVICE = (
    "Convert it on a machine you trust: load it there (`torch.load`) and save its tensors with "
    "`safetensors.torch.save_file` (kohya's sd-scripts and diffusers' conversion scripts can do this "
    "too), then upload the `.safetensors` file."
)


class AssetError(ValueError):
    """An uploaded file sdbot will not use. The message is for the user: what is wrong and what
    to do about it."""


# --- the safetensors layout -------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header_file(
    path: Path, filename: str | None = None, *, max_tensors: int = MAX_TENSORS
) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """`read_header` of a file on disk, reading only its header (the tensors' bytes are not
    read; their offsets are checked against the file's size)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        header = handle.read(length) if length <= MAX_HEADER_BYTES and 8 + length <= size else b""
    return read_header(head + header, filename or path.name, max_tensors=max_tensors, total_size=size)


def read_header(
    data: bytes, filename: str = "the file", *, max_tensors: int = MAX_TENSORS, total_size: int | None = None
) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """The tensors and metadata of a safetensors file, checked the way safetensors checks them
    (and stricter). Raises AssetError. Reads only bytes: nothing is loaded or executed. `data`
    is the whole file, or its first bytes up to the header's end when `total_size` gives the
    file's size."""
    shown = quote(filename)
    total = len(data) if total_size is None else total_size
    if len(data) < 8:
        raise AssetError(
            f"{shown} is too short to be a safetensors file ({len(data)} bytes): it is empty or was cut off. Upload the whole file again."
        )
    (length,) = struct.unpack("<Q", data[:8])
    if not (length <= MAX_HEADER_BYTES and 8 + length <= min(len(data), total) and length >= 2 and data[8:9] == b"{"):
        if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise AssetError(
                f"{shown} is not a safetensors file: it is a Python pickle (a PyTorch checkpoint "
                "renamed to .safetensors). Opening a pickle can run any code hidden in it, so sdbot "
                f"never does. {CONVERT_ADVICE}"
            )
        if data[:4] == b"PK\x03\x04":
            raise AssetError(
                f"{shown} is not a safetensors file: it is a zip archive, the way `torch.save` "
                "writes PyTorch checkpoints (pickles inside), renamed to .safetensors. sdbot never "
                f"opens pickles: they can run code. {CONVERT_ADVICE}"
            )
        if length > MAX_HEADER_BYTES:
            raise AssetError(
                f"{shown} is not a usable safetensors file: its header claims {length:,} bytes, "
                f"over the {MAX_HEADER_BYTES // (1024 * 1024)} MiB sdbot reads. It is damaged or "
                "not a safetensors file."
            )
        if 8 + length > total:
            raise AssetError(
                f"{shown} is not a usable safetensors file: its header claims {length:,} bytes but "
                f"the file has only {total:,}. It was cut off or is not a safetensors file; "
                "upload the whole file again."
            )
        raise AssetError(f"{shown} is not a safetensors file: its header is not a JSON object.")
    try:
        text = bytes(data[8 : 8 + length]).decode("utf-8")
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as duplicate:
        raise AssetError(f"{shown} is damaged: its header names {quote(str(duplicate))} twice.") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AssetError(f"{shown} is damaged: its header is not valid JSON.") from None
    if not isinstance(header, dict):
        raise AssetError(f"{shown} is damaged: its header is not a JSON object.")

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise AssetError(f"{shown} is damaged: its metadata (`__metadata__`) must map names to text, as safetensors requires.")
    if not header:
        raise AssetError(f"{shown} holds no tensors.")
    if len(header) > max_tensors:
        raise AssetError(f"{shown} holds {len(header):,} tensors, more than the {max_tensors:,} sdbot accepts in a LoRA or embedding.")

    data_length = total - 8 - length
    tensors: dict[str, TensorEntry] = {}
    for key, entry in header.items():
        tensors[key] = _tensor_entry(shown, key, entry, data_length)
    _check_offsets(shown, tensors, data_length)
    return tensors, metadata


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_entry(shown: str, key: str, entry: Any, data_length: int) -> TensorEntry:
    name = quote(key)
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise AssetError(f"{shown} is damaged: tensor {name} lacks its dtype, shape or data_offsets.")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        raise AssetError(f"{shown} is damaged: tensor {name} has no valid dtype.")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(is_int(d) and 0 <= d < 2**40 for d in shape)  # the byte count is checked below
    ):
        raise AssetError(f"{shown} is damaged: tensor {name} has an invalid shape.")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)):
        raise AssetError(f"{shown} is damaged: tensor {name} has invalid data_offsets.")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise AssetError(f"{shown} is damaged: tensor {name} has invalid data_offsets.")
    if end > data_length:
        raise AssetError(
            f"{shown} is damaged or cut off: tensor {name} ends at byte {end:,} of the data, "
            f"which has only {data_length:,} bytes. Upload the whole file again."
        )
    elements = 1
    for d in shape:
        elements *= d
    if dtype in FLOAT_DTYPES:
        size = FLOAT_DTYPES[dtype]
    elif dtype in SCALAR_INT_DTYPES and elements <= 1:
        size = SCALAR_INT_DTYPES[dtype]
    else:
        raise AssetError(
            f"{shown} has tensor {name} of dtype {quote(dtype)}, which sdbot does not load. Save "
            f"its weights as {', '.join(FLOAT_DTYPES)} (F16 is the usual choice)."
        )
    if elements * size != end - begin:
        raise AssetError(
            f"{shown} is damaged: tensor {name} ({dtype}, shape {list(shape)}) needs "
            f"{elements * size:,} bytes but its offsets span {end - begin:,}."
        )
    return TensorEntry(dtype, tuple(shape), begin, end)


def _check_offsets(shown: str, tensors: dict[str, TensorEntry], data_length: int) -> None:
    """The tensors tile the data exactly, in some order: no overlap, no gap, nothing after."""
    position = 0
    for key, entry in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin < position:
            raise AssetError(f"{shown} is damaged: tensor {quote(key)} overlaps another tensor's data.")
        if entry.begin > position:
            raise AssetError(f"{shown} is damaged: there are stray bytes before tensor {quote(key)}.")
        position = entry.end
    if position != data_length:
        raise AssetError(f"{shown} is damaged: {data_length - position:,} bytes after its last tensor belong to none of them.")


def quote(text: str, limit: int = 80) -> str:
    """A name from the file, safe to show: printable, bounded, in backticks."""
    shown = "".join(c if c.isprintable() and c != "`" else "?" for c in text[:limit])
    return f"`{shown}{'…' if len(text) > limit else ''}`"


def addnet_hash(data: bytes) -> str:
    """A1111's hash of a safetensors LoRA ("Lora hashes"): sha256 of the bytes after the header."""
    (length,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + length :]).hexdigest()
