"""`video`: a clip from a video model of the registry (Wan, LTX-Video; generation.models.families:
`Family.video()`), drawn by the engine's video pass (`Engine.diffuse_video`).

- text-to-video: no `init_image`; `clip.frames` frames from the prompt.
- image-to-video: `init_image` is the first frame, fitted to the job's size (scaled to cover it and
  centred, so nothing is stretched), as the pipeline gets it.
- first-last-frame: `clip.end_image` is the last frame, fitted the same way (a closed `--loop` is
  the first frame given as the last one too).
- Extend (`clip.extend`): image-to-video from the last frame of the clip so far (`clip.source`), or
  first-last-frame to `clip.end_image`. That call's first frame is the clip's last one, so the result
  is the frames so far and the call's frames after its first: the new part's first frame IS the
  previous clip's last frame (the same pixels, not the model's copy of them), and nothing repeats.
  So `clip.frames` (what one call draws, keeping the family's frame rule) adds `clip.frames - 1`.
- `clip.loop` without an end frame plays forward then back, as for every clip (generation.jobs).

One generator seeded with the job's seed draws the whole clip: frame k is what bare diffusers' pipeline
draws for the same seed, inputs and settings.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from generation.engine import Engine, Tracker
from generation.jobs.animate import source_frames
from generation.spec import GenerationSpec


def video(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    clip = spec.clip
    assert clip is not None
    size = (spec.width, spec.height)
    end = fitted(engine.blob_image(clip.end_image, "RGB"), size) if clip.end_image is not None else None
    if clip.extend:
        so_far = source_frames(engine, spec)
        drawn = engine.diffuse_video(spec, tracker, first=so_far[-1], last=end)
        return so_far + drawn[1:]
    first = fitted(engine.init_image(spec), size) if spec.init_image is not None else None
    return engine.diffuse_video(spec, tracker, first=first, last=end)


def fitted(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`picture` at `size`: scaled to cover it and centred (the part outside is cut), as a frame of the clip."""
    if picture.size == size:
        return picture
    return ImageOps.fit(picture, size, Image.Resampling.LANCZOS)
