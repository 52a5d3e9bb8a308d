"""`--detail hand` (and person) through a real ONNX file read by OpenCV's dnn module: a tiny graph
written here with the `onnx` package that outputs YOLOv8's layout (4 box numbers and a score for
every anchor, in the network's 640x640 letterboxed pixels) whatever the picture, so the whole path
runs: `cv2.dnn.readNetFromONNX`, the letterbox, the forward pass, `decode_yolo`'s confidence and
suppression, the boxes scaled back to the picture, and the repaint inside them through the tiny
model's inpaint path (nothing beyond the box's reach changes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # the [test] extra installs it; it only writes the file here

from config import ModelEntry, ModelRegistry  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.imaging.detect import YOLO_SIDE, YoloOnnxDetector  # noqa: E402
from generation.imaging.faces import FaceBox  # noqa: E402
from generation.jobs import render_job  # noqa: E402
from generation.models.loader import ModelCache  # noqa: E402
from generation.spec import DetailSpec  # noqa: E402
from generation.tools import Tools  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402
from tests.test_detail import REACH, pixels, put_png, spec, within  # noqa: E402
from tests.test_video_models import picture  # noqa: E402

SIDE = 128  # the picture; the network sees it letterboxed to 640: 5 network pixels a picture pixel
# (centre x, centre y, width, height, score) in network pixels: a hand, a weaker copy of it that
# suppression drops, and a low score below the confidence
ANCHORS = ((300.0, 320.0, 200.0, 200.0, 0.9), (305.0, 318.0, 200.0, 190.0, 0.8), (100.0, 100.0, 200.0, 200.0, 0.1))
HAND = FaceBox(40, 44, 40, 40)  # the first anchor in the picture's pixels: (300 - 100) / 5, (320 - 100) / 5, 200 / 5, 200 / 5


def yolo_file(path: Path) -> Path:
    """An ONNX graph `images` [1, 3, 640, 640] -> `output0` [1, 5, anchors]: the anchors above plus
    0 x the picture's mean (so the graph reads its input, as a real detector does)."""
    from onnx import TensorProto, helper, numpy_helper

    # (1, 5, anchors); a real model has thousands of anchors (8400 at 640), most scoring nothing
    boxes = np.concatenate([np.array(ANCHORS, np.float32), np.zeros((97, 5), np.float32)]).T[None]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["boxes", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, YOLO_SIDE, YOLO_SIDE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(boxes.shape))],
        initializer=[numpy_helper.from_array(boxes, "boxes"), numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_an_onnx_detector_finds_its_boxes_in_the_pictures_pixels(tmp_path: Path) -> None:
    detector = YoloOnnxDetector(yolo_file(tmp_path / "hand_yolov8n.onnx"), "hand")
    assert detector.detect(picture(1, (SIDE, SIDE))) == [HAND]
    # a picture twice the size: the letterbox scale is 640 / 256, and the box scales with it; one
    # twice as wide is letterboxed at that scale too, and the box is clamped into its 128 rows
    assert detector.detect(picture(2, (2 * SIDE, 2 * SIDE))) == [FaceBox(80, 88, 80, 80)]
    assert detector.detect(picture(2, (2 * SIDE, SIDE))) == [FaceBox(80, 88, 80, 40)]


@pytest.fixture(scope="module")
def hand_engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    folder = tmp_path_factory.mktemp("hand-detector")
    device, dtype = torch.device("cpu"), torch.float32
    tools = Tools(device=device, dtype=dtype, hand_detector=str(yolo_file(folder / "hand_yolov8n.onnx")))
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, device, dtype)
    return Engine(cache, LocalBlobStore(folder / "blobs"), tools)


def test_detail_hand_repaints_inside_the_detected_box_only(hand_engine: Engine) -> None:
    drawn = picture(3, (SIDE, SIDE))
    job = spec(kind="detail", width=SIDE, height=SIDE, init_image=put_png(hand_engine, drawn), detail=DetailSpec(targets=("hand",)))
    [result] = render_job(hand_engine, job).images
    before, after = np.asarray(drawn.convert("RGB")).astype(int), pixels(result.png)
    outside = ~within(HAND, REACH, before.shape)
    assert outside.sum() > SIDE * SIDE // 3 and np.array_equal(after[outside], before[outside])
    inside = within(HAND, 0, before.shape)
    assert np.abs(after[inside] - before[inside]).mean() > 10
    assert "ADetailer model: hand, " in result.parameters
