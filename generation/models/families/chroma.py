"""Chroma (lodestones, 2025): FLUX.1-schnell's architecture slimmed to 8.9B parameters, retrained
without guidance distillation, with T5-XXL alone as its text encoder. So unlike FLUX.1 it has real
classifier-free guidance and a negative prompt. Everything else as FLUX.1 (`flux.py`), but image
references: FLUX.1's IP-Adapter and Redux are not made for it."""

from __future__ import annotations

from generation.models.families.base import Family, Variant
from generation.models.families.flux import FLOW_SAMPLERS, dit_unsupported
from generation.models.families.latent_rgb import FLUX_RGB, LatentPreview

CHROMA = Family(
    id="chroma",
    label="Chroma",
    pipeline_classes=("ChromaPipeline",),
    pipelines={"txt2img": "ChromaPipeline", "img2img": "ChromaImg2ImgPipeline", "inpaint": "ChromaInpaintPipeline"},
    denoiser="transformer",
    denoiser_class="ChromaTransformer2DModel",
    native_size=1024,
    size_multiple=16,
    text_encoders=("T5-XXL",),
    prompt_tokens=512,
    prompt_encoding="pipeline",
    flow_matching=True,
    default_sampler="Euler",
    samplers=FLOW_SAMPLERS,
    cfg_off_at=1.0,
    img2img_takes_size=True,
    guidance="cfg",
    variants=(Variant("", "Chroma", steps=30, cfg=4.0),),
    unsupported={
        **dit_unsupported("Chroma", negative=None),
        # diffusers would load FLUX.1's IP-Adapter into Chroma's transformer, but nothing says it draws there
        "reference": "FLUX.1's IP-Adapter and Redux were trained on FLUX.1 [dev]'s weights, which Chroma retrained, and none is "
        "made for Chroma. Pick an SD 1.x, SDXL or FLUX.1 model with `--model`",
    },
    checkpoint_marks=("distilled_guidance_layer.",),  # beside FLUX.1's blocks, which Chroma keeps
    preview=LatentPreview((FLUX_RGB,), patch=2),
    # Caches: diffusers 0.42.1's First Block Cache and MagCache can't read Chroma's blocks (their forward differs from FLUX.1's), and PAB would share attention between its separate CFG calls.
    caches=("taylorseer",),
    description="Chroma1 HD and Base: 1024 px; ~27 GB in bf16, ~14 GB with an fp8 or Q8 transformer.",
)
