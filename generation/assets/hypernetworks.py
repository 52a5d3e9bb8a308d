"""Users' hypernetworks on a UNet model, per job, as A1111 applies them.

A1111 (`modules/hypernetworks/hypernetwork.py`, `apply_hypernetworks`): in every attention of the
UNet, self- and cross-attention alike, the features the keys and values are computed from (the
text features in cross-attention, the picture's own in self-attention) first go through the
hypernetwork's pair of modules for their width, when it has one: `k_in = x + key_module(x) * w`,
`v_in = x + value_module(x) * w`, each module a small MLP (`Structure`). Several hypernetworks
apply one after the other, the keys' chain and the values' apart.

Here that is a forward pre-hook on each attention's `to_k` and `to_v` (the input they are given is
exactly A1111's `context`), put on for the block of a job (`Hypernetworks.applied`) and taken off
after it, so no other job sees it. With a LoRA on the same layer (peft wraps `to_k`), the hook is
on the wrapper and the LoRA sees the changed features, as in A1111, where the hypernetwork changes
the context before the LoRA'd projection. The modules are built once per file (by its sha256),
from the stored `.safetensors` (`generation.assets.hypernetwork_files`), in float32 as A1111 runs
them (its `cond_cast_float`), and kept in a small LRU.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from safetensors import safe_open

from generation.assets.hypernetwork_files import FORMAT_KEY, Structure, structure_of
from generation.errors import EngineUserError
from generation.spec import AssetRef

KEEP = 8  # hypernetworks kept built (a 1, 2, 1 SD 1.x file is ~25M parameters)
_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "relu": torch.nn.ReLU,
    "leakyrelu": torch.nn.LeakyReLU,
    "elu": torch.nn.ELU,
    "swish": torch.nn.Hardswish,  # A1111's "swish" is torch's Hardswish
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "gelu": torch.nn.GELU,
    "mish": torch.nn.Mish,
    "softsign": torch.nn.Softsign,
    "softplus": torch.nn.Softplus,
    "silu": torch.nn.SiLU,
}


def build_module(width: int, structure: Structure) -> torch.nn.Sequential:
    """A1111's `HypernetworkModule.linear` for one width: Linear, activation (not after the last
    unless `activate_output`), LayerNorm, Dropout (kept as a placeholder: the indices are A1111's)."""
    layers: list[torch.nn.Module] = []
    sizes = structure.layer_structure
    count = len(sizes) - 1
    for i in range(count):
        layers.append(torch.nn.Linear(int(width * sizes[i]), int(width * sizes[i + 1])))
        if structure.activation != "linear" and (i < count - 1 or structure.activate_output):
            layers.append(_ACTIVATIONS[structure.activation]())
        if structure.layer_norm:
            layers.append(torch.nn.LayerNorm(int(width * sizes[i + 1])))
        if structure.dropout and structure.dropout[i + 1] > 0:
            layers.append(torch.nn.Dropout(p=structure.dropout[i + 1]))
    return torch.nn.Sequential(*layers).eval()


class Loaded:
    """One hypernetwork's modules: width -> (keys' module, values' module)."""

    def __init__(self, modules: dict[int, tuple[torch.nn.Sequential, torch.nn.Sequential]]):
        self.modules = modules

    @classmethod
    def from_file(cls, path: str, ref: AssetRef) -> Loaded:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
            if FORMAT_KEY not in metadata:
                raise EngineUserError(f"the hypernetwork `{ref.name}`'s file is not one sdbot stored; upload it again.")
            structure = structure_of(metadata, f"`{ref.name}`")
            assert structure is not None
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 - safe_open has no iteration
        modules: dict[int, tuple[torch.nn.Sequential, torch.nn.Sequential]] = {}
        for width in sorted({int(key.split(".", 1)[0]) for key in tensors}):
            pair = []
            for which in (0, 1):
                module = build_module(width, structure)
                prefix = f"{width}.{which}."
                state = {k[len(prefix) :]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
                module.load_state_dict(state, strict=True)
                pair.append(module)
            modules[width] = (pair[0], pair[1])
        return cls(modules)

    def to(self, device: torch.device) -> Loaded:
        for pair in self.modules.values():
            for module in pair:
                module.to(device)
        return self


class Hypernetworks:
    """The hypernetworks built so far (an LRU by file), and a job's put on a pipeline's UNet for a
    block. Engine thread only."""

    def __init__(self, blobs: Any, keep: int = KEEP):
        self.blobs = blobs
        self.keep = keep
        self._built: OrderedDict[str, Loaded] = OrderedDict()

    def _get(self, ref: AssetRef, device: torch.device) -> Loaded:
        loaded = self._built.pop(ref.sha256, None)
        if loaded is None:
            try:
                loaded = Loaded.from_file(str(self.blobs.path(ref.blob)), ref)
            except EngineUserError:
                raise
            except Exception as error:  # noqa: BLE001 - a damaged or replaced file
                raise EngineUserError(
                    f"I could not read the hypernetwork `{ref.name}` ({type(error).__name__}); upload it again."
                ) from error
        self._built[ref.sha256] = loaded.to(device)
        while len(self._built) > self.keep:
            self._built.popitem(last=False)
        return loaded

    @contextlib.contextmanager
    def applied(self, pipe: Any, refs: Sequence[AssetRef]) -> Iterator[None]:
        """`refs` (with their weights) on the pipeline's UNet attention for the block."""
        if not refs:
            yield
            return
        unet = getattr(pipe, "unet", None)
        if unet is None:  # the command layer refuses them on transformer models (model_fit)
            raise EngineUserError("hypernetworks work on SD 1.x and 2.x models (their UNet's attention); this model has none.")
        device = next(unet.parameters()).device
        handles = attach(unet, [(self._get(ref, device), ref.weight) for ref in refs])
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def attention_widths(unet: torch.nn.Module) -> list[int]:
    """The widths of the features every attention of the UNet computes its keys and values from,
    the widths a hypernetwork for it has modules for: the text's first (cross-attention), then the
    UNet's own (self-attention), as A1111's default `enable_sizes` for SD 1.x (768, 320, 640, 1280)."""
    text: set[int] = set()
    own: set[int] = set()
    for name, module in unet.named_modules():
        if name.endswith(("attn1", "attn2")) and hasattr(module, "to_k"):
            (text if name.endswith("attn2") else own).add(module.to_k.in_features)
    return sorted(text) + sorted(own - text)


def attach(unet: torch.nn.Module, chain: list[tuple[Loaded, float]]) -> list[Any]:
    """Pre-hooks on the keys' and values' projections of every attention of the UNet applying
    `chain` (hypernetworks and their weights, in turn); the handles, to remove them."""
    handles = []
    for name, module in unet.named_modules():
        if not name.endswith(("attn1", "attn2")) or not hasattr(module, "to_k"):
            continue
        handles.append(module.to_k.register_forward_pre_hook(_hook(chain, 0)))
        handles.append(module.to_v.register_forward_pre_hook(_hook(chain, 1)))
    return handles


def _hook(chain: list[tuple[Loaded, float]], which: int) -> Any:
    """A pre-hook changing the projection's input as A1111's `apply_single_hypernetwork` does,
    for each hypernetwork in turn (`which`: 0 keys, 1 values)."""

    def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        x = args[0]
        changed = False
        for loaded, weight in chain:
            pair = loaded.modules.get(x.shape[-1])
            if pair is None:
                continue
            features = x.float()
            x = (features + pair[which](features) * weight).to(args[0].dtype)
            changed = True
        return (x, *args[1:]) if changed else None

    return hook
