"""FLUX.1 (Black Forest Labs, 2024): a 12B rectified-flow transformer with a T5-XXL and a CLIP
text encoder, 1024 px. dev and Krea [dev] are guidance-distilled (`--cfg` is the guidance the
model was distilled with, 3.5 by default; there is no negative prompt); schnell is also step-
distilled (4 steps, no guidance at all). Sizes are multiples of 16 (the VAE's 8 times the
transformer's 2x2 patches); the scheduler's shift follows the image size (the pipeline computes
it from the number of latent patches, as BFL's reference does).

Prompts go to the pipeline's own `encode_prompt` as plain text: T5 reads up to 512 tokens, CLIP's
pooled output the first 77. A1111's weights, BREAK and prompt editing are refused (not ignored):
T5 has no notion of them, and a silent strip would draw something else than was asked.

Image references (`--sref`, `--oref`): its IP-Adapter or Redux (generation.control.flux_references)."""

from __future__ import annotations

from collections.abc import Sequence

from generation.models.families.base import DraftPath, EditSupport, Family, Variant
from generation.models.families.latent_rgb import FLUX_RGB, LatentPreview

PLAIN_TEXT = "its T5 encoder reads the prompt as plain text"
FLOW_SAMPLERS = {"Euler": ("FlowMatchEulerDiscreteScheduler", {})}


def dit_unsupported(label: str, *, negative: str | None) -> dict[str, str]:
    """What the DiT families of this issue don't do (yet), with the reasons users read. ControlNet
    is the family's own declaration (`Family.controlnet`): without one it is refused, naming it."""
    refused = {
        "clip_skip": f"{label} doesn't use CLIP's hidden layers, so clip skip has no meaning there",
        "tile": f"seamless tiling works on UNet models (SD 1.x/2.x, SDXL); {label} isn't one",
        "vae": f"{label} has its own 16-channel VAE; the configured VAEs are SD ones",
        "regions": f"regional prompting works through SD's UNet cross-attention; {label} has none",
        "reference": f"they are drawn by IP-Adapters (SDBOT_IP_ADAPTERS) for SD 1.x/2.x and SDXL, and on FLUX.1 also by Redux, or read "
        f"as pictures by the models that edit with several (FLUX.2 Klein, Qwen-Image-Edit-Plus); {label} has no IP-Adapter here. "
        "Pick such a model with `--model`",
        "embeddings": f"textual-inversion embeddings are for CLIP-only models (SD 1.x/2.x, SDXL), not {label}",
        "prompt_weights": f"{label} can't weight words: {PLAIN_TEXT}. Write the emphasis in words instead of (word:1.3)",
        "prompt_editing": f"{label} can't switch prompts while drawing: {PLAIN_TEXT}",
        "break": f"BREAK starts a new CLIP chunk in SD; {PLAIN_TEXT}, up to its own limit",
        "latent_upscale": f"the latent upscale works on SD's latents; use `--method hires` with {label}",
        "animate": f"AnimateDiff's motion modules are for SD 1.x and SDXL, not {label}",
        "video2video": f"AnimateDiff's motion modules are for SD 1.x, not {label}",
        "camera_moves": f"camera moves are motion LoRAs for SD 1.x motion adapters, not {label}",
        "deforum": f"Deforum clips on {label} aren't supported here yet",
        "train": f"training in chat is for SD 1.x/2.x and SDXL; {label} LoRAs can be trained elsewhere and uploaded",
    }
    if negative:
        refused["negative"] = negative
    return refused


def flux_variant(names: Sequence[str]) -> str | None:
    """dev (and Krea) have a guidance embedder; schnell has none."""
    return "dev" if any(name.startswith(("guidance_in.", "time_text_embed.guidance_embedder.")) for name in names) else "schnell"


FLUX = Family(
    id="flux",
    label="FLUX.1",
    pipeline_classes=("FluxPipeline", "FluxKontextPipeline"),
    pipelines={"txt2img": "FluxPipeline", "img2img": "FluxImg2ImgPipeline", "inpaint": "FluxInpaintPipeline"},
    denoiser="transformer",
    denoiser_class="FluxTransformer2DModel",
    native_size=1024,
    size_multiple=16,
    text_encoders=("T5-XXL", "CLIP ViT-L"),
    prompt_tokens=512,
    prompt_encoding="pipeline",
    flow_matching=True,
    default_sampler="Euler",
    samplers=FLOW_SAMPLERS,
    draft=DraftPath(source="model", steps=4, cfg=0.0, sampler="Euler", what="FLUX.1-schnell (4 steps, no guidance)"),
    img2img_takes_size=True,
    guidance="distilled",
    variants=(
        Variant("dev", "FLUX.1-dev", steps=28, cfg=3.5, config={"guidance_embeds": True}, name_marks=("krea",)),
        Variant(
            "schnell",
            "FLUX.1-schnell",
            steps=4,
            cfg=0.0,
            unsupported={"cfg": "FLUX.1-schnell is distilled to draw without guidance, so --cfg has no effect on it"},
            config={"guidance_embeds": False},
            name_marks=("schnell",),
        ),
        # Kontext [dev]: FLUX.1-dev's architecture trained to edit (the picture's tokens beside the
        # drawing's); it also draws from a prompt, as dev does.
        Variant("kontext", "FLUX.1 Kontext", steps=28, cfg=2.5, index={"_class_name": "FluxKontextPipeline"}, name_marks=("kontext",)),
    ),
    edit=EditSupport(
        pipelines={"kontext": "FluxKontextPipeline"},
        max_pictures=1,
        # The engine scales the picture to the edit's pixel count itself (generation.jobs.instruct),
        # so Kontext's own resize to its trained sizes (~1 MP) is off: the same scale at 1 MP.
        area_argument="max_area",
        fixed_arguments={"_auto_resize": False},
        pictures_note="one picture: Kontext [dev] edits the picture it is given",
        # Masked: its inpaint pipeline; a second picture is its `image_reference`, which the edit
        # then reads instead of the picture (the picture stays outside the mask).
        inpaint_pipelines={"kontext": "FluxKontextInpaintPipeline"},
        inpaint_max_pictures=2,
        inpaint_reference_argument="image_reference",
    ),
    # BFL's names, and diffusers' (GGUF and fp8 files are published in both)
    checkpoint_marks=("double_blocks.", "single_transformer_blocks."),
    variant_from_keys=flux_variant,
    # Image references: its IP-Adapter or Redux (generation.control.flux_references).
    unsupported={
        feature: why
        for feature, why in dit_unsupported(
            "FLUX.1",
            negative="FLUX.1 is guidance-distilled and has no negative prompt: describe what you want instead of using --no",
        ).items()
        if feature != "reference"
    },
    preview=LatentPreview((FLUX_RGB,), patch=2),
    # Caches: its CFG is distilled: one call a step.
    caches=("fbc", "taylorseer", "magcache", "pab"),
    description="FLUX.1 dev, schnell and Krea: 1024 px; ~33 GB in bf16, ~17 GB with an fp8 or Q8 transformer, ~8 GB with Q4 and offload.",
)
