"""kohya's aspect-ratio buckets (sd-scripts `BucketManager`), torch-free.

A run at `--resolution R` trains every picture at about R×R pixels of area, in the bucket whose
aspect ratio is nearest its own, so a portrait is not cropped to a square. Bucket sides are
multiples of `step` (64, as kohya, from R = 256 up; 8 below, for the tiny model) between R/2 and
2R, and no bucket holds more than R² pixels. A picture is scaled to cover its bucket and cropped
at the centre. A batch takes pictures of one bucket only (their latents must have one shape).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

from PIL import Image


def bucket_step(resolution: int) -> int:
    return 64 if resolution >= 256 else 8


def buckets(resolution: int) -> list[tuple[int, int]]:
    """Every (width, height) bucket of a resolution, the square one included."""
    step = bucket_step(resolution)
    low, high, area = max(step, resolution // 2 // step * step), resolution * 2, resolution * resolution
    found = {(resolution, resolution)}
    for width in range(low, high + 1, step):
        height = min(high, area // width // step * step)
        if height >= low:
            found |= {(width, height), (height, width)}
    return sorted(found)


def nearest_bucket(width: int, height: int, choices: list[tuple[int, int]]) -> tuple[int, int]:
    ratio = math.log(width / height)
    return min(choices, key=lambda bucket: (abs(math.log(bucket[0] / bucket[1]) - ratio), -bucket[0] * bucket[1]))


def fit(picture: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    """Scale to cover the bucket (Lanczos), then crop at the centre."""
    width, height = bucket
    scale = max(width / picture.width, height / picture.height)
    size = (max(width, round(picture.width * scale)), max(height, round(picture.height * scale)))
    scaled = picture.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return scaled.crop((left, top, left + width, top + height))


def epoch_batches(bucket_of: list[tuple[int, int]], batch: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's batches of picture indices: each bucket shuffled and cut into batches, then
    the batches shuffled. A pure function of (seed, epoch), so step k draws the same pictures
    whether the run went straight there or resumed from a checkpoint."""
    rng = random.Random(seed * 1_000_003 + epoch)
    by_bucket: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, bucket in enumerate(bucket_of):
        by_bucket[bucket].append(index)
    batches = []
    for bucket in sorted(by_bucket):
        members = by_bucket[bucket]
        rng.shuffle(members)
        batches += [members[i : i + batch] for i in range(0, len(members), batch)]
    rng.shuffle(batches)
    return batches


def batch_at(bucket_of: list[tuple[int, int]], batch: int, seed: int, step: int) -> list[int]:
    """The pictures of step `step` (0-based)."""
    per_epoch = len(epoch_batches(bucket_of, batch, seed, 0))
    return epoch_batches(bucket_of, batch, seed, step // per_epoch)[step % per_epoch]
