"""generation.imaging.segment: CLIPSeg masks from words, and the mask utilities of inpainting.

What each test proves:
- test_mask_is_a_binary_mask_of_the_image: a tiny CLIPSeg saved with save_pretrained loads offline
  through `load_segmenter`, and `mask()` returns an 'L' image of the input's size (non-square, so a
  width/height swap fails) holding only 0 and 255, for RGB, RGBA and palette inputs.
- test_threshold_is_a_probability: probabilities lie strictly inside (0, 1); threshold 0 selects
  every pixel and 1 none; the mask is exactly "probability > threshold"; out-of-range values and
  empty words are refused.
- test_several_words_are_a_union: "x, y" is exactly the pixelwise OR of "x" and "y", so it contains
  "x", and (at a threshold where it matters) strictly more than "x".
- test_mask_depends_on_words_and_image: at the median probability, other words and another image
  change a sizeable share of the mask. Checked to fail when the words are ignored (the tiny model
  is made text-sensitive for this; see tests/support/tiny_clipseg.py).
- test_dilation_grows_by_the_radius: dilation only adds pixels, and only within `dilate` px.
- test_hub_layout_loads: a folder laid out like CIDAS/clipseg-rd64-refined on the Hub (legacy
  preprocessor_config.json instead of processor_config.json) loads and gives the same masks.
- test_load_errors_name_the_setting: a missing folder, a folder that is not CLIPSeg, an uncached
  Hub id offline, and pickle-only weights each give a ModelLoadError naming SDBOT_SEGMENTER; the
  pickle is never loaded.
- test_blur_mask: 0 is the identity; N feathers an edge symmetrically, reaching exactly N px each side.
- test_composite_is_exact_outside_the_mask: bit-identical original where the mask is 0, the
  generated image where it is 255, a rounded blend in between, for RGB and RGBA.
- test_mask_box: the exclusive bounding box of nonzero pixels, None for an empty mask.
- test_crop_region_*: the crop contains the padded box, stays inside the image, has multiple-of-8
  sides, is small for a small mask in a big image, and hugs the edge for a box near one;
  `working_size` is a multiple-of-8 size of about target^2 pixels with the crop's aspect.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generation.errors import EngineUserError, ModelLoadError
from generation.imaging.segment import (
    MAX_ASPECT,
    Segmenter,
    blur_mask,
    composite,
    crop_region,
    load_segmenter,
    mask_box,
    working_size,
)
from tests.support.tiny_clipseg import build_tiny_clipseg

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clipseg(tmp_path_factory.mktemp("clipseg") / "tiny-clipseg")


@pytest.fixture(scope="module")
def segmenter(tiny_folder: Path) -> Segmenter:
    return load_segmenter(tiny_folder, CPU)


def picture(seed: int, width: int = 80, height: int = 48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask) > 0


def test_mask_is_a_binary_mask_of_the_image(segmenter: Segmenter) -> None:
    image = picture(0)
    for variant in (image, image.convert("RGBA"), image.convert("P")):
        mask = segmenter.mask(variant, "a hat", threshold=0.45)
        assert mask.mode == "L" and mask.size == image.size == (80, 48)
        assert set(np.unique(np.asarray(mask))) <= {0, 255}


def test_threshold_is_a_probability(segmenter: Segmenter) -> None:
    image = picture(1)
    probs = segmenter.probabilities(image, "hat")
    assert probs.shape == (48, 80) and probs.dtype == np.float64
    assert probs.min() > 0 and probs.max() < 1
    assert np.all(np.asarray(segmenter.mask(image, "hat", threshold=0.0)) == 255)
    assert np.all(np.asarray(segmenter.mask(image, "hat", threshold=1.0)) == 0)
    middle = float(np.median(probs))
    assert np.array_equal(pixels(segmenter.mask(image, "hat", threshold=middle)), probs > middle)
    with pytest.raises(ValueError):
        segmenter.mask(image, "hat", threshold=1.5)
    with pytest.raises(EngineUserError):
        segmenter.mask(image, " , ")


def test_several_words_are_a_union(segmenter: Segmenter) -> None:
    image = picture(2)
    threshold = float(np.median(segmenter.probabilities(image, "hat")))
    hat = pixels(segmenter.mask(image, "hat", threshold=threshold))
    scarf = pixels(segmenter.mask(image, "red scarf", threshold=threshold))
    both = pixels(segmenter.mask(image, "hat, red scarf", threshold=threshold))
    assert np.array_equal(both, hat | scarf)
    assert np.all(both[hat])  # contains "hat" ...
    assert both.sum() > hat.sum()  # ... and more, so the containment above is not vacuous


def test_mask_depends_on_words_and_image(segmenter: Segmenter) -> None:
    image, other = picture(3), picture(4)
    threshold = float(np.median(segmenter.probabilities(image, "hat")))
    hat = pixels(segmenter.mask(image, "hat", threshold=threshold))
    assert 0.3 < hat.mean() < 0.7  # the median splits the image: neither mask below is trivial
    for words in ("dog", "the sky"):
        changed = (pixels(segmenter.mask(image, words, threshold=threshold)) != hat).mean()
        assert changed > 0.1, words  # ~0.2-0.3 measured; identical masks if words were ignored
    changed = (pixels(segmenter.mask(other, "hat", threshold=threshold)) != hat).mean()
    assert changed > 0.1


def test_dilation_grows_by_the_radius(segmenter: Segmenter) -> None:
    import cv2

    image = picture(5, 96, 64)
    threshold = float(np.quantile(segmenter.probabilities(image, "hat"), 0.9))  # scattered islands
    plain = pixels(segmenter.mask(image, "hat", threshold=threshold))
    grown = pixels(segmenter.mask(image, "hat", threshold=threshold, dilate=3))
    assert np.all(grown[plain]) and grown.sum() > plain.sum()
    # distance of every pixel to the nearest selected one: the growth reaches 3 px, not beyond
    distance = cv2.distanceTransform((~plain).astype(np.uint8), cv2.DIST_L2, 5)
    assert distance[grown].max() <= 3.2
    assert np.all(grown[distance <= 2.9])


def test_hub_layout_loads(tiny_folder: Path, segmenter: Segmenter, tmp_path: Path) -> None:
    legacy = shutil.copytree(tiny_folder, tmp_path / "legacy")
    processor = json.loads((legacy / "processor_config.json").read_text())
    (legacy / "processor_config.json").unlink()
    image_config = {**processor["image_processor"], "processor_class": "CLIPSegProcessor"}
    (legacy / "preprocessor_config.json").write_text(json.dumps(image_config))
    image = picture(6)
    expected = np.asarray(segmenter.mask(image, "hat", threshold=0.47))
    assert np.array_equal(np.asarray(load_segmenter(str(legacy), CPU).mask(image, "hat", threshold=0.47)), expected)


def test_load_errors_name_the_setting(tiny_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="SDBOT_SEGMENTER") as missing:
        load_segmenter(tmp_path / "nowhere", CPU)
    assert "does not exist" in missing.value.message

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="SDBOT_SEGMENTER"):
        load_segmenter(tmp_path / "empty", CPU)

    with pytest.raises(ModelLoadError, match="SDBOT_SEGMENTER") as offline:
        load_segmenter("sdbot-tests/no-such-clipseg", CPU)  # conftest sets HF_HUB_OFFLINE=1
    assert "HF_HUB_OFFLINE" in offline.value.message and "once" in offline.value.message

    pickled = shutil.copytree(tiny_folder, tmp_path / "pickled")
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not even a pickle")  # loading it would fail differently
    with pytest.raises(ModelLoadError, match="SDBOT_SEGMENTER") as pickle_only:
        load_segmenter(pickled, CPU)
    assert ".safetensors" in pickle_only.value.message


def test_blur_mask() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 255
    image = Image.fromarray(mask)
    assert blur_mask(image, 0).tobytes() == image.tobytes() and blur_mask(image, 0).mode == "L"
    blurred = np.asarray(blur_mask(image, 4)).astype(int)
    assert blurred.shape == (40, 40)
    row = blurred[20]
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)
    assert 0 < row[18] < 128 < row[21] < 255  # feathered across the edge
    assert abs(int(row[19]) + int(row[20]) - 255) <= 1  # and symmetric about it
    assert row[15] == 0 < row[16] and row[23] < 255 == row[24]  # it reaches exactly 4 px past each side of the edge


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_composite_is_exact_outside_the_mask(mode: str) -> None:
    rng = np.random.default_rng(7)
    channels = len(mode)
    original = Image.fromarray(rng.integers(0, 256, (32, 48, channels), dtype=np.uint8))
    generated = Image.fromarray(rng.integers(0, 256, (32, 48, channels), dtype=np.uint8))
    alpha = rng.integers(0, 256, (32, 48), dtype=np.uint8)
    alpha[:10] = 0
    alpha[-10:] = 255
    result = np.asarray(composite(original, generated, Image.fromarray(alpha)))
    assert composite(original, generated, Image.fromarray(alpha)).mode == mode
    o, g = np.asarray(original), np.asarray(generated)
    assert np.array_equal(result[alpha == 0], o[alpha == 0])
    assert np.array_equal(result[alpha == 255], g[alpha == 255])
    a = alpha[..., None].astype(float) / 255
    assert np.abs(result - (o * (1 - a) + g * a)).max() <= 0.5 + 1e-9  # a rounded blend between
    with pytest.raises(ValueError):
        composite(original, generated.resize((48, 48)), Image.fromarray(alpha))


def test_mask_box() -> None:
    mask = np.zeros((50, 60), np.uint8)
    assert mask_box(Image.fromarray(mask)) is None
    mask[10:20, 5:42] = 255
    mask[30, 50] = 1
    assert mask_box(Image.fromarray(mask)) == (5, 10, 51, 31)


def _check_crop(box, size, padding, target) -> tuple[int, int, int, int]:  # type: ignore[no-untyped-def]
    crop = crop_region(box, size, padding, target)
    padded = (max(0, box[0] - padding), max(0, box[1] - padding), min(size[0], box[2] + padding), min(size[1], box[3] + padding))
    assert crop[0] <= padded[0] and crop[1] <= padded[1] and crop[2] >= padded[2] and crop[3] >= padded[3], (box, crop)
    assert 0 <= crop[0] < crop[2] <= size[0] and 0 <= crop[1] < crop[3] <= size[1], (box, crop)
    return crop


def test_crop_region_properties() -> None:
    rng = random.Random(8)
    for _ in range(500):
        size = (rng.randrange(8, 260) * 8, rng.randrange(8, 260) * 8)
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x0, y0, rng.randint(x0 + 1, size[0]), rng.randint(y0 + 1, size[1]))
        crop = _check_crop(box, size, rng.randrange(0, 65), rng.choice([512, 768, 1024]))
        assert (crop[2] - crop[0]) % 8 == 0 and (crop[3] - crop[1]) % 8 == 0, (size, box, crop)


def test_crop_region_small_mask_in_big_image() -> None:
    crop = _check_crop((1000, 1000, 1100, 1050), (2048, 2048), 32, 512)
    width, height = crop[2] - crop[0], crop[3] - crop[1]
    assert width <= 176 and height <= 128  # the padded box (164 x 114) rounded to 8, nothing more
    assert 1 <= width / height <= MAX_ASPECT


def test_crop_region_near_edges() -> None:
    assert _check_crop((0, 0, 10, 10), (2048, 1024), 32, 512) == (0, 0, 48, 48)
    assert _check_crop((2040, 1016, 2048, 1024), (2048, 1024), 16, 512) == (2024, 1000, 2048, 1024)
    # a whole image side that is not a multiple of 8 is kept whole rather than cutting the mask
    crop = _check_crop((5, 3, 1000, 747), (1000, 750), 8, 512)
    assert crop == (0, 0, 1000, 750)


def test_working_size() -> None:
    for crop in [(0, 0, 168, 120), (10, 20, 2010, 1020), (0, 0, 48, 48), (0, 0, 1000, 750)]:
        width, height = working_size(crop, 512)
        assert width % 8 == 0 and height % 8 == 0
        assert abs(width * height / 512**2 - 1) < 0.1
        assert abs(width / height - (crop[2] - crop[0]) / (crop[3] - crop[1])) < 0.05
