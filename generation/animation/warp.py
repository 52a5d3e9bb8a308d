"""Deforum's 2D motion: each frame is the previous one zoomed and rotated about the centre, then
shifted, before img2img redraws it (deforum's `anim_frame_warp_2d`, the same matrices), and
colour coherence: each new frame's colours matched to the first frame's (Deforum's "LAB" mode),
so a long zoom does not drift in colour."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Motion:
    """One frame's move, in Deforum's units: zoom as a scale (1.02 = 2% closer), angle in degrees
    (counter-clockwise), translation in pixels (x right, y down)."""

    zoom: float = 1.0
    angle: float = 0.0
    tx: float = 0.0
    ty: float = 0.0


def warp_matrix(motion: Motion, width: int, height: int) -> np.ndarray:
    """The 3x3 matrix that takes a pixel of the previous frame to where it appears in this one:
    rotation and zoom about the centre (`cv2.getRotationMatrix2D`) after the translation, as
    Deforum composes them."""
    center = (width // 2, height // 2)
    translate = np.array([[1, 0, motion.tx], [0, 1, motion.ty], [0, 0, 1]], dtype=np.float64)
    rotate = np.vstack([cv2.getRotationMatrix2D(center, motion.angle, motion.zoom), [0, 0, 1]])
    return rotate @ translate


def warp(frame: np.ndarray, motion: Motion) -> np.ndarray:
    """The previous frame (H x W x 3, uint8) moved by `motion`; the edges that come into view
    repeat the border pixels (Deforum's default `replicate`)."""
    height, width = frame.shape[:2]
    return cv2.warpPerspective(frame, warp_matrix(motion, width, height), (width, height), borderMode=cv2.BORDER_REPLICATE)


def match_colors(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`frame`'s colours matched to `reference`'s in LAB: each channel's mean and spread set to the
    reference's (a moment match, as Deforum's colour coherence does with histogram matching; the
    moments keep it cheap and free of skimage)."""
    source = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float64)
    target = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB).astype(np.float64)
    for channel in range(3):
        s, t = source[..., channel], target[..., channel]
        spread = s.std()
        scaled = (s - s.mean()) * (t.std() / spread if spread > 1e-6 else 1.0)
        source[..., channel] = scaled + t.mean()
    return cv2.cvtColor(np.clip(source, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
