"""A picture job's files into the blob store: `store` turns what the engine rendered into the
output records and the `JobResult` the queue completes the job with (`storage.queue.complete`
records the blobs they name, in the completion's transaction).

Runs in a thread (`asyncio.to_thread`), never on the event loop: it writes files and opens the
control maps' PNGs to read their sizes. The content-addressed store makes a write of the same
bytes twice harmless, so an attempt that dies after storing and before completing leaves only
files the next attempt would write again."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image

from storage.blobs import BlobStore
from storage.queue import OutputRecord
from storage.results import ClipFiles, JobResult, StoredPicture

if TYPE_CHECKING:
    from generation.jobs import Rendered


def store(blobs: BlobStore, rendered: Rendered) -> tuple[list[OutputRecord], JobResult | None]:
    """The pictures as blobs and output records; the control maps, and a clip's MP4 and GIF
    (`commands.jobs.sources.clip_info` reads them), as blobs in the result, with the notes for the
    person (`--detail` that found nothing; None: none of these)."""
    outputs = [
        OutputRecord(
            index=image.index,
            seed=image.seed,
            blob_key=blobs.put(image.png, "png"),
            width=image.width,
            height=image.height,
            parameters=image.parameters,
            size=len(image.png),
            safety_score=image.safety_score,
        )
        for image in rendered.images
    ]
    maps = []
    for png in rendered.maps:
        with Image.open(io.BytesIO(png)) as picture:
            width, height = picture.size
        maps.append(StoredPicture(blob=blobs.put(png, "png"), width=width, height=height, size=len(png)))
    clip = None
    if rendered.clip is not None:
        encoded = rendered.clip
        clip = ClipFiles(
            mp4=blobs.put(encoded.mp4, "mp4"),
            gif=blobs.put(encoded.gif, "gif"),
            fps=encoded.fps,
            width=encoded.width,
            height=encoded.height,
            frames=encoded.frames,
            loop=encoded.loop,
            mp4_size=len(encoded.mp4),
            gif_size=len(encoded.gif),
        )
    grid = None
    if rendered.grid is not None:  # /compare: the labelled grid of its cells (the outputs)
        with Image.open(io.BytesIO(rendered.grid)) as picture:
            width, height = picture.size
        grid = StoredPicture(blob=blobs.put(rendered.grid, "png"), width=width, height=height, size=len(rendered.grid))
    # the keys it has and no others (JobResult.to_json writes the fields given): NULL for a plain picture job
    given = {"maps": tuple(maps), "clip": clip, "notes": tuple(rendered.notes), "grid": grid}
    kept = {key: value for key, value in given.items() if value}
    return outputs, JobResult(**kept) if kept else None
