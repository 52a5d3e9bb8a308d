"""The built-in tiny ControlNets of the tiny model (one per control type; the other tiny families'
are in `tiny_families`) and the tiny Instruct Pix2Pix model: random weights in the real
architectures, built from the tiny model (`ControlNetModel.from_unet`; a UNet with 8 input
channels), saved with `save_pretrained` under the models folder and loaded through the same code
as real ones. They steer noise, so every control and /edit can be tried and tested
offline; the bot says the tiny model draws noise.

Fresh from `from_unet` a ControlNet changes nothing (its output convolutions start at zero, as in
training), so the builder gives them random weights large enough that the map visibly changes the
picture; likewise the Pix2Pix UNet's image channels, so the picture visibly steers the edit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from generation.models import tiny_config
from generation.models.tiny import SEED, build_atomically, build_tiny_pipeline, pipeline_folder
from generation.spec import CONTROL_TYPES

CONTROLNETS_VERSION = "tiny-controlnet-v1"  # bump when the recipe changes
PIX2PIX_VERSION = "tiny-pix2pix-v1"
CONDITIONING_CHANNELS = (8, 16, 32, 32)  # three stride-2 convolutions: the map at 1/8, the latents' size
OUTPUT_SCALE = 0.3  # the zero convolutions' random weights


def ensure_tiny_controlnet(models_dir: Path, control_type: str, family: str = "sd1") -> Path:
    """The folder of the tiny ControlNet for `control_type` of `family` (the tiny model's, SD 1.x;
    tiny-sd3's, tiny-qwen's and tiny-zimage's are `tiny_families`'), built once (all types at once)."""
    if family != "sd1":
        from generation.control import tiny_families

        return tiny_families.ensure(models_dir, control_type, family)
    root = Path(models_dir) / CONTROLNETS_VERSION
    if not (root / control_type / "config.json").exists():
        build_atomically(root, _save_controlnets)
    return root / control_type


def ensure_tiny_pix2pix(models_dir: Path) -> Path:
    return pipeline_folder(models_dir, PIX2PIX_VERSION, build_tiny_pix2pix)


def _save_controlnets(folder: Path) -> None:
    folder.mkdir(parents=True)
    unet = build_tiny_pipeline().unet
    for index, control_type in enumerate(CONTROL_TYPES):
        build_tiny_controlnet(unet, SEED + 100 + index).save_pretrained(folder / control_type, safe_serialization=True)


def build_tiny_controlnet(unet, seed: int):  # type: ignore[no-untyped-def]
    from diffusers import ControlNetModel

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)
        with torch.no_grad():
            zero_convs = [
                *controlnet.controlnet_down_blocks,
                controlnet.controlnet_mid_block,
                controlnet.controlnet_cond_embedding.conv_out,
            ]
            for conv in zero_convs:
                conv.weight.copy_(OUTPUT_SCALE * torch.randn_like(conv.weight))
        return controlnet
    finally:
        torch.random.set_rng_state(state)


def build_tiny_pix2pix():  # type: ignore[no-untyped-def]
    """The tiny model as an Instruct Pix2Pix pipeline: its UNet with 8 input channels (latents and
    the picture's latents), the first 4 its own weights, as instruct-pix2pix was initialised."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    base = build_tiny_pipeline()
    state = torch.random.get_rng_state()
    torch.manual_seed(SEED + 200)
    try:
        unet = UNet2DConditionModel(**{**tiny_config.UNET, "in_channels": 8})
        own = base.unet.state_dict()
        conv_in = own["conv_in.weight"]
        own["conv_in.weight"] = torch.cat([conv_in, 0.5 * torch.randn_like(conv_in)], dim=1)
        unet.load_state_dict(own)
    finally:
        torch.random.set_rng_state(state)
    return StableDiffusionInstructPix2PixPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=unet,
        scheduler=base.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
