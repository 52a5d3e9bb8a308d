"""Qwen-Image (Alibaba Qwen, 2025): a 20 B MMDiT with a Qwen2.5-VL 7B text encoder, strong at
writing text in pictures; 1328 px at 1:1; rectified flow with a resolution-dependent shift and a
terminal stretch. Its CFG is `true_cfg_scale`, on only with a negative prompt: as its model card
does, a blank one (" ") is sent when none is given, so --cfg always means CFG. Sizes in 16s.

One step breaks its scheduler in diffusers 0.42.1 (`shift_terminal` turns the sigmas to NaN and
the picture black), so it takes at least 2."""

from __future__ import annotations

from generation.models.families.base import ControlNetSupport, DraftPath, EditSupport, Family, Variant
from generation.models.families.flux import FLOW_SAMPLERS, dit_unsupported
from generation.models.families.latent_rgb import WAN21_RGB, LatentPreview

# ControlNets: InstantX's (Qwen-Image-ControlNet-Union and the like). diffusers 0.42.1 has a txt2img
# ControlNet pipeline; its inpainting one is for InstantX's inpainting ControlNet (the picture and its
# mask are its input, not a map). Its multi-ControlNet runs several maps through one union ControlNet
# only, and a control here is one ControlNet per map: one control at a time.
CONTROLNET = ControlNetSupport(
    model_class="QwenImageControlNetModel",
    pipelines={"txt2img": "QwenImageControlNetPipeline"},
    missing={
        "img2img": "diffusers has no Qwen-Image ControlNet pipeline that starts from a picture",
        "inpaint": "Qwen-Image's ControlNet inpainting pipeline is for inpainting ControlNets (their input is the picture "
        "and its mask, not a map)",
    },
    single_only="Qwen-Image's ControlNet pipeline runs several maps only through one union ControlNet, and each control here has its own",
)

QWEN_IMAGE = Family(
    id="qwen",
    label="Qwen-Image",
    pipeline_classes=("QwenImagePipeline", "QwenImageEditPipeline", "QwenImageEditPlusPipeline"),
    pipelines={"txt2img": "QwenImagePipeline", "img2img": "QwenImageImg2ImgPipeline", "inpaint": "QwenImageInpaintPipeline"},
    denoiser="transformer",
    denoiser_class="QwenImageTransformer2DModel",
    native_size=1328,
    size_multiple=16,
    text_encoders=("Qwen2.5-VL 7B",),
    prompt_tokens=512,
    prompt_encoding="pipeline",
    flow_matching=True,
    default_sampler="Euler",
    samplers=FLOW_SAMPLERS,
    draft=DraftPath(
        source="lora", steps=8, cfg=1.0, sampler="Euler", what="an 8-step Qwen-Image-Lightning LoRA (lightx2v/Qwen-Image-Lightning)"
    ),
    cfg_off_at=1.0,
    img2img_takes_size=True,
    guidance="cfg",
    cfg_argument="true_cfg_scale",
    blank_negative=" ",
    min_steps=2,
    controlnet=CONTROLNET,
    variants=(
        Variant("", "Qwen-Image", steps=50, cfg=4.0),
        # The edit models (Qwen-Image-Edit, and -Plus: Edit-2509/2511, several pictures), by their
        # pipeline class in model_index.json or their name; "edit-plus" first: its names hold "edit".
        Variant(
            "edit-plus",
            "Qwen-Image-Edit-Plus",
            steps=40,
            cfg=4.0,
            index={"_class_name": "QwenImageEditPlusPipeline"},
            name_marks=("edit-plus", "edit-2509", "edit-2511"),
        ),
        Variant("edit", "Qwen-Image-Edit", steps=50, cfg=4.0, index={"_class_name": "QwenImageEditPipeline"}, name_marks=("edit",)),
    ),
    # Its edit pipelines read the pictures twice: through Qwen2.5-VL (at 384², with the instruction)
    # and through the VAE (at 1024², as references beside the drawing's tokens).
    edit=EditSupport(
        pipelines={"edit": "QwenImageEditPipeline", "edit-plus": "QwenImageEditPlusPipeline"},
        max_pictures=1,
        max_pictures_of={"edit-plus": 3},
        pictures_note='Qwen-Image-Edit one picture; -Plus up to 3 ("picture 1", "picture 2", ... in the instruction)',
        # Masked: Qwen-Image-Edit's inpaint pipeline (one picture, drawn at ~1024² whatever the
        # size asked); diffusers 0.42.1 has none for -Plus.
        inpaint_pipelines={"edit": "QwenImageEditInpaintPipeline"},
    ),
    unsupported=dit_unsupported("Qwen-Image", negative=None),
    # diffusers' names (diffusers has no Qwen-Image entry among its single-file checkpoints)
    checkpoint_marks=(("txt_norm.", "img_in.", "transformer_blocks.0.img_mod."),),
    preview=LatentPreview((WAN21_RGB,), patch=2),
    # Caches: PAB would share attention outputs between its separate conditional and unconditional calls.
    caches=("fbc", "taylorseer"),
    description="Qwen-Image: 1328 px, text in pictures; ~57 GB in bf16 (transformer 41, Qwen2.5-VL 16), ~36 GB with a Q8_0 "
    "transformer, ~22 GB with Q8_0 and model offload.",
)
