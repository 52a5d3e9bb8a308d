"""Super-resolution upscalers (generation/imaging/upscalers.py) on random-weight models of real architectures.

What each test proves:
- test_loads_by_detection: ESRGAN (old and Real-ESRGAN key layouts, 4x, 2x, and the pixel-unshuffle
  2x "x2plus" variant), Real-ESRGAN Compact and SwinIR files load through spandrel's detection
  with the right scale, architecture and name, on the CPU in float32, in eval mode.
- test_exact_size_and_passes: output size is exactly round(w * factor) x round(h * factor) for a 4x
  and a 2x model at factors 2, 4 (and 2.5 on odd sizes); the model runs once when its scale is
  enough and twice (2x model, factor 4) otherwise, counted by a forward hook; a 4x model asked for
  2x gives its 4x result reduced with Lanczos.
- test_tiled_matches_untiled: tiled output equals the untiled one up to rounding (max 2/255;
  measured 1/255), with several tiles really run (forward hook), including a model that needs
  sizes in multiples of 4 and unshuffles inside (tile starts must stay on its grid) and SwinIR
  (attention windows). The same tiles pasted without overlap differ by far more. Checked by
  breaking the code: plain averaging of overlaps (up to 74/255), a ramp starting at the cut edge
  instead of dropping the outer half of the overlap (up to 11/255) and tile starts off the
  unshuffle grid (118/255) each fail this test.
- test_small_and_odd_images: images smaller than a model's minimum size, or not a multiple of its
  `multiple_of`, come out at the exact size (spandrel's padding, cropped back), tiled or not.
- test_should_stop_cancels: should_stop is asked before every tile and stops the job with
  JobCancelled; tile=None asks before the pass.
- test_out_of_memory_*: an OOM in a tile retries once with half the tile size (logged) and gives
  the right result; OOM again, or untiled, becomes an EngineUserError saying what happened.
- test_refuses_pickles: a .pth/.pt/.ckpt/.bin file is refused with a message about safetensors
  before anything unpickles it: its payload would create a marker file, which never appears
  (and the payload is shown to work when really unpickled).
- test_refuses_*: missing file, a safetensors file spandrel cannot detect, one that is not
  safetensors at all, and a 1x restoration model each give a ModelLoadError saying what is wrong.
- test_dtype_*, test_mode_and_factor_*: float32 on the CPU whatever dtype is asked; RGBA/L input
  gives RGB output; factor 1 returns a copy; factor < 1 and bad tile/overlap are ValueErrors.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generation.errors import EngineUserError, JobCancelled, ModelLoadError
from generation.imaging.upscalers import Upscaler, load_upscaler
from tests.support import sr_models

# SwinIR's window code calls torch.meshgrid without `indexing` (inside spandrel, not here).
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

CPU = torch.device("cpu")
MODELS = {
    "esrgan4": lambda path: sr_models.write_esrgan(path, scale=4),
    "esrgan2": lambda path: sr_models.write_esrgan(path, scale=2, layout="new"),
    "esrgan2_unshuffle": lambda path: sr_models.write_esrgan(path, scale=2, layout="new", unshuffle=True),
    "compact4": lambda path: sr_models.write_compact(path, scale=4),
    "swinir2": lambda path: sr_models.write_swinir(path, scale=2),
}
EXPECTED = {
    "esrgan4": ("ESRGAN", 4),
    "esrgan2": ("ESRGAN", 2),
    "esrgan2_unshuffle": ("ESRGAN", 2),
    "compact4": ("Compact", 4),
    "swinir2": ("SwinIR", 2),
}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sr")
    return {name: write(folder / f"{name}.safetensors") for name, write in MODELS.items()}


@pytest.fixture(scope="module")
def upscalers(model_files: dict[str, Path]) -> dict[str, Upscaler]:
    return {name: load_upscaler(path, CPU, torch.float32) for name, path in model_files.items()}


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour areas with noise on top: both flat regions and detail at every tile edge."""
    rng = np.random.default_rng(seed)
    smooth = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 25, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(smooth, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


@contextlib.contextmanager
def forward_calls(upscaler: Upscaler) -> Iterator[list[tuple[int, ...]]]:
    """The input shapes of every forward call of the model while the block runs."""
    calls: list[tuple[int, ...]] = []
    handle = upscaler.descriptor.model.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    try:
        yield calls
    finally:
        handle.remove()


def diff(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))


@pytest.mark.parametrize("name", list(MODELS))
def test_loads_by_detection(name: str, upscalers: dict[str, Upscaler]) -> None:
    upscaler = upscalers[name]
    assert (upscaler.architecture, upscaler.scale) == EXPECTED[name]
    assert upscaler.name == name
    assert upscaler.descriptor.purpose == "SR"
    assert upscaler.descriptor.device == CPU and upscaler.descriptor.dtype == torch.float32
    assert not upscaler.descriptor.model.training


@pytest.mark.parametrize("name", ["esrgan4", "esrgan2"])
@pytest.mark.parametrize(("size", "factor"), [((40, 32), 2), ((40, 32), 4), ((33, 21), 2.5)])
def test_exact_size_and_passes(name: str, size: tuple[int, int], factor: float, upscalers: dict[str, Upscaler]) -> None:
    upscaler = upscalers[name]
    with forward_calls(upscaler) as calls:
        out = upscaler.upscale(picture(*size), factor, tile=None)
    assert out.size == (round(size[0] * factor), round(size[1] * factor)) and out.mode == "RGB"
    assert len(calls) == (2 if upscaler.scale < factor else 1)  # 2x model twice for 2.5 and 4


def test_overshoot_is_lanczos_of_the_model_result(upscalers: dict[str, Upscaler]) -> None:
    image = picture(40, 32)
    full = upscalers["esrgan4"].upscale(image, 4, tile=None)
    half = upscalers["esrgan4"].upscale(image, 2, tile=None)
    assert half.tobytes() == full.resize((80, 64), Image.Resampling.LANCZOS).tobytes()


# Odd sizes put the last tile at an offset that is not a multiple of 4, so a tile grid ignoring
# the unshuffle model's `multiple_of` would fail here. SwinIR gets a multiple of its window (8):
# it pads the whole image to that multiple internally (reflect) while a tile ending at the border
# needs no padding, so at odd sizes the last pixel rows legitimately differ (up to 44/255 here).
@pytest.mark.parametrize(
    ("name", "factor", "size"),
    [
        ("esrgan4", 4, (57, 41)),
        ("esrgan2", 4, (57, 41)),
        ("esrgan2_unshuffle", 2, (57, 41)),
        ("compact4", 4, (57, 41)),
        ("swinir2", 2, (56, 40)),
    ],
)
def test_tiled_matches_untiled(name: str, factor: int, size: tuple[int, int], upscalers: dict[str, Upscaler]) -> None:
    upscaler = upscalers[name]
    image = picture(*size)
    whole = upscaler.upscale(image, factor, tile=None)
    with forward_calls(upscaler) as calls:
        tiled = upscaler.upscale(image, factor, tile=32, overlap=16)
    assert len(calls) >= 6 and all(shape[-1] <= 32 * upscaler.scale for shape in calls)
    assert tiled.size == whole.size
    assert diff(tiled, whole).max() <= 2  # measured: 1 (rounding of the blend)
    # Sensitivity: the same tiles without overlap (each pasted as it came out) show their seams.
    pasted = upscaler.upscale(image, factor, tile=32, overlap=0)
    assert diff(pasted, whole).max() >= 5


@pytest.mark.parametrize(("name", "size"), [("swinir2", (10, 13)), ("esrgan2_unshuffle", (27, 19)), ("esrgan4", (1, 1))])
@pytest.mark.parametrize("tile", [None, 16])
def test_small_and_odd_images(name: str, size: tuple[int, int], tile: int | None, upscalers: dict[str, Upscaler]) -> None:
    out = upscalers[name].upscale(picture(*size), 2, tile=tile, overlap=4)
    assert out.size == (size[0] * 2, size[1] * 2)


def test_should_stop_cancels(upscalers: dict[str, Upscaler]) -> None:
    upscaler = upscalers["esrgan4"]
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    with forward_calls(upscaler) as calls, pytest.raises(JobCancelled):
        upscaler.upscale(picture(64, 64), 4, tile=24, overlap=8, should_stop=should_stop)
    assert len(calls) == 3  # three tiles ran, the fourth was never started
    with forward_calls(upscaler) as calls, pytest.raises(JobCancelled):
        upscaler.upscale(picture(16, 16), 4, tile=None, should_stop=lambda: True)
    assert calls == []


@contextlib.contextmanager
def out_of_memory_above(upscaler: Upscaler, side: int) -> Iterator[None]:
    """The model raises CUDA's out-of-memory error for inputs wider or taller than `side`."""

    def check(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if max(args[0].shape[-2:]) > side:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = upscaler.descriptor.model.register_forward_pre_hook(check)
    try:
        yield
    finally:
        handle.remove()


def test_out_of_memory_retries_with_half_tiles(upscalers: dict[str, Upscaler], caplog: pytest.LogCaptureFixture) -> None:
    upscaler = upscalers["esrgan4"]
    image = picture(48, 40)
    whole = upscaler.upscale(image, 4, tile=None)
    with out_of_memory_above(upscaler, 24), caplog.at_level(logging.WARNING, "generation.imaging.upscalers"):
        tiled = upscaler.upscale(image, 4, tile=48, overlap=8)
    assert "retrying with 24 px" in caplog.text
    assert diff(tiled, whole).max() <= 2


def test_out_of_memory_twice_or_untiled_is_a_user_error(upscalers: dict[str, Upscaler]) -> None:
    upscaler = upscalers["esrgan4"]
    with out_of_memory_above(upscaler, 8), pytest.raises(EngineUserError, match="even in 24 px tiles"):
        upscaler.upscale(picture(48, 40), 4, tile=48, overlap=8)
    with out_of_memory_above(upscaler, 8), pytest.raises(EngineUserError, match="in one piece"):
        upscaler.upscale(picture(48, 40), 4, tile=None)


class _Payload:
    """Unpickling this touches `marker`: the stand-in for code hidden in a model file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".ckpt", ".bin"])
def test_refuses_pickles(suffix: str, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / f"4x-Model{suffix}"
    path.write_bytes(pickle.dumps({"params_ema": _Payload(marker)}))
    with pytest.raises(ModelLoadError) as caught:
        load_upscaler(path, CPU, torch.float32)
    assert not marker.exists()
    message = caught.value.message
    assert "safetensors" in message and "pickle" in message and "4x-Model.safetensors" in message
    pickle.loads(path.read_bytes())  # the payload is real: unpickling does run it
    assert marker.exists()


def test_refuses_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "4x-UltraSharp.safetensors"
    with pytest.raises(ModelLoadError, match="does not exist") as caught:
        load_upscaler(path, CPU, torch.float32)
    assert str(path) in caught.value.message


def test_refuses_undetectable(tmp_path: Path) -> None:
    path = sr_models.write_undetectable(tmp_path / "mystery.safetensors")
    with pytest.raises(ModelLoadError, match=r"`mystery.safetensors` is not a super-resolution model spandrel knows"):
        load_upscaler(path, CPU, torch.float32)


def test_refuses_non_safetensors_content(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="not a readable .safetensors"):
        load_upscaler(path, CPU, torch.float32)


def test_refuses_restoration_model(tmp_path: Path) -> None:
    path = sr_models.write_restoration(tmp_path / "1x-denoise.safetensors")
    with pytest.raises(ModelLoadError, match="1x restoration model") as caught:
        load_upscaler(path, CPU, torch.float32)
    assert "not a super-resolution model" in caught.value.message


def test_dtype_is_float32_on_cpu(model_files: dict[str, Path]) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        assert load_upscaler(model_files["esrgan4"], CPU, dtype).descriptor.dtype == torch.float32


def test_mode_and_factor_edges(upscalers: dict[str, Upscaler]) -> None:
    upscaler = upscalers["compact4"]
    rgba = picture(20, 12).convert("RGBA")
    assert upscaler.upscale(rgba, 2).mode == "RGB"
    assert upscaler.upscale(rgba.convert("L"), 2).size == (40, 24)
    same = upscaler.upscale(rgba, 1)
    assert same.size == (20, 12) and same.mode == "RGB"
    with pytest.raises(ValueError, match="at least 1"):
        upscaler.upscale(rgba, 0.5)
    with pytest.raises(ValueError, match="overlap"):
        upscaler.upscale(rgba, 2, tile=32, overlap=20)
