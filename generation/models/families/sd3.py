"""Stable Diffusion 3.5 (Stability AI, 2024): an MMDiT (joint text-image transformer) with three
text encoders, CLIP-L and OpenCLIP bigG (pooled and hidden states) and T5-XXL (256 tokens), and a
16-channel VAE; rectified flow with a fixed shift of 3. Real classifier-free guidance with a
negative prompt. Medium (2.5 B, 1024 px), Large (8 B) and Large Turbo (4 steps, no guidance).
Sizes in multiples of 16 (the VAE's 8 times 2x2 patches).

diffusers 0.42.1's inpaint pipeline decodes its latents without the VAE's shift factor
(diffusers #13611): the engine decodes them itself (`quirks`)."""

from __future__ import annotations

from generation.models.families.base import ControlNetSupport, DraftPath, Family, Variant
from generation.models.families.flux import FLOW_SAMPLERS, dit_unsupported
from generation.models.families.latent_rgb import SD3_RGB, LatentPreview

# ControlNets: InstantX's (zero pooled projections, the map's latents without the VAE's shift) and
# SAI's SD 3.5 Large ones (the transformer's patch embedding, no text stream). diffusers 0.42.1 has
# a txt2img ControlNet pipeline only; its inpainting one is for inpainting ControlNets (alimama's),
# whose input is the picture and its mask rather than a map. It samples the map's latents from the
# global RNG (`map_latents_unseeded`).
CONTROLNET = ControlNetSupport(
    model_class="SD3ControlNetModel",
    pipelines={"txt2img": "StableDiffusion3ControlNetPipeline"},
    missing={
        "img2img": "diffusers has no SD 3.5 ControlNet pipeline that starts from a picture",
        "inpaint": "SD 3.5's ControlNet inpainting pipeline is for inpainting ControlNets (their input is the picture and "
        "its mask, not a map)",
    },
    multi_class="SD3MultiControlNetModel",
    map_latents_unseeded=True,
)

SD3 = Family(
    id="sd3",
    label="SD 3.5",
    pipeline_classes=("StableDiffusion3Pipeline",),
    pipelines={
        "txt2img": "StableDiffusion3Pipeline",
        "img2img": "StableDiffusion3Img2ImgPipeline",
        "inpaint": "StableDiffusion3InpaintPipeline",
    },
    denoiser="transformer",
    denoiser_class="SD3Transformer2DModel",
    native_size=1024,
    size_multiple=16,
    text_encoders=("CLIP ViT-L", "OpenCLIP ViT-bigG", "T5-XXL"),
    prompt_tokens=256,
    prompt_encoding="pipeline",
    flow_matching=True,
    default_sampler="Euler",
    samplers=FLOW_SAMPLERS,
    draft=DraftPath(source="model", steps=4, cfg=0.0, sampler="Euler", what="SD 3.5 Large Turbo (4 steps, no guidance)"),
    cfg_off_at=1.0,
    img2img_takes_size=True,
    guidance="cfg",
    variants=(
        Variant("large", "SD 3.5 Large", steps=28, cfg=3.5, config={"num_layers": 38}),
        Variant("medium", "SD 3.5 Medium", steps=40, cfg=4.5, config={"num_layers": 24}, name_marks=("medium",)),
        Variant(
            "large-turbo",
            "SD 3.5 Large Turbo",
            steps=4,
            cfg=0.0,
            unsupported={"cfg": "SD 3.5 Large Turbo is distilled to draw without guidance, so --cfg has no effect on it"},
            name_marks=("turbo",),
        ),
    ),
    unsupported=dit_unsupported("SD 3.5", negative=None),
    # SAI's names; diffusers' (GGUF files): its patch embedding beside a text context embedder
    checkpoint_marks=("joint_blocks.", ("pos_embed.proj.", "context_embedder.", "transformer_blocks.")),
    variant_from_keys=lambda names: (
        "large" if any(n.startswith(("joint_blocks.37.", "transformer_blocks.37.")) for n in names) else "medium"
    ),
    quirks=frozenset({"inpaint_decode_without_shift"}),
    controlnet=CONTROLNET,
    preview=LatentPreview((SD3_RGB,)),
    # Caches: its last block returns no text stream, which diffusers 0.42.1's First Block Cache and TaylorSeer fail on; MagCache has no SD 3.5 ratios.
    caches=("pab",),
    repeated_blocks=("JointTransformerBlock",),  # diffusers 0.42.1 names none for SD3Transformer2DModel
    description="SD 3.5 Medium and Large: 1024 px; Large ~28 GB in bf16 with T5 (~18 GB without), Medium ~15 GB.",
)
