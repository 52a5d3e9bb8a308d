"""Z-Image (Tongyi-MAI, 2025): a 6 B single-stream DiT with a Qwen3 4B text encoder and FLUX.1's
VAE; Turbo draws in 8 steps without guidance. Its guidance counts from 0: `--cfg g` is
classifier-free guidance at 1 + g, off at 0 (then a negative prompt has no effect, so one is
refused). Rectified flow with a fixed shift of 3; sizes in multiples of 16."""

from __future__ import annotations

from generation.models.families.base import Family, Variant
from generation.models.families.flux import FLOW_SAMPLERS, dit_unsupported

Z_IMAGE = Family(
    id="zimage",
    label="Z-Image",
    pipeline_classes=("ZImagePipeline",),
    pipelines={"txt2img": "ZImagePipeline", "img2img": "ZImageImg2ImgPipeline", "inpaint": "ZImageInpaintPipeline"},
    denoiser="transformer",
    denoiser_class="ZImageTransformer2DModel",
    native_size=1024,
    size_multiple=16,
    text_encoders=("Qwen3 4B",),
    prompt_tokens=512,
    prompt_encoding="pipeline",
    flow_matching=True,
    default_sampler="Euler",
    samplers=FLOW_SAMPLERS,
    guidance="cfg",
    cfg_off_at=0.0,
    variants=(
        Variant("turbo", "Z-Image Turbo", steps=8, cfg=0.0, name_marks=("turbo",)),
        Variant("base", "Z-Image", steps=30, cfg=4.0),
    ),
    unsupported={**dit_unsupported("Z-Image", negative=None), "lora": "LoRAs on Z-Image aren't supported here yet"},
    # ComfyUI's and diffusers' names share the layers' modulation (diffusers' own detection key)
    checkpoint_marks=("layers.0.adaLN_modulation.",),
    description="Z-Image Turbo: 1024 px in 8 steps; ~20 GB in bf16 (transformer 12, Qwen3 8), ~14 GB with a Q8_0 transformer.",
)
