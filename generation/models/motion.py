"""AnimateDiff's parts: motion adapters (the temporal layers AnimateDiff adds to a Stable Diffusion
UNet), motion LoRAs (camera moves trained on those layers), and the clip pipelines a loaded model
gets with them. Engine thread only.

- A motion adapter comes from `SDBOT_MOTION_ADAPTERS` (a diffusers `MotionAdapter` folder or Hub
  id already downloaded), or is the built-in `tiny` one, made for the tiny model's UNet (random
  weights in the real architecture, saved and loaded back through `from_pretrained` like any other).
- A clip pipeline is `AnimateDiffPipeline.from_pipe(model, motion_adapter=...)` (SD 1.x) or
  `AnimateDiffSDXLPipeline` (SDXL); video2video is `AnimateDiffVideoToVideoPipeline.from_pipe` of
  the former, sharing its motion UNet. `from_pipe` shares the VAE and text encoders, but the motion
  UNet is a new module holding a copy of the UNet's weights (UNetMotionModel.from_unet2d), so a
  model keeps the pipelines of ONE motion adapter at a time: asking for another drops them.
- Camera moves (`SDBOT_MOTION_LORAS`, or the built-in `tiny-zoom`) load once per clip pipeline
  through diffusers' `load_lora_weights`, and are active only in the jobs that name them
  (`Adapters.applied(..., extra=...)` sets them beside the job's own LoRAs).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from config.models import MotionAdapterEntry
from generation.errors import EngineUserError, ModelLoadError
from generation.models import tiny_config
from generation.models.tiny import SEED, build_atomically, build_tiny_pipeline

log = logging.getLogger(__name__)

TINY_MOTION = "tiny"  # the built-in motion adapter of the tiny model
TINY_CAMERAS = ("tiny-zoom",)  # its built-in camera move
MOTION_VERSION = "tiny-motion-v1"  # bump when the recipe changes, so cached copies are rebuilt
TINY_MOTION_CONFIG: dict[str, Any] = {
    "block_out_channels": tiny_config.BLOCKS,
    "motion_layers_per_block": tiny_config.UNET["layers_per_block"],
    "motion_num_attention_heads": 4,
    "motion_norm_num_groups": tiny_config.UNET["norm_num_groups"],
    "motion_max_seq_length": 32,
}
# Random motion layers at their initial scale barely move a picture; these make the frames of a
# tiny clip clearly depend on each other (and a camera LoRA clearly change them), so tests of
# context windows, motion and cameras can fail.
MOTION_OUTPUT_SCALE = 3.0
CAMERA_RANK = 4
CAMERA_LAYERS = re.compile(r"motion_modules\.\d+\.transformer_blocks\.\d+\.attn\d\.(to_q|to_k|to_v|to_out\.0)$")


def ensure_tiny_motion(models_dir: Path) -> Path:
    """The folder of the tiny motion adapter (`adapter/`) and its camera LoRA (`tiny-zoom.safetensors`)."""
    root = Path(models_dir) / MOTION_VERSION
    if (root / "adapter" / "config.json").exists() and (root / "tiny-zoom.safetensors").exists():
        return root
    build_atomically(root, _save_tiny_motion)
    return root


def _save_tiny_motion(folder: Path) -> None:
    adapter = build_tiny_motion_adapter()
    adapter.save_pretrained(folder / "adapter", safe_serialization=True)
    _save_tiny_camera(adapter, folder / "tiny-zoom.safetensors")


def build_tiny_motion_adapter() -> Any:
    from diffusers import MotionAdapter

    state = torch.random.get_rng_state()
    torch.manual_seed(SEED + 300)
    try:
        adapter = MotionAdapter(**TINY_MOTION_CONFIG)
        with torch.no_grad():
            for name, module in adapter.named_modules():
                if name.endswith("proj_out"):
                    module.weight.mul_(MOTION_OUTPUT_SCALE)
        return adapter
    finally:
        torch.random.set_rng_state(state)


def _save_tiny_camera(adapter: Any, path: Path) -> None:
    """A random LoRA on the tiny adapter's temporal attention, in the layout diffusers' motion
    LoRAs have (`unet.<module>.lora_A/B.weight`), so it loads through `load_lora_weights`."""
    from diffusers import UNetMotionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = torch.random.get_rng_state()
    torch.manual_seed(SEED + 301)
    try:
        unet = UNetMotionModel.from_unet2d(build_tiny_pipeline().unet, adapter)
        targets = sorted(name for name, _ in unet.named_modules() if CAMERA_LAYERS.search(name))
        config = LoraConfig(r=CAMERA_RANK, lora_alpha=CAMERA_RANK, target_modules=targets, init_lora_weights=False)
        unet.add_adapter(config, adapter_name="camera")
        weights = get_peft_model_state_dict(unet, adapter_name="camera")
    finally:
        torch.random.set_rng_state(state)
    save_file({f"unet.{key}": value.contiguous() for key, value in weights.items()}, str(path))


class MotionModels:
    """The configured motion adapters and camera LoRAs, and the clip pipelines built with them."""

    def __init__(
        self,
        adapters: dict[str, MotionAdapterEntry],
        cameras: dict[str, str],
        models_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
    ):
        self.entries = adapters
        self.cameras = cameras
        self.models_dir = Path(models_dir)
        self.device = device
        self.dtype = dtype
        self.loads = 0  # motion adapters loaded from disk (a bench and the tests read it)

    def pipeline(self, loaded: Any, kind: str, motion: str) -> Any:
        """The `animate` or `video2video` pipeline of the loaded model with the motion adapter
        `motion`, built once per model and adapter."""
        from diffusers import AnimateDiffPipeline, AnimateDiffSDXLPipeline, AnimateDiffVideoToVideoPipeline

        sdxl = "text_encoder_2" in loaded.txt2img.components
        if kind == "video2video" and sdxl:
            raise EngineUserError(
                "video2video runs on SD 1.x models: diffusers has no SDXL AnimateDiff video-to-video. Pick an SD 1.x --model."
            )
        key = f"{kind}:{motion}"
        if key not in loaded.clip_pipes:
            for other in [k for k in loaded.clip_pipes if not k.endswith(f":{motion}")]:
                del loaded.clip_pipes[other]  # each holds a copy of the UNet: one motion adapter at a time
            animate_key = f"animate:{motion}"
            if animate_key not in loaded.clip_pipes:
                adapter = self._load(motion, sdxl)
                cls = AnimateDiffSDXLPipeline if sdxl else AnimateDiffPipeline
                pipe = cls.from_pipe(loaded.txt2img, motion_adapter=adapter).to(self.device)
                pipe.set_progress_bar_config(disable=True)
                loaded.clip_pipes[animate_key] = pipe
            if kind == "video2video":
                pipe = AnimateDiffVideoToVideoPipeline.from_pipe(loaded.clip_pipes[animate_key])
                pipe.set_progress_bar_config(disable=True)
                loaded.clip_pipes[key] = pipe
        return loaded.clip_pipes[key]

    def camera_weights(self, pipe: Any, cameras: tuple[Any, ...]) -> dict[str, float]:
        """The camera LoRAs of a job (CameraRef: name, weight) loaded onto `pipe`, as adapter names
        and weights for `Adapters.applied(..., extra=...)`."""
        weights: dict[str, float] = {}
        loaded = set(pipe.get_list_adapters().get("unet", [])) if hasattr(pipe, "get_list_adapters") else set()
        for camera in cameras:
            adapter = f"camera-{re.sub(r'[^A-Za-z0-9_-]', '_', camera.name)}"
            if adapter not in loaded:
                source = self._camera_source(camera.name)
                try:
                    pipe.load_lora_weights(source, adapter_name=adapter)
                except Exception as error:  # noqa: BLE001 - diffusers refusing the file
                    raise EngineUserError(
                        f"I could not load the camera move `{camera.name}` ({source}): {type(error).__name__}: {error}. "
                        "It must be an AnimateDiff motion LoRA for this motion adapter (check SDBOT_MOTION_LORAS)."
                    ) from error
                loaded.add(adapter)
            weights[adapter] = weights.get(adapter, 0.0) + camera.weight
        return weights

    def _camera_source(self, name: str) -> str:
        if name in TINY_CAMERAS:
            return str(ensure_tiny_motion(self.models_dir) / f"{name}.safetensors")
        source = self.cameras.get(name)
        if source is None:
            raise EngineUserError(f"the camera move `{name}` is not configured any more (SDBOT_MOTION_LORAS).")
        return source

    def _load(self, name: str, sdxl: bool) -> Any:
        from diffusers import MotionAdapter

        if name == TINY_MOTION:
            source, family = str(ensure_tiny_motion(self.models_dir) / "adapter"), "sd1"
        else:
            entry = self.entries.get(name)
            if entry is None:
                raise EngineUserError(f"the motion adapter `{name}` is not configured any more (SDBOT_MOTION_ADAPTERS).")
            source, family = entry.source, entry.family
        if (family == "sdxl") != sdxl:  # the chat side checks this too; a config may change in between
            raise EngineUserError(f"the motion adapter `{name}` is made for {family}, and this model is not.")
        log.info("loading motion adapter %s from %s", name, source)
        try:
            adapter = MotionAdapter.from_pretrained(source, dtype=self.dtype, use_safetensors=True)
        except Exception as error:  # turn library errors into advice
            raise ModelLoadError(
                f"I could not load the motion adapter `{name}` ({source}): {type(error).__name__}: {error}. It must be a "
                "diffusers MotionAdapter folder or a Hub id already downloaded; check SDBOT_MOTION_ADAPTERS."
            ) from error
        self.loads += 1
        return adapter.to(self.device)


@contextlib.contextmanager
def context_windows(pipe: Any, frames: int, context: int, stride: int, call: dict[str, Any]) -> Iterator[None]:
    """A clip longer than `context` frames drawn in overlapping windows of `context` frames,
    `stride` apart (diffusers' FreeNoise: noise shuffled across windows, latents blended with
    pyramid weights), for this call only. Shorter clips are drawn whole, unchanged.

    FreeNoise refuses prompt embeddings (it encodes a prompt per keyframe itself), and ours carry
    A1111's syntax; so for the call it gets placeholder prompts, and the pipeline's
    `encode_prompt` is replaced by one that hands back our embeddings (`call`'s), which is exactly
    what FreeNoise interpolates between when every frame has the same prompt."""
    if frames <= context:
        yield
        return
    if not hasattr(pipe, "enable_free_noise"):  # AnimateDiffSDXLPipeline has no FreeNoise
        yield  # drawn whole: the motion layers still see every frame (up to their 32 positions)
        return
    positive, negative = call.pop("prompt_embeds"), call.pop("negative_prompt_embeds")
    call["prompt"], call["negative_prompt"] = "", ""

    def encode_prompt(
        prompt: Any, device: Any, num_images_per_prompt: int, do_classifier_free_guidance: bool, negative_prompt: Any = None, **_: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        count = (len(prompt) if isinstance(prompt, list) else 1) * num_images_per_prompt
        repeat = (count,) + (1,) * (positive.dim() - 1)
        return positive[:1].repeat(*repeat), negative[:1].repeat(*repeat) if do_classifier_free_guidance else None

    pipe.encode_prompt = encode_prompt  # on this instance only; removed below
    pipe.enable_free_noise(context_length=context, context_stride=stride)
    try:
        yield
    finally:
        pipe.disable_free_noise()
        del pipe.encode_prompt
