"""`/animate` and `/video2video`: AnimateDiff clips, drawn by the engine's clip pass
(`Engine.diffuse_clip`: the motion adapter, camera moves, LoRAs and context windows).

- animate: `clip.frames` frames from noise, one generator seeded with the job's seed for the whole
  clip, so a clip equals what bare `AnimateDiffPipeline` draws for the same seed and settings.
- video2video: the clip's source frames (PNG blobs, read from uploads or one of our clips) resized
  to the job's size and restyled together at `strength`.
- Longer (`clip.extend`) of an animation: AnimateDiff cannot start from a given frame, so the new
  frames are video2video of the clip's last frame held still for `clip.frames` frames, at the
  job's strength: the first new frames stay close to where the clip ended and the motion layers
  set it moving. The result is the whole clip: the frames so far, then the new ones.
"""

from __future__ import annotations

from PIL import Image

from generation.engine import Engine, Tracker
from generation.spec import GenerationSpec


def animate(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    assert spec.clip is not None
    if spec.clip.extend:
        so_far = source_frames(engine, spec)
        held = [so_far[-1]] * spec.clip.frames
        return so_far + engine.diffuse_clip(
            spec, "video2video", tracker, video=held, strength=spec.strength, width=spec.width, height=spec.height
        )
    return engine.diffuse_clip(spec, "animate", tracker, num_frames=spec.clip.frames, width=spec.width, height=spec.height)


def video2video(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    return engine.diffuse_clip(
        spec, "video2video", tracker, video=source_frames(engine, spec), strength=spec.strength, width=spec.width, height=spec.height
    )


def source_frames(engine: Engine, spec: GenerationSpec) -> list[Image.Image]:
    """The clip's source frames at the job's size (RGB)."""
    assert spec.clip is not None
    frames = []
    for key in spec.clip.source:
        frame = engine.blob_image(key, "RGB")
        if frame.size != (spec.width, spec.height):
            frame = frame.resize((spec.width, spec.height), Image.Resampling.LANCZOS)
        frames.append(frame)
    return frames
