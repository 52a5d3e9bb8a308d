"""ADetailer's pass in the engine (generation/jobs/detail.py, generation/imaging/detect.py), on
the tiny model at 64-128 px, through the real inpaint path: properties on pixels.

- test_detail_repaints_inside_the_face_box_and_nothing_beyond_its_feather: a face drawn with
  Pillow is found by OpenCV's Haar cascade (the real detector, no file), the Detail job repaints
  inside its box (it changes there) and every pixel farther than box + dilate + feather is the
  picture's own, bit for bit; the PNG says so with ADetailer's keys.
- test_drawing_with_detail_repaints_each_region_of_each_picture: a txt2img batch of two with
  `--detail face`, the regions injected at the detector seam (`Tools.region_detector`): each
  picture equals the same job without the pass outside its region's reach and differs inside;
  progress counts the detail steps (it ends at drawing + regions' steps, never past 100%).
- test_nothing_found_is_said_plainly: a drawing keeps its pictures and says which had no face
  (a note in the result); the Detail job fails with that sentence.
- test_decode_yolo: YOLOv8's output layout (and its transpose) to boxes in the picture's
  pixels, low scores dropped, overlaps suppressed.
- test_detectors_refuse_what_they_cannot_load: `--detail hand` without a detector names the
  setting; a `.pt` (a pickle) is refused before anything reads it; HOG sees nobody in noise or
  in a picture smaller than its window.
- test_parameters_read_back: the ADetailer keys, a second unit with ` 2nd`, parse back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.errors import EngineUserError, ModelLoadError
from generation.imaging.detect import HogPeopleDetector, decode_yolo, load_region_detector
from generation.imaging.faces import FaceBox, FaceDetector
from generation.jobs import render_job
from generation.models.loader import ModelCache
from generation.parameters import infotext, parse_infotext
from generation.spec import DetailSpec, GenerationSpec
from generation.tools import Tools
from storage.blobs import LocalBlobStore
from tests.support.face_models import face_image
from tests.test_edits_engine import pixels, put_png

REACH = 4 + 10  # the default dilate (4 px) and feather (10 px, A1111's mask blur 4)


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    device, dtype = torch.device("cpu"), torch.float32
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, device, dtype)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")), Tools(device=device, dtype=dtype))


def spec(**changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(kind="txt2img", prompt="a portrait", model="tiny", width=64, height=64, steps=4, cfg=7.0, sampler="Euler", seed=42, n=1)
    base.update(changes)
    return GenerationSpec(**base)


def within(box: FaceBox, reach: int, shape: tuple[int, ...]) -> np.ndarray:
    """Pixels within `reach` of the box (the feather is a square kernel: reach in x and in y)."""
    inside = np.zeros(shape[:2], bool)
    inside[max(0, box.y - reach) : box.y + box.height + reach, max(0, box.x - reach) : box.x + box.width + reach] = True
    return inside


class FixedDetector:
    """The detector seam: the same boxes whatever the picture."""

    def __init__(self, boxes: list[FaceBox]):
        self.boxes = boxes
        self.seen = 0

    def detect(self, image: Image.Image, *, min_size: int = 32) -> list[FaceBox]:
        self.seen += 1
        return list(self.boxes)


def test_detail_repaints_inside_the_face_box_and_nothing_beyond_its_feather(engine: Engine) -> None:
    picture = face_image((128, 128), [(40, 44, 36)])
    [box] = FaceDetector().detect(picture)  # the drawn face, where it was drawn
    assert box.x < 40 < box.x + box.width and box.y < 44 < box.y + box.height
    job = spec(
        kind="detail", width=128, height=128, init_image=put_png(engine, picture), detail=DetailSpec(targets=("face",), strength=0.6)
    )
    progress: list[tuple[int, int]] = []
    [result] = render_job(engine, job, on_progress=lambda step, total: progress.append((step, total))).images
    before, after = np.asarray(picture.convert("RGB")).astype(int), pixels(result.png)
    outside = ~within(box, REACH, before.shape)
    assert outside.sum() > 128 * 128 // 3  # a test with nothing outside would prove nothing
    assert np.array_equal(after[outside], before[outside])
    face = within(box, 0, before.shape)
    assert np.abs(after[face] - before[face]).mean() > 10  # repainted, not a copy
    assert progress[-1] == (2, 2)  # 4 steps at strength 0.6: 2 for the one face
    assert (
        "ADetailer model: face, ADetailer dilate erode: 4, ADetailer mask blur: 4, ADetailer denoising strength: 0.6" in result.parameters
    )


def test_drawing_with_detail_repaints_each_region_of_each_picture(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    box = FaceBox(36, 4, 20, 20)
    fixed = FixedDetector([box])
    monkeypatch.setattr(engine.tools, "region_detector", lambda target: fixed)
    plain = render_job(engine, spec(n=2)).images
    progress: list[tuple[int, int]] = []
    detailed = render_job(
        engine, spec(n=2, detail=DetailSpec(targets=("face",), prompt="a smiling face")), on_progress=lambda s, t: progress.append((s, t))
    )
    assert fixed.seen == 2 and detailed.notes == ()
    for before, after in zip(plain, detailed.images, strict=True):
        a, b = pixels(before.png), pixels(after.png)
        outside = ~within(box, REACH, a.shape)
        assert np.array_equal(b[outside], a[outside])
        inside = within(box, 0, a.shape)
        assert np.abs(b[inside] - a[inside]).mean() > 5
        assert "ADetailer prompt: a smiling face" in after.parameters
    # 4 drawing steps for the batch, then int(4 * 0.4) = 1 per region: 6 in all, counted as one bar
    assert progress[-1] == (6, 6) and all(step <= total for step, total in progress)
    assert max(total for _, total in progress) == 6


def test_nothing_found_is_said_plainly(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.tools, "region_detector", lambda target: FixedDetector([]))
    plain = render_job(engine, spec(n=2, seed=7)).images
    kept = render_job(engine, spec(n=2, seed=7, detail=DetailSpec(targets=("face", "person"))))
    assert [pixels(a.png).tolist() == pixels(b.png).tolist() for a, b in zip(plain, kept.images, strict=True)] == [True, True]
    assert kept.notes == tuple(f"I found no face or person in picture {i}, so there was nothing to detail. It is as drawn." for i in (1, 2))
    job = spec(kind="detail", init_image=put_png(engine, Image.new("RGB", (64, 64), (90, 120, 150))), detail=DetailSpec(targets=("face",)))
    with pytest.raises(EngineUserError, match="I found no face in this picture, so there was nothing to detail"):
        render_job(engine, job)


def test_decode_yolo() -> None:
    # (1, 4 + 1 class, 8 anchors): two overlapping boxes (the better kept), one far, one too weak.
    anchors = np.array(
        [
            [100, 100, 40, 60, 0.9],
            [102, 101, 40, 60, 0.8],
            [400, 300, 80, 80, 0.5],
            [200, 200, 50, 50, 0.1],
            *[[10, 10, 8, 8, 0.0]] * 4,  # real models have thousands of anchors, far more than rows
        ],
        dtype=np.float32,
    )
    for output in (anchors.T[None], anchors[None]):  # YOLOv8's layout and its transpose
        boxes = decode_yolo(output, scale=2.0)  # the network saw the picture at twice its size
        assert sorted(boxes) == [(40, 35, 20, 30), (180, 130, 40, 40)]


def test_detectors_refuse_what_they_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(EngineUserError, match="SDBOT_HAND_DETECTOR"):
        load_region_detector("hand", None)
    marker = tmp_path / "ran"
    pickled = tmp_path / "hand_yolov8n.pt"
    pickled.write_bytes(b"not read")
    with pytest.raises(ModelLoadError, match="pickles"):
        load_region_detector("hand", str(pickled))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_region_detector("person", str(tmp_path / "missing.onnx"))
    assert not marker.exists()
    hog = load_region_detector("person", None)
    assert isinstance(hog, HogPeopleDetector)
    noise = np.random.default_rng(0).integers(0, 256, (160, 96, 3), dtype=np.uint8)
    assert hog.detect(Image.fromarray(noise)) == []
    assert hog.detect(Image.new("RGB", (48, 96))) == []  # smaller than HOG's 64x128 window


def test_parameters_read_back() -> None:
    job = spec(detail=DetailSpec(targets=("face", "person"), prompt="sharp eyes, smiling", strength=0.35, mask_blur=20))
    read = parse_infotext(infotext(job, 42))
    assert read["ADetailer model"] == "face" and read["ADetailer model 2nd"] == "person"
    assert read["ADetailer prompt"] == read["ADetailer prompt 2nd"] == "sharp eyes, smiling"  # quoted: it holds a comma
    assert read["ADetailer denoising strength"] == "0.35" and read["ADetailer mask blur"] == "8"  # A1111's sigma of a 20 px reach
    assert read["ADetailer dilate erode"] == "4" and read["ADetailer version"].startswith("sdbot")
    assert "ADetailer" not in infotext(spec(), 42)


ADETAILER_INFOTEXT = (
    "a knight in a forest\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, Model: dreamshaper_8, "
    'ADetailer model: face_yolov8n.pt, ADetailer prompt: "a stern face, scars", ADetailer confidence: 0.3, '
    "ADetailer dilate erode: 4, ADetailer mask blur: 4, ADetailer denoising strength: 0.35, "
    "ADetailer model 2nd: hand_yolov8n.pt, ADetailer model 3rd: yolov8x-worldv2.pt, ADetailer version: 24.11.1, Version: v1.10.1"
)


def test_adetailer_is_carried_over_from_a_picture(tmp_path: Path) -> None:
    """/describe of another tool's picture: ADetailer's face and hand models become `--detail face,hand`
    with its prompt and strength (what "Imagine this" draws with); a model of something else is
    noted. The options pass the /imagine checks as they are (a hand detector configured)."""
    from commands.jobs.options import read_options
    from commands.pictures.metadata import read_metadata
    from config import Settings
    from generation.parameters import png

    meta = read_metadata(png(Image.new("RGB", (8, 8)), ADETAILER_INFOTEXT))
    assert meta is not None
    assert (meta.options["detail"], meta.options["detail_strength"], meta.options["detail_prompt"]) == (
        "face,hand",
        0.35,
        "a stern face, scars",
    )
    assert any("ADetailer (yolov8x-worldv2.pt) is not carried over" in note for note in meta.notes)
    settings = Settings(_env_file=None, model="tiny", data_dir=tmp_path, hand_detector=str(tmp_path / "hand.onnx"))
    detail = {key: value for key, value in meta.options.items() if key.startswith("detail")}
    opts = read_options(detail, settings, settings.registry(), prompt=meta.prompt)
    assert (opts.detail, opts.detail_prompt, opts.detail_strength) == (("face", "hand"), "a stern face, scars", 0.35)
    ours = read_metadata(png(Image.new("RGB", (8, 8)), infotext(spec(detail=DetailSpec(targets=("person", "face"))), 42)))
    assert ours is not None and ours.options["detail"] == "person,face" and ours.options["detail_strength"] == 0.4
