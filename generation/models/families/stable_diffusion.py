"""Stable Diffusion 1.x, 2.x and SDXL: the UNet families of 2022–23, with every feature the bot
has (it was built on them). Prompts are encoded the A1111 way (generation.prompts: CLIP chunks of
75 tokens, weights, BREAK, prompt editing); samplers are the A1111 list
(generation.models.samplers)."""

from __future__ import annotations

from generation.models.families.base import CONTROL_MODES, ControlNetSupport, DraftPath, Family
from generation.models.families.latent_rgb import SD1_RGB, SDXL_RGB, LatentPreview

_SD_PIPELINES = {
    "txt2img": "StableDiffusionPipeline",
    "img2img": "StableDiffusionImg2ImgPipeline",
    "inpaint": "StableDiffusionInpaintPipeline",
}


# Drafts (--draft): a few-step LoRA on the model itself, drawn as LCM-LoRA and DMD2 are distilled to
# be: 4 steps of the LCM scheduler without guidance (diffusers turns CFG off at 1). (Hyper-SD's and
# SDXL-Lightning's LoRAs want trailing DDIM or Euler timesteps, which this path does not set.)
def _sd_draft(files: str) -> DraftPath:
    return DraftPath(source="lora", steps=4, cfg=1.0, sampler="LCM", what=f"a 4-step LCM-style LoRA: {files}")


# ControlNets (lllyasviel's and their kind): every job kind, several at once, A1111's control modes.
# The engine builds these pipelines with AutoPipeline's `from_pipe`, which picks these classes.
_SD_CONTROLNET = ControlNetSupport(
    model_class="ControlNetModel",
    pipelines={
        "txt2img": "StableDiffusionControlNetPipeline",
        "img2img": "StableDiffusionControlNetImg2ImgPipeline",
        "inpaint": "StableDiffusionControlNetInpaintPipeline",
    },
    multi_class="MultiControlNetModel",
    modes=CONTROL_MODES,
    txt2img_map_argument="image",
)

SD1 = Family(
    id="sd1",
    label="SD 1.x",
    pipeline_classes=("StableDiffusionPipeline",),
    pipelines=_SD_PIPELINES,
    denoiser="unet",
    denoiser_class="UNet2DConditionModel",
    native_size=512,
    size_multiple=8,
    text_encoders=("CLIP ViT-L",),
    prompt_tokens=75,
    prompt_encoding="a1111",
    flow_matching=False,
    default_sampler="DPM++ 2M Karras",
    controlnet=_SD_CONTROLNET,
    draft=_sd_draft("latent-consistency/lcm-lora-sdv1-5"),
    checkpoint_marks=("cond_stage_model.transformer.",),  # CLIP ViT-L beside the UNet
    preview=LatentPreview((SD1_RGB,)),
    caches=("deepcache",),
    description="Stable Diffusion 1.x (1.4, 1.5 and its fine-tunes): 512 px, ~4 GB of GPU memory in fp16.",
)

SD2 = Family(
    id="sd2",
    label="SD 2.x",
    pipeline_classes=("StableDiffusionPipeline",),  # told from SD 1.x by its text encoder's width
    pipelines=_SD_PIPELINES,
    denoiser="unet",
    denoiser_class="UNet2DConditionModel",
    native_size=768,
    size_multiple=8,
    text_encoders=("OpenCLIP ViT-H",),
    prompt_tokens=75,
    prompt_encoding="a1111",
    flow_matching=False,
    default_sampler="DPM++ 2M Karras",
    controlnet=_SD_CONTROLNET,
    draft=_sd_draft("an LCM-LoRA trained for SD 2.x"),
    checkpoint_marks=("cond_stage_model.model.",),  # OpenCLIP
    preview=LatentPreview((SD1_RGB,)),
    caches=("deepcache",),
    description="Stable Diffusion 2.x: 768 px (2.0/2.1), ~5 GB in fp16.",
)

SDXL = Family(
    id="sdxl",
    label="SDXL",
    pipeline_classes=("StableDiffusionXLPipeline",),
    pipelines={
        "txt2img": "StableDiffusionXLPipeline",
        "img2img": "StableDiffusionXLImg2ImgPipeline",
        "inpaint": "StableDiffusionXLInpaintPipeline",
    },
    denoiser="unet",
    denoiser_class="UNet2DConditionModel",
    native_size=1024,
    size_multiple=8,
    text_encoders=("CLIP ViT-L", "OpenCLIP ViT-bigG"),
    prompt_tokens=75,
    prompt_encoding="a1111",
    flow_matching=False,
    default_sampler="DPM++ 2M Karras",
    controlnet=ControlNetSupport(
        model_class="ControlNetModel",
        pipelines={
            "txt2img": "StableDiffusionXLControlNetPipeline",
            "img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
            "inpaint": "StableDiffusionXLControlNetInpaintPipeline",
        },
        multi_class="MultiControlNetModel",
        modes=CONTROL_MODES,
        txt2img_map_argument="image",
    ),
    draft=_sd_draft("latent-consistency/lcm-lora-sdxl, or tianweiy/DMD2's 4-step LoRA"),
    checkpoint_marks=("conditioner.embedders.1.",),
    unsupported={
        "video2video": "diffusers has no SDXL AnimateDiff video-to-video; use an SD 1.x model with `--model`",
        "camera_moves": "camera moves are motion LoRAs for SD 1.x motion adapters; they don't work on SDXL models",
    },
    preview=LatentPreview((SDXL_RGB,)),
    caches=("deepcache",),
    description="SDXL 1.0 and its fine-tunes (Pony, Illustrious, ...): 1024 px, ~8 GB in fp16.",
)
