"""LTX-Video (Lightricks, 2024-25): a video DiT (2B, 13B) with a T5-XXL text encoder and a VAE that
compresses 8 frames into one latent frame (clips are 8k+1 frames) and 32x32 pixels into one latent
pixel (sizes are multiples of 32), at 24 fps. Flow matching (Euler, with a resolution-dependent
shift); real classifier-free guidance with a negative prompt (the distilled models draw in ~8 steps
without it). Its VAE (0.9.1 and later) denoises while decoding: the engine passes the decode
timestep and noise diffusers' docs give for it (0.03, 0.025), which the 0.9.0 VAE ignores.

Three pipelines share the loaded weights: `LTXPipeline` (text-to-video), `LTXImageToVideoPipeline`
(from a first frame), and `LTXConditionPipeline`, which conditions on frames at any position: a
clip from a first to a last frame is a condition at frame 0 and one at the last frame. The condition
pipeline passes its own timesteps (LTX's linear-quadratic schedule), which a scheduler with dynamic
shifting refuses in diffusers 0.42.1 (`mu` must be passed), and whose sigmas a `shift_terminal`
would stretch away from the timesteps the transformer is given: its scheduler gets neither, so
its sigmas are its timesteps, as in LTX's own sampler.

`--motion low|high` goes through LTX-Video's frame-rate conditioning: the transformer places frames
in time at 1/frame_rate apart (its rotary positions), so telling it a higher rate than the clip
plays at (low: 1.5x the fps) makes less happen between two frames, and a lower one (high: 2/3)
more. The MP4 still plays at the clip's fps. LTX-2 (video with audio, a Gemma text encoder) is
recognised and refused: not on the layer yet.
"""

from __future__ import annotations

from generation.models.families.base import Family, MotionRule, Variant, VideoSupport
from generation.models.families.flux import FLOW_SAMPLERS
from generation.models.families.latent_rgb import STAND_IN, LatentPreview
from generation.models.families.wan import video_unsupported

FRAME_RATE_MOTION = "LTX-Video's frame-rate conditioning"

VIDEO = VideoSupport(
    pipelines={
        "t2v": "LTXPipeline",
        "i2v": "LTXImageToVideoPipeline",
        "flf2v": "LTXConditionPipeline",
        "condition": "LTXConditionPipeline",
    },
    modes_of={"*": frozenset({"t2v", "i2v", "flf2v", "condition"})},
    frame_step=8,
    size_multiple=32,
    default_frames=121,  # 5 s at 24 fps
    max_frames=257,  # what LTX-Video's model card allows
    default_fps=24,
    default_size=(704, 512),  # the pipelines' default (480p-like; 768x512 is LTX's other usual size)
    motion={
        "low": MotionRule(f"{FRAME_RATE_MOTION} (told 1.5x the fps)", frame_rate_factor=1.5),
        "high": MotionRule(f"{FRAME_RATE_MOTION} (told 2/3 of the fps)", frame_rate_factor=2 / 3),
    },
    fps_argument="frame_rate",
    end_frame="conditions",
    fixed_arguments={"decode_timestep": 0.03, "decode_noise_scale": 0.025},
    scheduler_options={mode: {"use_dynamic_shifting": False, "shift_terminal": None} for mode in ("flf2v", "condition")},
)

LTX = Family(
    id="ltx",
    label="LTX-Video",
    pipeline_classes=("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"),
    # The pipeline an LTX-Video folder is loaded with when its model_index.json doesn't name one of
    # the above; the engine draws each mode with `video_support`'s.
    pipelines={"txt2img": "LTXPipeline"},
    denoiser="transformer",
    denoiser_class="LTXVideoTransformer3DModel",
    native_size=608,  # about 704x512's pixels: the budget an attached first frame is fitted to
    size_multiple=32,
    text_encoders=("T5-XXL",),
    prompt_tokens=128,  # the pipelines' max_sequence_length (LTXConditionPipeline's: 256)
    prompt_encoding="pipeline",
    flow_matching=True,
    default_sampler="Euler",
    samplers=FLOW_SAMPLERS,
    guidance="cfg",
    cfg_off_at=1.0,
    variants=(
        Variant("dev", "LTX-Video", steps=50, cfg=3.0),
        Variant("distilled", "LTX-Video distilled", steps=8, cfg=1.0, name_marks=("distilled",)),
    ),
    unsupported=video_unsupported("LTX-Video", clips="text-to-video, image-to-video, first-last-frame"),
    # The original names (patchify_proj: diffusers' own detection key) and diffusers'; LTX-2's
    # audio-video blocks are not LTX-Video's.
    checkpoint_marks=("patchify_proj.", ("caption_projection.", "time_embed.emb.", "proj_in.")),
    refuse_marks=("av_ca_", "audio_"),
    video_support=VIDEO,
    preview=LatentPreview(patch=1, temporal=8, note=STAND_IN),
    # Caches: MagCache has no LTX-Video ratios.
    caches=("fbc", "taylorseer", "pab"),
    description="LTX-Video 0.9.x 2B/13B: 704x512 or 768x512, up to 257 frames at 24 fps; 2B ~10 GB in bf16 with T5, 13B ~35 GB "
    "(~20 GB with an fp8 transformer).",
)
