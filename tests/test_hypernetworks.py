"""A1111 hypernetworks: a `.pt` saved as A1111 saves one (built here with `torch.save`) is read
without running code, stored as `.safetensors`, fit-checked, and drawn through the engine and the
chat equal to a reference of A1111's forward written here from its code (`HypernetworkModule`:
`x + linear(x) * multiplier` on the keys' and values' inputs of every attention, by width) within
2/255; a `.pt` carrying a code-running payload is refused and the payload never runs."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from commands.frame.types import Attachment
from generation.assets.files import AssetError, prepare_upload
from generation.assets.hypernetwork_files import Structure, read_pt
from generation.models.tiny import ensure_tiny
from tests.test_service import make_bot, pixels

PROMPT = "a red fox in the snow"
WIDTHS = (32, 64)  # the tiny model's text features (32) and UNet blocks (32, 64)
MARKER = "hypernet-payload-ran"


def a1111_modules(width: int, structure: dict[str, Any], generator: torch.Generator) -> torch.nn.Sequential:
    """A1111's `HypernetworkModule.linear`, transcribed: Linear, activation (not after the last
    layer unless activate_output), LayerNorm, Dropout; weights drawn large enough to show."""
    sizes, activation = structure["layer_structure"], structure["activation_func"]
    dropout = structure.get("dropout_structure") or [0] * len(sizes)
    layers: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        linear = torch.nn.Linear(int(width * sizes[i]), int(width * sizes[i + 1]))
        with torch.no_grad():
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * 0.6 / linear.in_features**0.5)
            linear.bias.copy_(torch.randn(linear.bias.shape, generator=generator) * 0.1)
        layers.append(linear)
        if activation not in ("linear", None) and (i < len(sizes) - 2 or structure["activate_output"]):
            layers.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[activation]())
        if structure["is_layer_norm"]:
            layers.append(torch.nn.LayerNorm(int(width * sizes[i + 1])))
        if dropout[i + 1] > 0:
            layers.append(torch.nn.Dropout(p=dropout[i + 1]))
    return torch.nn.Sequential(*layers).eval()


DEFAULT = {"layer_structure": [1, 2, 1], "activation_func": "linear", "is_layer_norm": False, "activate_output": False}
FANCY = {
    "layer_structure": [1, 1.5, 1],
    "activation_func": "relu",
    "is_layer_norm": True,
    "activate_output": False,
    "use_dropout": True,
    "dropout_structure": [0, 0.3, 0],
}


def a1111_file(path: Path, structure: dict[str, Any], seed: int) -> dict[int, tuple[torch.nn.Sequential, torch.nn.Sequential]]:
    """A hypernetwork as A1111's `Hypernetwork.save` writes it, and its modules (for the reference)."""
    generator = torch.Generator().manual_seed(seed)
    layers = {width: (a1111_modules(width, structure, generator), a1111_modules(width, structure, generator)) for width in WIDTHS}
    saved: dict[Any, Any] = {  # HypernetworkModule's state dicts: its Sequential is `self.linear`
        width: tuple({f"linear.{key}": tensor for key, tensor in module.state_dict().items()} for module in pair)
        for width, pair in layers.items()
    }
    saved.update(structure, step=120, name=path.stem, weight_initialization="Normal", sd_checkpoint=None, optional_info=None)
    torch.save(saved, path)
    return layers


class A1111Attention:
    """diffusers' attention for the SD UNet with A1111's `apply_hypernetworks` before the keys and
    values: the reference the engine's hooks are checked against."""

    def __init__(self, layers: dict[int, tuple[torch.nn.Module, torch.nn.Module]], multiplier: float):
        self.layers, self.multiplier = layers, multiplier

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: Any = None,
        temb: Any = None,
        **_: Any,
    ) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        pair = self.layers.get(context.shape[2])
        context_k, context_v = context, context
        if pair is not None:
            context_k = context + pair[0](context) * self.multiplier
            context_v = context + pair[1](context) * self.multiplier
        query, key, value = attn.to_q(hidden_states), attn.to_k(context_k), attn.to_v(context_v)
        batch, heads = query.shape[0], attn.heads
        query, key, value = (t.view(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value).transpose(1, 2).reshape(batch, -1, heads * query.shape[-1])
        return attn.to_out[1](attn.to_out[0](out))


def reference(models_dir: Path, layers: dict[int, Any] | None, multiplier: float = 1.0) -> np.ndarray:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny(models_dir))
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    if layers is not None:
        pipe.unet.set_attn_processor(A1111Attention(layers, multiplier))
    image = pipe(
        PROMPT, num_inference_steps=4, guidance_scale=7.0, height=64, width=64, generator=torch.Generator("cpu").manual_seed(11)
    ).images[0]
    return np.asarray(image).astype(int)


def differ(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


# --- reading files -----------------------------------------------------------------------------


def test_a1111_files_are_read_with_their_structure(tmp_path: Path) -> None:
    a1111_file(tmp_path / "plain.pt", DEFAULT, 1)
    net = read_pt((tmp_path / "plain.pt").read_bytes(), "`plain.pt`")
    assert net.widths == WIDTHS and net.structure == Structure((1.0, 2.0, 1.0), "linear", False, False, ()) and net.steps == 120
    assert sorted(k for k in net.tensors if k.startswith("32.0.")) == ["32.0.0.bias", "32.0.0.weight", "32.0.1.bias", "32.0.1.weight"]
    a1111_file(tmp_path / "fancy.pt", FANCY, 2)  # activation, norm and dropout shift A1111's indices
    fancy = read_pt((tmp_path / "fancy.pt").read_bytes(), "`fancy.pt`")
    assert sorted(k for k in fancy.tensors if k.startswith("64.1.")) == [f"64.1.{i}.{p}" for i in (0, 2, 4, 5) for p in ("bias", "weight")]
    info, stored = prepare_upload((tmp_path / "fancy.pt").read_bytes(), "fancy.pt", kind="hypernetwork", max_bytes=2**30)
    assert (info.kind, info.format, info.widths, info.architecture) == ("hypernetwork", "a1111-hypernetwork", WIDTHS, None)
    again, _ = prepare_upload(stored, "fancy.safetensors", kind="hypernetwork", max_bytes=2**30)  # the stored form uploads too
    assert again.sha256 == info.sha256


class Payload:
    """What a malicious `.pt` carries: unpickling it calls os.system."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {MARKER}",))


def test_a_pt_carrying_code_is_refused_and_the_code_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({32: ({}, {}), "name": "evil", "layer_structure": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(AssetError, match=r"holds `posix.system` besides tensors, numbers and strings"):
        prepare_upload((tmp_path / "evil.pt").read_bytes(), "evil.pt", kind="hypernetwork", max_bytes=2**30)
    assert not (tmp_path / MARKER).exists()
    with pytest.raises(AssetError, match="pickle-based PyTorch file"):  # as a LoRA, a .pt is refused unread
        prepare_upload((tmp_path / "evil.pt").read_bytes(), "evil.pt", kind="lora", max_bytes=2**30)
    with pytest.raises(AssetError, match="not a PyTorch archive"):
        prepare_upload(b"not a zip", "junk.pt", kind="hypernetwork", max_bytes=2**30)
    assert not (tmp_path / MARKER).exists()


# --- through the chat ---------------------------------------------------------------------------


@pytest.fixture
async def bot(settings):  # type: ignore[no-untyped-def]
    from config import ModelEntry

    made = await make_bot(
        settings.model_copy(update={"models": {"tiny": ModelEntry(source="tiny"), "tiny-flux": ModelEntry(source="tiny-flux")}})
    )
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_upload_draw_and_equal_a1111s_forward(bot, tmp_path: Path, models_dir: Path) -> None:  # type: ignore[no-untyped-def]
    layers = a1111_file(tmp_path / "foxnet.pt", DEFAULT, 3)
    [(_, saved)] = await bot.send("/hypernetwork upload", attachments=(Attachment("foxnet.pt", (tmp_path / "foxnet.pt").read_bytes()),))
    assert (
        "Saved the hypernetwork `foxnet`" in saved.text and "widths 32, 64" in saved.text and "It fits your model `tiny`" in saved.text
    ), saved.text
    options = "--seed 11 --steps 4 --cfg 7 --size 64x64 --sampler Euler --model tiny"
    results = {}
    for weight in (1, 0.5, 0):
        [(_, queued)] = await bot.send(f"/imagine {PROMPT} <hypernet:foxnet:{weight}> {options}")
        assert f"· hypernet foxnet {weight:g} ·" in queued.text, queued.text
        [(_, done)] = await bot.finish()
        results[weight] = pixels(done.reply)
    await bot.send(f"/imagine {PROMPT} {options}")
    [(_, plain)] = await bot.finish()
    assert differ(results[1], reference(models_dir, layers, 1.0)) <= 2 and differ(results[0.5], reference(models_dir, layers, 0.5)) <= 2
    assert differ(results[1], pixels(plain.reply)) > 10 and differ(results[0], pixels(plain.reply)) == 0
    parameters = Image.open(io.BytesIO(Path(done.reply.images[0].path).read_bytes())).text["parameters"]  # type: ignore[attr-defined]
    assert "Hypernet: foxnet, Hypernet strength: 0" in parameters, parameters
    [(_, listed)] = await bot.send("/hypernetworks")
    assert "foxnet" in listed.text
    [(_, skipped)] = await bot.send(f"/imagine {PROMPT} <hypernet:foxnet:1> --model tiny-flux --steps 2")
    assert "Skipped the hypernetwork `foxnet`, which doesn't fit the model `tiny-flux`" in skipped.text, skipped.text
    [(_, unknown)] = await bot.send(f"/imagine {PROMPT} <hypernet:nobody:1>")
    assert unknown.kind == "error" and "I don't know a hypernetwork named `nobody`" in unknown.text
    await bot.finish()


async def test_a_structure_with_activation_norm_and_dropout_equals_a1111s(bot, tmp_path: Path, models_dir: Path) -> None:  # type: ignore[no-untyped-def]
    layers = a1111_file(tmp_path / "fancy.pt", FANCY, 4)
    await bot.send("/hypernetwork upload fancy", attachments=(Attachment("fancy.pt", (tmp_path / "fancy.pt").read_bytes()),))
    await bot.send(f"/imagine {PROMPT} <hypernet:fancy:0.8> --seed 11 --steps 4 --cfg 7 --size 64x64 --sampler Euler")
    [(_, done)] = await bot.finish()
    assert differ(pixels(done.reply), reference(models_dir, layers, 0.8)) <= 2
