"""A1111 hypernetwork files, read without running code and without torch (the chat side reads
uploads; it must not import torch).

A1111 (`modules/hypernetworks/hypernetwork.py`) saves a hypernetwork with `torch.save` as a dict:
for each width it changes (768 for SD 1.x's text features, 1024 for SD 2.x's, 320/640/1280 for the
UNet's own features), `{width: (key_module_state, value_module_state)}`, each module a
`torch.nn.Sequential` named `linear` (`linear.0.weight`, `linear.0.bias`, ...), and beside them
`layer_structure` ([1, 2, 1]: widths as multiples of the input), `activation_func` ("linear" is
none), `is_layer_norm`, `activate_output`, `use_dropout` / `dropout_structure` /
`last_layer_dropout`, `name`, `step` and a few notes. Very old files name the two layers
`linear1`/`linear2` (A1111's `fix_old_state_dict`).

A `.pt` is a pickle, and a pickle can run any code while it is read. It is read here with a pickle
reader that resolves exactly the globals `torch.save` writes for plain tensors in a dict (the
tensor and storage rebuilders, `OrderedDict`) and refuses every other one before it is called —
the "restricting globals" recipe of Python's pickle docs, and the rule of
`torch.load(weights_only=True)`, which the bot process can't use (commands/ never imports torch).
Tensors come out as numpy arrays read from the archive's raw storages. The file is then kept as
`.safetensors` (`to_safetensors`): keys `<width>.<0|1>.<layer index>.<weight|bias>` (0: keys,
1: values; the index is the Sequential's, so A1111's layout can be written back), and the
structure in the safetensors metadata (`sdbot_hypernetwork`). Such a `.safetensors` is accepted
as an upload too.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from generation.assets.safetensors_header import AssetError

FORMAT_KEY = "sdbot_hypernetwork"  # the safetensors metadata entry holding the structure (JSON)
# A1111's activation names (`HypernetworkModule.activation_dict` and torch.nn's by lower-case name)
# that sdbot builds; "linear" is none.
ACTIVATIONS = ("linear", "relu", "leakyrelu", "elu", "swish", "tanh", "sigmoid", "gelu", "mish", "softsign", "softplus", "silu")
MAX_WIDTH = 4096
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # numpy has no bfloat16: read as uint16, widened below
    "DoubleStorage": np.float64,
}
_KEY = re.compile(r"(?P<width>\d+)\.(?P<which>[01])\.(?P<index>\d+)\.(?P<part>weight|bias)")
_OLD_NAMES = {"linear1": "linear.0", "linear2": "linear.1"}  # A1111's fix_old_state_dict


@dataclass(frozen=True)
class Structure:
    """How a hypernetwork's modules are built (A1111's fields, its defaults for missing ones)."""

    layer_structure: tuple[float, ...] = (1.0, 2.0, 1.0)
    activation: str = "linear"
    layer_norm: bool = False
    activate_output: bool = True  # A1111's default when a file does not say
    dropout: tuple[float, ...] = ()  # per layer_structure entry; only shifts the module indices

    def linear_indices(self) -> list[tuple[int, int | None]]:
        """For each layer of `layer_structure`, the Sequential index of its Linear and of its
        LayerNorm (None without): A1111 adds Linear, activation (except after the last layer
        unless `activate_output`), LayerNorm, Dropout, in that order."""
        found, index = [], 0
        count = len(self.layer_structure) - 1
        for i in range(count):
            linear = index
            index += 1
            if self.activation != "linear" and (i < count - 1 or self.activate_output):
                index += 1
            norm = None
            if self.layer_norm:
                norm, index = index, index + 1
            if self.dropout and self.dropout[i + 1] > 0:
                index += 1
            found.append((linear, norm))
        return found

    def to_json(self) -> str:
        return json.dumps(
            {
                "layer_structure": list(self.layer_structure),
                "activation_func": self.activation,
                "is_layer_norm": self.layer_norm,
                "activate_output": self.activate_output,
                "dropout_structure": list(self.dropout),
            }
        )

    @classmethod
    def from_fields(cls, fields: dict[str, Any], shown: str) -> Structure:
        """From A1111's saved fields (or our metadata, which uses the same names)."""
        layers = tuple(float(x) for x in (fields.get("layer_structure") or (1, 2, 1)))
        if len(layers) < 2 or layers[0] != 1 or layers[-1] != 1 or any(not 0 < x <= 16 for x in layers):
            raise AssetError(f"{shown} has the layer structure {list(layers)}; A1111's start and end with 1 (such as 1, 2, 1).")
        activation = str(fields.get("activation_func") or "linear").lower()
        if activation not in ACTIVATIONS:
            raise AssetError(f"{shown} uses the activation `{activation}`, which sdbot does not build ({', '.join(ACTIVATIONS)}).")
        dropout = fields.get("dropout_structure")
        if dropout is None and fields.get("use_dropout"):  # A1111's parse_dropout_structure
            dropout = [0.0] + [0.3] * (len(layers) - 3) + [0.3 if fields.get("last_layer_dropout") else 0.0, 0.0]
        dropout_values = tuple(float(x) for x in (dropout or ()))
        if dropout_values and len(dropout_values) != len(layers):
            raise AssetError(f"{shown}: its dropout structure does not match its layer structure.")
        output = fields.get("activate_output")
        return cls(layers, activation, bool(fields.get("is_layer_norm")), True if output is None else bool(output), dropout_values)


# What A1111's "Create hypernetwork" makes by default (its UI: layer structure "1, 2, 1", linear
# activation, no layer norm, no dropout, and `activate_output` False for a new one), and so what
# `/train hypernetwork` trains; its "Normal" weight initialisation draws the Linear weights from
# N(0, 0.01) and sets their biases to zero.
A1111_CREATED = Structure((1.0, 2.0, 1.0), "linear", False, False, (0.0, 0.0, 0.0))
A1111_INIT_STD = 0.01


@dataclass(frozen=True)
class Hypernetwork:
    """A hypernetwork's tensors (`<width>.<0|1>.<index>.<weight|bias>` -> array) and structure."""

    tensors: dict[str, np.ndarray]
    structure: Structure
    name: str | None = None
    steps: int | None = None

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(sorted({int(key.split(".", 1)[0]) for key in self.tensors}))


def read_pt(data: bytes, shown: str) -> Hypernetwork:
    """An A1111 `.pt` hypernetwork, read with the restricted reader (module docstring); AssetError
    with the reason for anything else."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise AssetError(
            f"{shown} is not a PyTorch archive of the kind A1111 saves (a zip with `data.pkl`); files saved by "
            "PyTorch before 1.6 aren't read here. Re-save it with a newer A1111, or convert it to .safetensors."
        ) from None
    with archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise AssetError(f"{shown} is not a PyTorch archive of the kind A1111 saves (no single `data.pkl` in it).")
        root = pickles[0][: -len("data.pkl")]
        try:
            saved = _Reader(io.BytesIO(archive.read(pickles[0])), archive, root).load()
        except _Refused as error:
            raise AssetError(
                f"{shown} holds {error} besides tensors, numbers and strings. Reading such a pickle can run code hidden "
                "in it, so sdbot refuses it. Upload a plain A1111 hypernetwork, or convert it to .safetensors."
            ) from None
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
            raise AssetError(f"{shown} can't be read as an A1111 hypernetwork ({type(error).__name__}).") from None
    if not isinstance(saved, dict):
        raise AssetError(f"{shown} is a PyTorch file, but not an A1111 hypernetwork (it holds no dict of layers).")
    return _from_a1111(saved, shown)


def _from_a1111(saved: dict[Any, Any], shown: str) -> Hypernetwork:
    structure = Structure.from_fields({k: v for k, v in saved.items() if isinstance(k, str)}, shown)
    tensors: dict[str, np.ndarray] = {}
    for width, pair in saved.items():
        if not isinstance(width, int):
            continue
        if not 0 < width <= MAX_WIDTH or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise AssetError(f"{shown}: its entry for width {width} is not a pair of layer modules as A1111 saves them.")
        for which, state in enumerate(pair):
            if not isinstance(state, dict):
                raise AssetError(f"{shown}: its modules for width {width} are not state dicts.")
            for key, value in state.items():
                for old, new in _OLD_NAMES.items():
                    key = key.replace(old, new) if key.startswith(old + ".") else key
                match = re.fullmatch(r"linear\.(\d+)\.(weight|bias)", str(key))
                if match is None or not isinstance(value, np.ndarray):
                    raise AssetError(f"{shown}: the layer `{key}` of width {width} is not one of A1111's hypernetwork layers.")
                tensors[f"{width}.{which}.{match[1]}.{match[2]}"] = value
    if not tensors:
        raise AssetError(f"{shown} is a PyTorch file, but holds no hypernetwork layers (a dict keyed by widths).")
    name = saved.get("name") if isinstance(saved.get("name"), str) else None
    steps = saved.get("step") if isinstance(saved.get("step"), int) else None
    hypernetwork = Hypernetwork(tensors, structure, name, steps)
    check(hypernetwork, shown)
    return hypernetwork


def check(hypernetwork: Hypernetwork, shown: str) -> None:
    """AssetError unless every width has both modules with exactly the layers its structure builds,
    each of the shape it must have."""
    check_shapes({key: tuple(value.shape) for key, value in hypernetwork.tensors.items()}, hypernetwork.structure, shown)


def check_shapes(got: dict[str, tuple[int, ...]], structure: Structure, shown: str) -> None:
    """`check`, from the tensors' names and shapes alone (a stored file's header)."""
    if not got or not all(_KEY.fullmatch(key) for key in got):
        odd = next((key for key in got if not _KEY.fullmatch(key)), None)
        raise AssetError(f"{shown} holds `{odd}`, which is not a hypernetwork layer." if odd else f"{shown} holds no layers.")
    sizes = structure.layer_structure
    expected: dict[str, tuple[int, ...]] = {}
    if any(not 0 < width <= MAX_WIDTH for width in widths_of(list(got))):
        raise AssetError(f"{shown} has a layer wider than {MAX_WIDTH}, which no hypernetwork of SD 1.x or 2.x has.")
    for width in widths_of(list(got)):
        for which in (0, 1):
            for i, (linear, norm) in enumerate(structure.linear_indices()):
                inputs, outputs = int(width * sizes[i]), int(width * sizes[i + 1])
                expected[f"{width}.{which}.{linear}.weight"] = (outputs, inputs)
                expected[f"{width}.{which}.{linear}.bias"] = (outputs,)
                if norm is not None:
                    expected[f"{width}.{which}.{norm}.weight"] = (outputs,)
                    expected[f"{width}.{which}.{norm}.bias"] = (outputs,)
    if set(got) != set(expected):
        missing = sorted(set(expected) - set(got)) or sorted(set(got) - set(expected))
        raise AssetError(f"{shown}: its layers don't match its structure ({structure.layer_structure}); see `{missing[0]}`.")
    for key, shape in expected.items():
        if got[key] != shape:
            raise AssetError(f"{shown}: its layer `{key}` is {list(got[key])}, and its structure makes it {list(shape)}.")


def to_safetensors(hypernetwork: Hypernetwork, extra: dict[str, str] | None = None) -> bytes:
    """The hypernetwork as sdbot stores it (module docstring), in float32 or float16 as it came;
    `extra`: more metadata (a trained one's `ss_*` notes)."""
    from safetensors.numpy import save

    metadata = {**(extra or {}), FORMAT_KEY: hypernetwork.structure.to_json()}
    if hypernetwork.name:
        metadata["name"] = hypernetwork.name
    if hypernetwork.steps is not None:
        metadata["step"] = str(hypernetwork.steps)
    return save({k: np.ascontiguousarray(v) for k, v in hypernetwork.tensors.items()}, metadata=metadata)


def structure_of(metadata: dict[str, str], shown: str) -> Structure | None:
    """The structure a stored (or uploaded) `.safetensors` hypernetwork declares; None when its
    metadata is not one."""
    raw = metadata.get(FORMAT_KEY)
    if raw is None:
        return None
    try:
        fields = json.loads(raw)
    except json.JSONDecodeError:
        raise AssetError(f"{shown}: its hypernetwork structure can't be read.") from None
    return Structure.from_fields(fields, shown)


def widths_of(keys: list[str]) -> tuple[int, ...]:
    """The widths a stored hypernetwork's tensor names cover."""
    return tuple(sorted({int(match["width"]) for key in keys if (match := _KEY.fullmatch(key))}))


def is_hypernetwork_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


# --- the restricted pickle reader ---------------------------------------------------------------


class _Refused(Exception):
    """A global the file names that a hypernetwork does not need (its name is the message)."""


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *rest: Any) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2`'s job for a plain tensor: a view of the storage, copied."""
    if not size:
        return storage[offset : offset + 1].reshape(()).copy()
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    return np.array(view)


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _Reader(pickle.Unpickler):
    """Resolves only what `torch.save` writes for tensors in dicts; storages come from the archive."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("collections", "OrderedDict"): OrderedDict,
        **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
    }

    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self.archive, self.root = archive, root
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = self._ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"`{module}.{name}`")
        return found

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise _Refused("a reference to something other than a tensor's storage")
        kind, key = pid[1].name, str(pid[2])
        if key not in self.storages:
            raw = self.archive.read(f"{self.root}data/{key}")
            dtype = _STORAGE_DTYPES[kind]
            if dtype is None:  # bfloat16: the high half of a float32
                array = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, dtype=dtype)
            self.storages[key] = array
        return self.storages[key]
