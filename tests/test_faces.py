"""Face restoration (generation/imaging/faces.py): loading, pasting back, detection, refusals.

What each test proves:
- test_gfpgan_loads_through_detection_and_restores: a random-weight GFPGAN v1.x `.safetensors`
  (the real architecture, ~175 MB, written once per session) is recognised by spandrel's normal
  detection as a 512 px face model, an fp16 request falls back to float32 (GFPGAN does not run in
  fp16), and a restore through it changes the face and nothing outside the padded square.
- test_gfpgan_is_fed_and_read_in_minus_one_to_one: GFPGAN's module receives [-1, 1] (the range it
  was trained on, which spandrel's own call does not give it) and its [-1, 1] output maps back to
  the same pixels: an identity GFPGAN returns the face unchanged, dark half included.
- test_restoreformer_loads_through_detection: the same for a narrow RestoreFormer; name defaults to
  the file's stem.
- test_expand_box_is_a_centred_padded_square: the crop geometry, checked against numbers by hand.
- test_outside_the_padded_square_is_bit_identical / ..._inside_changed: with a real (random)
  model, every pixel outside the padded square is exactly the input, and the face itself changed.
- test_strength_blends_linearly_and_zero_is_the_original: strength 1 pastes the restored face at
  the centre and fades to (almost) nothing at the padded square's edge, 0.5 lands halfway, 0
  returns the input exactly.
- test_box_at_the_edge: boxes at corners and one larger than the image work (reflection), the
  size is kept, pixels outside the padded squares are untouched; with the real model too.
- test_should_stop_between_faces: cancelling after the first face raises JobCancelled and
  restores no second face.
- test_alpha_is_kept: an RGBA image keeps its alpha channel.
- test_no_face_in_noise_or_flat_colour: the Haar cascade finds nothing in noise, a flat colour or
  a gradient.
- test_drawn_face_is_found / test_two_faces_biggest_first / test_min_size: a schematic face drawn
  with Pillow (tests/support/face_models.face_image) is found by the Haar cascade, with a box around the
  drawing; two faces come biggest first; min_size drops faces smaller than it.
- test_yunet_refuses_other_files: a detector file that is not ONNX, a missing one and a corrupt
  one are refused with a ModelLoadError naming the path.
- test_pickle_is_never_unpickled: a `.pth` whose unpickling would create a marker file is refused
  (message names safetensors) and the marker never appears; a control shows the payload works.
- test_missing_corrupt_and_non_face_files: missing file, garbage bytes, random tensors, a real
  upscaler (not a face model) and a file that only looks like a face model (one marker key, so
  spandrel's detection runs and fails) each get a clear ModelLoadError. (CodeFormer files, which
  need spandrel_extra_arches, are tested in tests/test_codeformer.py.)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from generation.errors import JobCancelled, ModelLoadError
from generation.imaging.faces import FaceBox, FaceDetector, FaceRestorer, expand_box, load_face_restorer, restore_faces
from tests.support.face_models import (
    face_image,
    write_gfpgan,
    write_not_a_face_model,
    write_restoreformer,
    write_upscaler,
)

CPU = torch.device("cpu")
BOX = FaceBox(96, 80, 64, 80)  # padded square at 0.3: side 128, left 64, top 56


@pytest.fixture(scope="session")
def face_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faces")


@pytest.fixture(scope="session")
def restoreformer(face_dir: Path) -> FaceRestorer:
    return load_face_restorer(write_restoreformer(face_dir / "rf-tiny.safetensors"), CPU, torch.float32)


def sample_image(size: int = 256, seed: int = 0) -> Image.Image:
    """A gradient with some noise: smooth enough to look like a picture, busy enough to change."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.float32) * (255 / size)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def changed_outside(before: Image.Image, after: Image.Image, squares: list[FaceBox]) -> int:
    """How many pixels outside every padded square differ (must be 0)."""
    outside = np.ones((before.height, before.width), dtype=bool)
    for square in squares:
        outside[max(square.y, 0) : square.y + square.height, max(square.x, 0) : square.x + square.width] = False
    return int((np.asarray(before)[outside] != np.asarray(after)[outside]).any(-1).sum())


class ConstantRestorer(FaceRestorer):
    """Restores every face to one colour and counts calls: blending and cancelling, without a model."""

    def __init__(self, colour: tuple[int, int, int] = (255, 255, 255)):
        super().__init__("constant", "test", 512, None)
        self.colour = colour
        self.calls = 0

    def restore(self, face: Image.Image) -> Image.Image:
        self.calls += 1
        return Image.new("RGB", face.size, self.colour)


# --- loading ------------------------------------------------------------------------------------


def test_gfpgan_loads_through_detection_and_restores(face_dir: Path) -> None:
    restorer = load_face_restorer(write_gfpgan(face_dir / "GFPGANv1.4-random.safetensors"), CPU, torch.float16)
    assert (restorer.architecture, restorer.size, restorer.name) == ("GFPGAN", 512, "GFPGANv1.4-random")
    assert restorer.descriptor.purpose == "FaceSR"
    assert restorer.descriptor.dtype == torch.float32  # GFPGAN does not support fp16
    image = sample_image()
    out = restore_faces(image, [BOX], restorer)
    assert out.size == image.size and out.mode == "RGB"
    assert changed_outside(image, out, [expand_box(BOX, 0.3)]) == 0
    face = (slice(BOX.y, BOX.y + BOX.height), slice(BOX.x, BOX.x + BOX.width))
    assert np.abs(np.asarray(out, dtype=int)[face] - np.asarray(image, dtype=int)[face]).mean() > 10


def test_gfpgan_is_fed_and_read_in_minus_one_to_one() -> None:
    seen: list[torch.Tensor] = []

    class IdentityGFPGAN(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_rgb: bool = True, randomize_noise: bool = True) -> tuple:
            assert return_rgb is False and randomize_noise is False  # no unused RGBs, repeatable noise
            seen.append(x.clone())
            return x, []

    class Descriptor:
        model = IdentityGFPGAN()
        device, dtype = CPU, torch.float32

    face = sample_image(512)
    out = FaceRestorer("id", "GFPGAN", 512, Descriptor()).restore(face)
    assert seen[0].min() < -0.9 and seen[0].max() > 0.9  # the full [-1, 1] range, not [0, 1]
    assert np.array_equal(np.asarray(out), np.asarray(face))


def test_restoreformer_loads_through_detection(restoreformer: FaceRestorer, face_dir: Path) -> None:
    assert (restoreformer.architecture, restoreformer.size, restoreformer.name) == ("RestoreFormer", 512, "rf-tiny")
    assert restoreformer.descriptor.purpose == "FaceSR"
    half = load_face_restorer(face_dir / "rf-tiny.safetensors", CPU, torch.float16, name="rf")
    assert half.name == "rf" and half.descriptor.dtype == torch.float32


# --- pasting back ---------------------------------------------------------------------------------


def test_expand_box_is_a_centred_padded_square() -> None:
    assert expand_box(BOX, 0.3) == FaceBox(64, 56, 128, 128)  # longest side 80 * 1.6, same centre (128, 120)
    assert expand_box(FaceBox(10, 10, 50, 20), 0.0) == FaceBox(10, -5, 50, 50)  # may reach past the image


@pytest.fixture(scope="module")
def restored(restoreformer: FaceRestorer) -> tuple[Image.Image, Image.Image]:
    image = sample_image()
    return image, restore_faces(image, [BOX], restoreformer)


def test_outside_the_padded_square_is_bit_identical(restored: tuple[Image.Image, Image.Image]) -> None:
    image, out = restored
    assert out.size == image.size
    assert changed_outside(image, out, [expand_box(BOX, 0.3)]) == 0


def test_inside_changed(restored: tuple[Image.Image, Image.Image]) -> None:
    image, out = restored
    face = (slice(BOX.y, BOX.y + BOX.height), slice(BOX.x, BOX.x + BOX.width))
    differs = (np.asarray(out)[face] != np.asarray(image)[face]).any(-1)
    assert differs.mean() > 0.95


def test_strength_blends_linearly_and_zero_is_the_original() -> None:
    image = sample_image()
    cy, cx = BOX.y + BOX.height // 2, BOX.x + BOX.width // 2
    original = np.asarray(image, dtype=float)[cy, cx]
    full = np.asarray(restore_faces(image, [BOX], ConstantRestorer()), dtype=float)[cy, cx]
    half = np.asarray(restore_faces(image, [BOX], ConstantRestorer(), strength=0.5), dtype=float)[cy, cx]
    assert np.array_equal(full, [255, 255, 255])  # the mask is fully on at the face's centre
    # ...and fades out towards the square's edge: its outermost ring of pixels barely moves.
    square = expand_box(BOX, 0.3)
    pasted = np.asarray(restore_faces(image, [BOX], ConstantRestorer()), dtype=int)
    ring = np.ones((square.height, square.width), dtype=bool)
    ring[1:-1, 1:-1] = False
    inside_square = (slice(square.y, square.y + square.height), slice(square.x, square.x + square.width))
    assert np.abs(pasted[inside_square][ring] - np.asarray(image, dtype=int)[inside_square][ring]).max() <= 1
    assert np.abs(half - (original + 255) / 2).max() <= 1
    zero = ConstantRestorer()
    assert np.array_equal(np.asarray(restore_faces(image, [BOX], zero, strength=0.0)), np.asarray(image))
    assert zero.calls == 0  # nothing to blend, so nothing is run
    with pytest.raises(ValueError):
        restore_faces(image, [BOX], zero, strength=1.5)


def test_box_at_the_edge(restoreformer: FaceRestorer) -> None:
    image = sample_image()
    corner = FaceBox(0, 0, 50, 60)
    out = restore_faces(image, [corner], restoreformer)
    assert out.size == image.size
    assert changed_outside(image, out, [expand_box(corner, 0.3)]) == 0
    assert (np.asarray(out)[:60, :50] != np.asarray(image)[:60, :50]).any(-1).mean() > 0.9
    # The far corner, a box poking out of the image, and one bigger than the whole image.
    boxes = [FaceBox(220, 210, 36, 46), FaceBox(240, -20, 40, 40), FaceBox(-50, -50, 400, 400)]
    for box in boxes:
        out = restore_faces(image, [box], ConstantRestorer(), padding=0.5)
        assert out.size == image.size
        assert changed_outside(image, out, [expand_box(box, 0.5)]) == 0
        assert out.getpixel((min(max(box.x + box.width // 2, 0), 255), min(max(box.y + box.height // 2, 0), 255))) == (255, 255, 255)


def test_should_stop_between_faces() -> None:
    restorer = ConstantRestorer()
    checks = iter([False, True])
    with pytest.raises(JobCancelled):
        restore_faces(sample_image(), [BOX, FaceBox(10, 10, 40, 40)], restorer, should_stop=lambda: next(checks))
    assert restorer.calls == 1


def test_alpha_is_kept() -> None:
    image = sample_image().convert("RGBA")
    image.putalpha(Image.new("L", image.size, 77))
    out = restore_faces(image, [BOX], ConstantRestorer())
    assert out.mode == "RGBA" and out.getchannel("A").getextrema() == (77, 77)


# --- detection ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_no_face_in_noise_or_flat_colour(detector: FaceDetector) -> None:
    for seed in range(5):
        noise = np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        assert detector.detect(Image.fromarray(noise)) == []
    assert detector.detect(Image.new("RGB", (256, 256), (120, 140, 160))) == []
    assert detector.detect(sample_image()) == []


@pytest.mark.parametrize(("cx", "cy", "width"), [(200, 150, 120), (120, 170, 100), (300, 120, 60)])
def test_drawn_face_is_found(detector: FaceDetector, cx: int, cy: int, width: int) -> None:
    [box] = detector.detect(face_image((400, 300), [(cx, cy, width)]))
    assert abs(box.x + box.width / 2 - cx) < width * 0.25
    assert abs(box.y + box.height / 2 - cy) < width * 0.25
    assert 0.9 * width < box.width < 1.8 * width


def test_two_faces_biggest_first(detector: FaceDetector) -> None:
    boxes = detector.detect(face_image((512, 320), [(390, 150, 100), (150, 160, 140)]))
    assert len(boxes) == 2
    assert boxes[0].width > boxes[1].width
    assert boxes[0].x < 150 < boxes[0].x + boxes[0].width and boxes[1].x < 390 < boxes[1].x + boxes[1].width


def test_min_size(detector: FaceDetector) -> None:
    image = face_image((400, 300), [(200, 150, 100)])
    assert len(detector.detect(image, min_size=100)) == 1  # its box is ~144 px
    assert detector.detect(image, min_size=200) == []


def test_yunet_refuses_other_files(face_dir: Path) -> None:
    not_onnx = write_not_a_face_model(face_dir / "detector.safetensors")
    with pytest.raises(ModelLoadError, match="detector.safetensors") as error:
        FaceDetector(not_onnx)
    assert "ONNX" in error.value.message
    with pytest.raises(ModelLoadError, match="does not exist"):
        FaceDetector(face_dir / "face_detection_yunet_2023mar.onnx")
    corrupt = face_dir / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf at all" * 50)
    with pytest.raises(ModelLoadError, match="corrupt.onnx"):
        FaceDetector(corrupt)


# --- refusals -------------------------------------------------------------------------------------


class _TouchesOnUnpickle:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))  # unpickling opens (creates) the marker file


def test_pickle_is_never_unpickled(tmp_path: Path) -> None:
    for suffix in (".pth", ".pt", ".ckpt", ".bin"):
        marker = tmp_path / f"pwned{suffix}"
        path = tmp_path / f"GFPGANv1.4{suffix}"
        path.write_bytes(pickle.dumps({"params_ema": _TouchesOnUnpickle(marker)}))
        with pytest.raises(ModelLoadError) as error:
            load_face_restorer(path, CPU, torch.float32)
        assert ".safetensors" in error.value.message and "run code" in error.value.message
        assert not marker.exists()
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_TouchesOnUnpickle(control))).close()
    assert control.exists()  # the payload is real: loading the file would have created the marker


def test_missing_corrupt_and_non_face_files(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.safetensors": "does not exist",
        tmp_path / "corrupt.safetensors": "not a readable .safetensors",
        write_not_a_face_model(tmp_path / "random.safetensors"): "not a face restoration model",
        write_upscaler(tmp_path / "2x-compact.safetensors"): "not a face restoration model",
        tmp_path / "face.onnx": "not a .safetensors file",
        tmp_path / "lookalike.safetensors": "not a face restoration model",
    }
    save_file({"quantize.embedding.weight": torch.zeros(4, 4)}, str(tmp_path / "lookalike.safetensors"))
    (tmp_path / "corrupt.safetensors").write_bytes(b"\xff" * 64)
    for path, expected in cases.items():
        with pytest.raises(ModelLoadError) as error:
            load_face_restorer(path, CPU, torch.float32)
        assert expected in error.value.message, error.value.message
        assert path.name in error.value.message
