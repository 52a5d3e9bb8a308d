"""Wan (Alibaba Wan-AI, 2025): video DiTs with a UMT5-XXL text encoder and a 3D causal VAE that
compresses 4 frames into one latent frame (clips are 4k+1 frames) and 8x8 pixels into one latent
pixel; the transformer takes 2x2 patches, so sizes are multiples of 16 (Wan 2.2 TI2V 5B: its VAE
compresses 16x16, so 32). Flow matching, drawn with the model's own UniPC scheduler (its flow
shift: 3 for 480p, 5 for 720p, from the model's scheduler config). Real classifier-free guidance
with a negative prompt; clips at 16 fps (TI2V 5B: 24).

Its variants, as diffusers 0.42.1 has them (all through `WanPipeline` and `WanImageToVideoPipeline`,
which share the loaded weights):
- Wan 2.1 T2V 1.3B / 14B and Wan 2.2 T2V A14B (two experts: `transformer` for the high-noise steps,
  `transformer_2` for the rest): text-to-video only.
- Wan 2.2 TI2V 5B (`expand_timesteps`): text-to-video and image-to-video; its image-to-video keeps
  only the first frame (no last frame).
- Wan 2.1 I2V 14B (a CLIP image encoder beside the first frame): image-to-video only; two frames
  would be a batch of two for its image embedding.
- Wan 2.1 FLF2V 14B (the same, with a position embedding for two frames' CLIP tokens): first-last-
  frame only (a single frame does not fit that embedding).
- Wan 2.2 I2V A14B (two experts, no image encoder: the frames reach it as VAE latents and a mask):
  image-to-video and first-last-frame.
- Wan VACE (all-in-one editing) and Wan Animate are recognised and refused (not on the layer).

`--motion low|high`: Wan has no input for the amount of motion (no frame-rate or motion score
conditioning), so it is honoured with words: low adds "slow, subtle motion, steady camera" to the
prompt and "fast motion, shaky camera" to the negative prompt; high adds "dynamic, fast motion"
to the prompt and "static, still picture, motionless" to the negative prompt (the terms against
stillness in Wan's own default negative prompt). The PNG parameters say so (`Motion: high (prompt)`).
"""

from __future__ import annotations

from collections.abc import Sequence

from generation.models.families.base import Family, MotionRule, Variant, VideoSupport
from generation.models.families.flux import dit_unsupported
from generation.models.families.latent_rgb import STAND_IN, WAN21_RGB, LatentPreview

# Wan's own scheduler (the model's scheduler_config.json: UniPC with flow sigmas and its flow shift),
# and DPM++ 2M with the same flow configuration.
WAN_SAMPLERS = {"UniPC": ("UniPCMultistepScheduler", {}), "DPM++ 2M": ("DPMSolverMultistepScheduler", {})}
PROMPT_MOTION = "prompt words: Wan has no motion input"


def video_unsupported(label: str, *, clips: str) -> dict[str, str]:
    """What a video family can't do here, with the reasons users read: the DiT families' list, plus
    still pictures and the SD clip tools. `clips`: what it draws instead, for the refusals."""
    refused = {
        feature: why
        for feature, why in dit_unsupported(label, negative=None).items()
        if feature not in ("animate", "video2video", "deforum", "camera_moves")
    }
    refused.update(
        {
            "vae": f"{label} has its own video VAE; the configured VAEs are SD ones",
            "pictures": f"{label} is a video model: it draws clips ({clips}) with /video, not pictures. Pick a picture model with `--model`",
            "img2img": f"{label} draws clips, not pictures from a picture; use /video with the picture as the first frame",
            "inpaint": f"{label} draws clips; inpainting and outpainting need a picture model",
            "animate": f"{label} draws its own clips with /video; AnimateDiff's motion modules are for SD 1.x and SDXL",
            "video2video": f"AnimateDiff's video to video is for SD 1.x; {label} draws new clips with /video (Extend continues one)",
            "deforum": f"Deforum clips are an img2img loop on picture models; {label} draws its clips with /video",
            "camera_moves": f"camera moves are motion LoRAs for SD 1.x motion adapters, not {label}",
        }
    )
    return refused


def wan_variant(names: Sequence[str]) -> str | None:
    """A Wan transformer file's variant, where its tensor names say: an image embedder is Wan 2.1's
    I2V (with a two-frame position embedding: FLF2V). T2V and Wan 2.2's I2V differ only in shapes."""
    if any(name.startswith(("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed")) for name in names):
        return "flf2v"
    if any(name.startswith(("img_emb.", "condition_embedder.image_embedder.")) for name in names):
        return "i2v"
    return None


VIDEO = VideoSupport(
    pipelines={"t2v": "WanPipeline", "i2v": "WanImageToVideoPipeline", "flf2v": "WanImageToVideoPipeline"},
    modes_of={
        "t2v": frozenset({"t2v"}),
        "ti2v": frozenset({"t2v", "i2v"}),
        "i2v": frozenset({"i2v"}),
        "flf2v": frozenset({"flf2v"}),
        "i2v-a14b": frozenset({"i2v", "flf2v"}),
    },
    frame_step=4,
    size_multiple=16,
    size_multiple_of={"ti2v": 32},
    default_frames=81,
    default_frames_of={"ti2v": 121},
    max_frames=81,  # what Wan 2.1 and 2.2 A14B are trained on (5 s at 16 fps)
    max_frames_of={"ti2v": 121},
    default_fps=16,
    default_fps_of={"ti2v": 24},
    default_size=(832, 480),
    default_size_of={"ti2v": (1280, 704), "flf2v": (1280, 720)},
    motion={
        "low": MotionRule(PROMPT_MOTION, prompt_suffix="slow, subtle motion, steady camera", negative_suffix="fast motion, shaky camera"),
        "high": MotionRule(PROMPT_MOTION, prompt_suffix="dynamic, fast motion", negative_suffix="static, still picture, motionless"),
    },
    end_frame="last_image",
)

WAN = Family(
    id="wan",
    label="Wan",
    pipeline_classes=("WanPipeline", "WanImageToVideoPipeline"),
    # The pipeline a Wan folder is loaded with when its model_index.json doesn't name one of the
    # above (a transformer file's `config`): the engine draws each mode with `video_support`'s.
    pipelines={"txt2img": "WanPipeline"},
    denoiser="transformer",
    denoiser_class="WanTransformer3DModel",
    native_size=640,  # about 832x480's pixels: the budget an attached first frame is fitted to
    size_multiple=16,
    text_encoders=("UMT5-XXL",),
    prompt_tokens=512,
    prompt_encoding="pipeline",
    flow_matching=True,
    default_sampler="UniPC",
    samplers=WAN_SAMPLERS,
    guidance="cfg",
    cfg_off_at=1.0,
    variants=(
        # Text-to-video first: what a model is when nothing says (the tiny one; a Hub id not downloaded yet)
        Variant("t2v", "Wan T2V", steps=50, cfg=5.0, name_marks=("t2v",)),
        Variant("ti2v", "Wan 2.2 TI2V 5B", steps=50, cfg=5.0, index={"expand_timesteps": True}, name_marks=("ti2v",)),
        Variant(
            "flf2v",
            "Wan 2.1 FLF2V 14B",
            steps=50,
            cfg=5.0,
            index={"_class_name": "WanImageToVideoPipeline"},
            config={"pos_embed_seq_len": 514},  # 2 x 257 CLIP tokens: the first and the last frame's
            name_marks=("flf2v",),
        ),
        Variant(
            "i2v-a14b",
            "Wan 2.2 I2V A14B",
            steps=40,
            cfg=3.5,
            index={"_class_name": "WanImageToVideoPipeline", "image_encoder": [None, None]},
            name_marks=("wan2.2-i2v", "i2v-a14b", "tiny-wan-i2v"),
        ),
        Variant("i2v", "Wan 2.1 I2V 14B", steps=50, cfg=5.0, index={"_class_name": "WanImageToVideoPipeline"}, name_marks=("i2v",)),
    ),
    unsupported=video_unsupported("Wan", clips="text-to-video, image-to-video, first-last-frame"),
    # The original names (head.modulation: diffusers' own detection key) and diffusers'; VACE and
    # Animate files have Wan's blocks too, and are not on the layer.
    checkpoint_marks=("head.modulation", "condition_embedder.time_proj."),
    refuse_marks=("vace_blocks.", "vace_patch_embedding.", "motion_encoder.", "face_adapter."),
    variant_from_keys=wan_variant,
    video_support=VIDEO,
    preview=LatentPreview((WAN21_RGB,), temporal=4, note="Wan 2.2 TI2V 5B (48 channels): " + STAND_IN),
    # Caches: PAB would share attention outputs between its separate conditional and unconditional calls.
    caches=("fbc", "taylorseer"),
    description="Wan 2.1/2.2 video: 480p (832x480) or 720p, 81 frames at 16 fps; 1.3B ~8 GB, 14B ~28 GB in bf16 "
    "(~16 GB with an fp8 or Q8 transformer; 2.2 A14B holds two), TI2V 5B ~16 GB.",
)
