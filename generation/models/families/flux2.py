"""FLUX.2 Klein (Black Forest Labs, 2026): the small FLUX.2 models (4 B and 9 B) with a Qwen3 text
encoder (hidden states of three layers) and FLUX.2's 32-channel VAE; the distilled ones draw in 4
steps without guidance, the Base ones take CFG. Sizes in multiples of 16.

diffusers 0.42.1 has no img2img pipeline for it (its reference images are an edit drawn from
noise, not img2img): remixes, Vary and hires upscales run on its inpaint pipeline with the whole
picture masked, which also gives the model the picture as a reference, as diffusers' Klein inpaint
does. Its pipelines take a negative prompt only as embeddings: the engine encodes it."""

from __future__ import annotations

from generation.models.families.base import DraftPath, EditSupport, Family, Variant
from generation.models.families.flux import FLOW_SAMPLERS, dit_unsupported
from generation.models.families.latent_rgb import FLUX2_RGB, LatentPreview

FLUX2_KLEIN = Family(
    id="flux2",
    label="FLUX.2 Klein",
    pipeline_classes=("Flux2KleinPipeline",),
    pipelines={"txt2img": "Flux2KleinPipeline", "inpaint": "Flux2KleinInpaintPipeline"},
    denoiser="transformer",
    denoiser_class="Flux2Transformer2DModel",
    native_size=1024,
    size_multiple=16,
    text_encoders=("Qwen3 4B/8B",),
    prompt_tokens=499,  # 512 with the chat template's 13
    prompt_encoding="pipeline",
    flow_matching=True,
    default_sampler="Euler",
    samplers=FLOW_SAMPLERS,
    draft=DraftPath(source="model", steps=4, cfg=1.0, sampler="Euler", what="a distilled FLUX.2 Klein (4 steps, no guidance)"),
    cfg_off_at=1.0,
    negative_as_embeds=True,
    img2img_by_inpaint=True,
    variants=(
        # Base first: what a model is when nothing says (the tiny one; a Hub id not downloaded yet)
        Variant("base", "FLUX.2 Klein Base", steps=50, cfg=4.0, name_marks=("base",)),
        Variant(
            "distilled",
            "FLUX.2 Klein",
            steps=4,
            cfg=1.0,
            unsupported={"cfg": "FLUX.2 Klein (distilled) draws without guidance, so --cfg has no effect on it; its Base models take it"},
            index={"is_distilled": True},
        ),
    ),
    # Klein edits with the same pipeline: the pictures are references the drawing attends to. The
    # pipeline sets no limit; each picture adds its tokens (4096 at 1024²), so sdbot takes four.
    edit=EditSupport(
        pipelines={"*": "Flux2KleinPipeline"},
        max_pictures=4,
        min_side=64,  # Flux2ImageProcessor.check_image_input
        max_aspect=8,
        pictures_note='up to 4 pictures, each a reference the edit can take from ("the cat from picture 2")',
        # Masked: its inpaint pipeline, which reads the picture as a reference too, and one more
        # picture as `image_reference` (several would be stacked as a batch, not as references).
        inpaint_pipelines={"*": "Flux2KleinInpaintPipeline"},
        inpaint_max_pictures=2,
        inpaint_reference_argument="image_reference",
    ),
    unsupported=dit_unsupported("FLUX.2 Klein", negative=None),
    # BFL's and diffusers' names; FLUX.2 [dev] (a guidance embedder, another text encoder) is not Klein
    checkpoint_marks=("single_stream_modulation.", "double_stream_modulation_img."),
    refuse_marks=("guidance_in.", "time_guidance_embed.guidance_embedder."),
    preview=LatentPreview((FLUX2_RGB,), patch=2),
    # Caches: diffusers 0.42.1's First Block Cache fails on its blocks' list output; PAB would share attention between the base model's separate CFG calls.
    caches=("taylorseer",),
    description="FLUX.2 Klein 4B and 9B: 1024 px; 4B ~16 GB in bf16 with its Qwen3 4B encoder, 9B ~34 GB.",
)
