"""Pictures to train on: 4 distinct, deterministic PNGs of a few sizes (portrait, landscape,
square), as files for the console and as bytes for the fakes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = ((64, 64), (48, 64), (64, 48), (56, 64))


def picture_bytes(count: int = 4, seed: int = 5) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        gradient = np.linspace(0, 255, width)[None, :, None] * np.array([1.0, 0.5, 0.2]) * (i + 1) / count
        noise = rng.normal(0, 30, (height, width, 3))
        array = np.clip(gradient + noise, 0, 255).astype("uint8")
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def picture_files(folder: Path, count: int = 4) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(picture_bytes(count)):
        path = folder / f"fox{i}.png"
        path.write_bytes(data)
        paths.append(str(path))
    return paths
