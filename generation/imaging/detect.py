"""What ADetailer's pass (`--detail face|hand|person`, generation.jobs.detail) repaints: boxes of
faces, hands or people in a picture, biggest first.

- face: `faces.FaceDetector` (YuNet's ONNX file when configured, else OpenCV's Haar cascade), the
  detector /facefix uses, so both find the same faces.
- person: a YOLO person model exported to ONNX when configured (SDBOT_PERSON_DETECTOR), else
  OpenCV's HOG people detector, which ships inside OpenCV (no file) and finds upright people of
  at least its 64x128 window.
- hand: a YOLO hand model exported to ONNX (SDBOT_HAND_DETECTOR). OpenCV ships no hand detector,
  so without one `--detail hand` is refused before queueing (commands.jobs.options) and here.

Why ONNX through OpenCV's dnn module: ADetailer's YOLO models are ultralytics `.pt` pickles, and
loading a pickle can run code hidden in it; an ONNX file is a graph and weights, which
`cv2.dnn.readNetFromONNX` reads without running anything but the graph, and OpenCV is already
here (no onnxruntime, no ultralytics). `decode_yolo` reads YOLOv8's output layout (4 box numbers
then one score per class, for every anchor) and keeps the boxes that pass the confidence and
non-maximum suppression, as ultralytics' own post-processing does.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from generation.errors import EngineUserError, ModelLoadError
from generation.imaging.faces import FaceBox

YOLO_SIDE = 640  # ultralytics' default export size (imgsz=640), the square the network sees
YOLO_PAD = 114  # ultralytics' letterbox grey
CONFIDENCE = 0.3  # ADetailer's default detection confidence
NMS_IOU = 0.45
HOG_MIN_WEIGHT = 0.3  # HOG's SVM margin below which a window is too weak to repaint


class RegionDetector(Protocol):
    def detect(self, image: Image.Image, *, min_size: int = 32) -> list[FaceBox]:
        """Boxes at least `min_size` pixels wide and high, biggest first."""
        ...


def load_region_detector(target: str, source: str | None) -> RegionDetector:
    """The detector for `target` (hand or person; faces are `faces.FaceDetector`)."""
    if source:
        return YoloOnnxDetector(source, target)
    if target == "hand":
        raise EngineUserError(
            "`--detail hand` needs a hand detector, and none is configured any more: an admin sets SDBOT_HAND_DETECTOR "
            "to a YOLO hand model exported to ONNX. `--detail face` and `--detail person` work without one."
        )
    return HogPeopleDetector()


class HogPeopleDetector:
    """OpenCV's HOG + linear SVM people detector (Dalal and Triggs), built into OpenCV."""

    def __init__(self) -> None:
        import cv2

        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self._lock = threading.Lock()  # detectMultiScale is not documented as thread-safe

    def detect(self, image: Image.Image, *, min_size: int = 32) -> list[FaceBox]:
        rgb = np.asarray(image.convert("RGB"))
        height, width = rgb.shape[:2]
        if width < 64 or height < 128:  # smaller than HOG's window: it can't see anyone
            return []
        with self._lock:
            rects, weights = self._hog.detectMultiScale(rgb, winStride=(8, 8), padding=(8, 8), scale=1.05)
        found = [(tuple(int(v) for v in rect), float(w)) for rect, w in zip(rects, np.ravel(weights), strict=True)]
        return _boxes([rect for rect, weight in found if weight >= HOG_MIN_WEIGHT], width, height, min_size)


class YoloOnnxDetector:
    """A YOLOv8-style detector exported to ONNX (`yolo export format=onnx`), every class counted as
    the target (ADetailer's face, hand and person models have one class each)."""

    def __init__(self, source: str | Path, target: str):
        import cv2

        path = Path(source).expanduser()
        setting = f"SDBOT_{target.upper()}_DETECTOR"
        if path.suffix.lower() != ".onnx":
            raise ModelLoadError(
                f"`{path.name}` ({setting}) is not an ONNX file. ADetailer's `.pt` models are pickles, which sdbot never "
                "loads; export one once on a trusted machine with ultralytics: `yolo export model=hand_yolov8n.pt format=onnx`."
            )
        if not path.is_file():
            raise ModelLoadError(f"the {target} detector `{path}` ({setting}) does not exist.")
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as error:
            raise ModelLoadError(f"`{path}` could not be read as an ONNX detector ({str(error).strip()}).") from error
        self.name = path.stem
        self._lock = threading.Lock()  # a cv2.dnn.Net keeps its input as state

    def detect(self, image: Image.Image, *, min_size: int = 32) -> list[FaceBox]:
        import cv2

        rgb = np.asarray(image.convert("RGB"))
        height, width = rgb.shape[:2]
        scale = YOLO_SIDE / max(width, height)
        resized = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_LINEAR)
        canvas = np.full((YOLO_SIDE, YOLO_SIDE, 3), YOLO_PAD, np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized  # top-left: boxes only need scaling back
        blob = cv2.dnn.blobFromImage(canvas, 1 / 255.0, (YOLO_SIDE, YOLO_SIDE), swapRB=False, crop=False)
        with self._lock:
            self._net.setInput(blob)
            output = self._net.forward()
        return _boxes(decode_yolo(output, scale), width, height, min_size)


def decode_yolo(output: np.ndarray, scale: float, confidence: float = CONFIDENCE, iou: float = NMS_IOU) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) boxes in the picture's pixels from a YOLOv8 output of shape (1, 4 + classes,
    anchors) (or its transpose): centre x, centre y, width, height in the network's pixels, then
    a score per class; the best class's score must reach `confidence`, and overlapping boxes
    (IoU above `iou`) keep the best one. `scale` is the network's pixels per picture pixel."""
    import cv2

    rows = np.asarray(output, dtype=np.float32).reshape(output.shape[-2], output.shape[-1])
    if rows.shape[0] > rows.shape[1]:  # (anchors, 4 + classes): exported without the transpose
        rows = rows.T
    if rows.shape[0] < 5:
        raise EngineUserError(f"the detector's output has {rows.shape[0]} rows per box; a YOLOv8 model has 4 + one per class.")
    scores = rows[4:].max(axis=0)
    keep = scores >= confidence
    cx, cy, w, h = (rows[i][keep] / scale for i in range(4))
    boxes = [[float(x - bw / 2), float(y - bh / 2), float(bw), float(bh)] for x, y, bw, bh in zip(cx, cy, w, h, strict=True)]
    kept = cv2.dnn.NMSBoxes(boxes, [float(s) for s in scores[keep]], confidence, iou) if boxes else []
    return [tuple(round(v) for v in boxes[int(i)]) for i in np.ravel(kept)]  # type: ignore[misc]


def _boxes(rects: list[tuple[int, int, int, int]], width: int, height: int, min_size: int) -> list[FaceBox]:
    """Rectangles clamped into the picture, at least `min_size` each way, biggest first."""
    boxes = []
    for x, y, w, h in rects:
        left, top = max(0, x), max(0, y)
        right, bottom = min(width, x + w), min(height, y + h)
        if right - left >= min_size and bottom - top >= min_size:
            boxes.append(FaceBox(left, top, right - left, bottom - top))
    return sorted(boxes, key=lambda box: box.width * box.height, reverse=True)
