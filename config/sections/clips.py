"""The clips section of the settings: `/animate`, `/video2video` and `/deforum`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from config.models import MotionAdapterEntry
from config.sections.parse import NamedFiles, name_pairs


class ClipSettings(BaseModel):
    """Clips and animation

    `/animate` and `/video2video` draw with AnimateDiff motion adapters; `/deforum` redraws each
    frame with img2img. A clip holds all its frames in memory at once, so its limits are tighter
    than a picture's; see [Clips](guide.md#clips).
    """

    motion_adapters: Annotated[dict[str, MotionAdapterEntry], NoDecode] = Field(
        default_factory=dict,
        description="AnimateDiff motion adapters for `/animate` and `/video2video`, by name: `name=source` pairs (a "
        "diffusers `MotionAdapter` folder or a downloaded Hub id such as `guoyww/animatediff-motion-adapter-v1-5-3`), "
        "or TOML `[motion_adapters.NAME]` with `source` and `architecture` (sd1 or sdxl; default: sdxl when the "
        "source's name says xl). The first that fits the model is the default; one made for another architecture is refused.",
        json_schema_extra={"doc_default": "none (tiny: built-in `tiny`)"},
    )
    motion_loras: NamedFiles = Field(
        default_factory=dict,
        description="Camera-move motion LoRAs (`name=source`: a folder or `.safetensors`, e.g. guoyww's zoom-in, "
        "pan-left) for `/animate --camera NAME[:weight]`; SD 1.x motion adapters only.",
        json_schema_extra={"doc_default": "none (tiny: built-in `tiny-zoom`)"},
    )
    default_frames: int = Field(16, ge=1, description="Frames of `/animate` and `/video2video` without `--frames`.")
    min_frames: int = Field(8, ge=1, description="Fewest `--frames` of `/animate` (AnimateDiff's motion needs a few).")
    max_frames: int = Field(
        32, ge=1, description="Most frames of `/animate` and `/video2video` (longer clips are drawn in context windows)."
    )
    max_deforum_frames: int = Field(120, ge=2, description="Most frames of one `/deforum` run (each frame is an img2img pass).")
    max_clip_frames: int = Field(128, ge=2, description="Longest clip the Longer button may grow, in frames.")
    max_clip_gpu_seconds: float | None = Field(
        900.0,
        gt=0,
        description="The most GPU-seconds one `/video` clip (or one Extend of it) may take. Before queueing, a clip's "
        "time is estimated from the last clips of its model (seconds per frame × pixel × step) and refused when "
        "over; a clip that runs past it anyway is stopped and fails with a reply saying so. Empty: no limit.",
    )
    default_fps: int = Field(8, ge=1, le=60, description="Frames per second of a clip without `--fps`.")
    max_fps: int = Field(30, ge=1, le=60, description="The most `--fps` takes.")
    max_clip_pixels: int = Field(
        512 * 512,
        ge=64 * 64,
        description="Largest width × height of one frame of a clip (a clip holds all its frames in memory at once). A "
        "`--size` above it is refused; derived sizes are fitted and the reply says so.",
    )
    animate_context_frames: int = Field(
        16,
        ge=2,
        description="AnimateDiff sees this many frames at once (its motion models are trained on 16); longer clips are "
        "drawn in overlapping windows of this many frames (FreeNoise).",
    )
    animate_context_stride: int = Field(
        4, ge=1, description="Frames between the starts of two overlapping context windows of a longer clip."
    )
    deforum_strength: float = Field(
        0.6, gt=0, le=1, description="The default `--strength` of `/deforum`: how much of each frame is redrawn."
    )
    video2video_strength: float = Field(
        0.6, gt=0, le=1, description="The default `--strength` of `/video2video` and of a clip's Remix button."
    )
    max_video_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="The largest video or GIF `/video2video` reads.")
    max_video_seconds: float = Field(
        10.0,
        gt=0,
        description="The longest video or GIF `/video2video` reads, in seconds. Of it, `/video2video` takes at most "
        "`SDBOT_MAX_FRAMES` frames at the clip's fps, and says when it used only the first part.",
    )

    @field_validator("motion_adapters", mode="before")
    @classmethod
    def _motion_adapters(cls, value: Any) -> Any:
        """`name=source` pairs from the environment, as for the named files; TOML and JSON give tables."""
        named = name_pairs(value)
        if isinstance(named, dict):
            return {name: {"source": entry} if isinstance(entry, str) else entry for name, entry in named.items()}
        return named
