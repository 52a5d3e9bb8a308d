"""Z-Image (Tongyi-MAI, 2025): a 6 B single-stream DiT with a Qwen3 4B text encoder and FLUX.1's
VAE; Turbo draws in 8 steps without guidance. Its guidance counts from 0: `--cfg g` is
classifier-free guidance at 1 + g, off at 0 (then a negative prompt has no effect, so one is
refused). Rectified flow with a fixed shift of 3; sizes in multiples of 16."""

from __future__ import annotations

from generation.models.families.base import ControlNetSupport, DraftPath, Family, Variant
from generation.models.families.flux import FLOW_SAMPLERS, dit_unsupported
from generation.models.families.latent_rgb import FLUX_RGB, LatentPreview

# ControlNets: alibaba-pai's Z-Image-Turbo-Fun-Controlnet-Union, 1.x (16 channels: the map's latents)
# and 2.x (33: the map's latents, a mask and the masked picture's latents, which diffusers' txt2img
# pipeline fills with zeros). diffusers 0.42.1's txt2img ControlNet pipeline takes one ControlNet and
# steers every step; its inpainting one feeds a 2.x union the picture and mask, drawing from noise
# without keeping the picture: not the inpaint sdbot does, so not used.
CONTROLNET = ControlNetSupport(
    model_class="ZImageControlNetModel",
    pipelines={"txt2img": "ZImageControlNetPipeline"},
    missing={
        "img2img": "diffusers has no Z-Image ControlNet pipeline that starts from a picture",
        "inpaint": "Z-Image's ControlNet inpainting pipeline redraws the whole picture through a 2.x union ControlNet "
        "rather than repainting the masked part",
    },
    single_only="diffusers' Z-Image ControlNet pipeline takes one ControlNet",
    guidance_window=False,
    window_why="diffusers' Z-Image ControlNet pipeline steers every step (it has no control start or end)",
)

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
    draft=DraftPath(source="model", steps=8, cfg=0.0, sampler="Euler", what="Z-Image Turbo (8 steps, no guidance)"),
    guidance="cfg",
    cfg_off_at=0.0,
    controlnet=CONTROLNET,
    variants=(
        Variant("turbo", "Z-Image Turbo", steps=8, cfg=0.0, name_marks=("turbo",)),
        Variant("base", "Z-Image", steps=30, cfg=4.0),
    ),
    unsupported=dit_unsupported("Z-Image", negative=None),
    # ComfyUI's and diffusers' names share the layers' modulation (diffusers' own detection key)
    checkpoint_marks=("layers.0.adaLN_modulation.",),
    preview=LatentPreview((FLUX_RGB,)),
    # Caches: its CFG runs in one batched call, which PAB suits; diffusers 0.42.1's First Block Cache can't read its blocks' arguments and TaylorSeer's lite patterns find none of its layers.
    caches=("pab",),
    description="Z-Image Turbo: 1024 px in 8 steps; ~20 GB in bf16 (transformer 12, Qwen3 8), ~14 GB with a Q8_0 transformer.",
)
