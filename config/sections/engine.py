"""Settings sections for the models that draw and help: the base models and their speed options,
post-processing and helper models, ControlNet and Instruct Pix2Pix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from config.models import SINGLE_FILE_SUFFIXES, ControlNetEntry, IPAdapterEntry, ModelEntry, ModelRegistry
from config.sections.parse import NamedFiles
from generation.models.families import CACHE_CHOICES, FAMILIES, family, is_family

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"


class ModelSettings(BaseModel):
    """Models and speed

    Which model draws when a request names none, which others people may pick, where they run,
    and the speed options that `bench/gpu.py` measures (see [Speed](speed.md)).
    """

    model: str = Field(
        DEFAULT_MODEL,
        description="The default model: a Hub id (fetched on first use), a diffusers folder, a single `.safetensors` checkpoint, or `tiny`.",
    )
    models: dict[str, ModelEntry] = Field(
        default_factory=dict,
        description='More named models, as JSON (`{"dream": {"source": "/m/dream.safetensors", "config": "/m/sd15"}}`) '
        "or `[models.NAME]` tables in the TOML file.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="`auto` (CUDA, then MPS, then CPU), `cpu`, `cuda`, `mps`.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="`auto` (float16 on GPUs, float32 on CPU), `float32`, `float16`, `bfloat16`."
    )
    max_loaded_models: int = Field(1, ge=1, description="Models (pipelines) kept loaded at once; the least recently used is dropped.")
    attention: Literal["sdpa", "classic"] = Field(
        "sdpa",
        description="`sdpa`: PyTorch's scaled_dot_product_attention in the UNet and VAE (flash / memory-efficient kernels, "
        "diffusers' default); `classic`: diffusers' plain attention (`AttnProcessor`), a slower baseline and a fallback "
        "where an SDPA kernel misbehaves. Measured by `bench/gpu.py`.",
    )
    channels_last: bool = Field(
        False,
        description="UNet and VAE weights in channels_last (NHWC) memory format: faster convolutions on most NVIDIA GPUs, "
        "same pixels. See `bench/gpu.py` for your GPU.",
    )
    torch_compile: bool = Field(
        False,
        description="`torch.compile` (inductor) the UNet and the VAE decoder in place, so img2img/inpaint/ControlNet "
        "pipelines sharing them are compiled too. The first job of each new size compiles (tens of seconds to minutes "
        "on a GPU; minutes on a CPU: not worth it there); after one such recompile, sizes are symbolic and most new "
        "sizes need none. Jobs with LoRAs run the UNet uncompiled (each LoRA combination would otherwise recompile "
        "the UNet), as do training runs; pixels may differ from uncompiled by rounding (a few of 255).",
    )
    compile_blocks: bool = Field(
        False,
        description="Regional `torch.compile`: each of the denoiser's repeated blocks (a DiT's transformer blocks, a UNet's "
        "transformer blocks) compiled in place, once per block class (diffusers' `compile_repeated_blocks`): seconds to "
        "compile where a whole model takes a minute. Off by default (on a CPU it only costs compile time; on a GPU "
        "`bench/gpu.py` shows the gain); ignored where `torch_compile` compiles the whole UNet.",
    )
    cache: str = Field(
        "off",
        description="The cache accelerator every picture job draws with unless `--fast` or the model's `cache` says "
        "otherwise: `off`, `on` (each family's own: DeepCache on SD 1.x/2.x/SDXL, First Block Cache on FLUX.1 and "
        "Qwen-Image, TaylorSeer on Chroma and FLUX.2, PAB on SD 3.5 and Z-Image), or a cache's name (`fbc`, "
        "`taylorseer`, `magcache`, `pab`, `deepcache`: used on the families that take it). Faster, with a small change "
        "in the picture (`bench/cache_cost.py`); recorded in the PNG parameters.",
    )
    vaes: NamedFiles = Field(
        default_factory=dict,
        description="Named VAEs (`name=/path`, a diffusers folder, Hub id or single `.safetensors`; or a TOML table) "
        "for `--vae`, `/settings --vae` and a model's `vae`.",
    )
    preview: Literal["off", "linear", "taesd"] = Field(
        "linear",
        description="Live previews in the status message while a picture or clip is drawn: `linear` (the model "
        "family's fixed latent-to-RGB projection, blurry, nearly free), `taesd` (a tiny autoencoder per family from "
        "`SDBOT_PREVIEW_MODELS`, sharper; `linear` for a family without one), `off`.",
    )
    preview_seconds: float = Field(
        1.5, gt=0, description="Least time between two live previews of a job (the platforms' edit limits may space them more)."
    )
    preview_models: NamedFiles = Field(
        default_factory=dict,
        description="Tiny autoencoders for `SDBOT_PREVIEW=taesd`, by model family id (`sd1=/m/taesd,sdxl=/m/taesdxl,"
        "flux=/m/taef1`): diffusers `AutoencoderTiny` folders (madebyollin's TAESD, TAESDXL, TAESD3, TAEF1), "
        "`.safetensors` weights, nothing downloaded.",
    )
    draft: NamedFiles = Field(
        default_factory=dict,
        description="The fast path of `--draft` per model family, `family=what` pairs (or a TOML table): for sd1, sd2, "
        "sdxl and qwen a few-step LoRA `.safetensors` file (LCM-LoRA, DMD2's 4-step LoRA; Qwen-Image-Lightning), read "
        "as safetensors only and applied like a user's LoRA; for flux, flux2, sd3 and zimage the name of a distilled model "
        "of the same family in the registry (FLUX.1-schnell, a distilled FLUX.2 Klein, SD 3.5 Large Turbo, Z-Image Turbo). "
        "Each family declares the steps, CFG and sampler of its fast path. A family without one draws its drafts with a "
        "third of the model's steps, and the reply says so. Drafts are drawn at half the size.",
        json_schema_extra={"doc_default": "none: a third of the steps, at half the size"},
    )

    @field_validator("cache")
    @classmethod
    def _cache(cls, value: str) -> str:
        if value.strip().lower() not in CACHE_CHOICES:
            raise ValueError(f"SDBOT_CACHE: `{value}` is not one of {', '.join(CACHE_CHOICES)}")
        return value.strip().lower()

    @field_validator("draft")
    @classmethod
    def _draft(cls, value: dict[str, str]) -> dict[str, str]:
        """Each key a family with a fast path, each value of the kind that family declares: a
        `.safetensors` file (never a pickle) or a model's name (checked against the registry when
        used: models added in chat count too)."""
        for key, what in value.items():
            found = family(key) if is_family(key) else None
            if found is None or found.draft is None:
                with_paths = ", ".join(f.id for f in FAMILIES if f.draft is not None)
                raise ValueError(f"SDBOT_DRAFT: `{key}` is not a family with a fast path ({with_paths})")
            is_file = what.lower().endswith(SINGLE_FILE_SUFFIXES)
            if found.draft.source == "lora" and not what.lower().endswith(".safetensors"):
                raise ValueError(
                    f"SDBOT_DRAFT: {found.label}'s draft is a LoRA, a `.safetensors` file (pickles can run code); got `{what}`"
                )
            if found.draft.source == "model" and is_file:
                raise ValueError(f"SDBOT_DRAFT: {found.label}'s draft is a distilled model: the name of one in SDBOT_MODELS, not a file")
        return value

    def registry(self) -> ModelRegistry:
        return ModelRegistry.from_settings(self.model, self.models)


class HelperModelSettings(BaseModel):
    """Post-processing and helper models

    Models for `/upscale --method esrgan`, `/facefix`, `/inpaint --select`, `/enhance` and
    `/describe`. The bot downloads none of these files: a Hub id must already be in the local
    Hugging Face cache. Most post-processing models are published as `.pth` pickles; convert each
    once on a trusted machine (spandrel loads it, `safetensors.torch.save_file` writes it),
    because the bot refuses pickles: loading one can run code hidden in it.
    """

    upscalers: NamedFiles = Field(
        default_factory=dict,
        description="Super-resolution model files for `--method esrgan`, `name=/path.safetensors,name2=…` (or a TOML "
        "table); the first is the default. Any architecture spandrel detects (Real-ESRGAN, ESRGAN, SwinIR, …).",
    )
    face_restorers: NamedFiles = Field(
        default_factory=dict,
        description="Face-restoration model files for `/facefix`, in the same form as `SDBOT_UPSCALERS`; the first is "
        "the default. GFPGAN, RestoreFormer (`.safetensors`); CodeFormer too where the operator installed "
        "spandrel_extra_arches (non-commercial licence: never installed by default; docs/deploy.md).",
    )
    face_detector: str | None = Field(
        None,
        description="A YuNet `.onnx` face detector file, more accurate than the Haar cascade shipped with OpenCV, "
        "which finds faces without it.",
        json_schema_extra={"doc_default": "OpenCV's Haar cascade"},
    )
    hand_detector: str | None = Field(
        None,
        description="A YOLOv8-style hand detector exported to ONNX (e.g. ADetailer's `hand_yolov8n` exported with "
        "ultralytics' `export(format='onnx')`; never the `.pt` pickle), for `--detail hand`. None: `--detail hand` is "
        "refused; OpenCV ships no hand detector.",
    )
    person_detector: str | None = Field(
        None,
        description="A YOLOv8-style person detector exported to ONNX (one class, e.g. `person_yolov8n`), for "
        "`--detail person`; more accurate than OpenCV's built-in HOG people detector, which is used without it.",
        json_schema_extra={"doc_default": "OpenCV's HOG people detector"},
    )
    segmenter: str | None = Field(
        None,
        description="A CLIPSeg model (a folder saved with `save_pretrained`, or a Hub id such as "
        "`CIDAS/clipseg-rd64-refined` already in the local Hugging Face cache: nothing is downloaded at run time) "
        "for `/inpaint --select`.",
    )
    enhancer: str | None = Field(
        None,
        description="A text-generation model for `/enhance` (any causal LM transformers loads: a folder saved with "
        "`save_pretrained`, or a Hub id already downloaded once, e.g. `Gustavosta/MagicPrompt-Stable-Diffusion`; "
        "`.safetensors` weights only). None: `/enhance` is unavailable.",
    )
    enhance_max_new_tokens: int = Field(
        75, ge=8, le=256, description="Most tokens `/enhance` adds to the user's words (8–256; CLIP reads 75 tokens of a prompt)."
    )
    captioner: str | None = Field(
        None,
        description="A BLIP captioning model for `/describe` (folder or downloaded Hub id, e.g. "
        "`Salesforce/blip-image-captioning-large`). None: `/describe` is unavailable.",
    )
    describe_clip: str | None = Field(
        None,
        description="A CLIP model (folder or downloaded Hub id, e.g. `openai/clip-vit-large-patch14`) that ranks "
        "`/describe`'s term lists against the image, as CLIP Interrogator does; none: `/describe` gives the caption alone.",
    )
    describe_terms_dir: Path | None = Field(
        None,
        description="A folder of `<list>.txt` term files (one term per line, `#` comments): a file named like a built-in "
        "list in `config/describe_terms/` (`mediums`, `movements`, `flavors`, `artists`) replaces it (an empty file "
        "switches it off), any other name adds a list.",
    )


class ControlSettings(BaseModel):
    """ControlNet and Instruct Pix2Pix

    The models behind `/control` and `/edit`, files you download once. On the `tiny` model,
    built-in tiny ones serve every ControlNet type and `/edit` (on `tiny-sd3`, `tiny-qwen` and
    `tiny-zimage`, every ControlNet type), so both work without any of these.
    """

    controlnets: dict[str, ControlNetEntry] = Field(
        default_factory=dict,
        description="ControlNet models for `/control`, by name: `type` (canny, depth, openpose, lineart, lineart_anime, "
        "softedge, scribble, tile, qr), `source` (a diffusers folder with `config.json` and `.safetensors`, or a cached "
        "Hub id such as `lllyasviel/control_v11p_sd15_canny`), optional `architecture` and `description`; TOML "
        "`[controlnets.canny]` or JSON. The first of a type that fits the job's model is used unless `--control-model`; "
        "a ControlNet fits the models of the family it is made for, read from its `config.json` (`ControlNetModel`: SD "
        "1.x, 2.x or SDXL by its text width, which must be the model's; `SD3ControlNetModel`: SD 3.5; "
        "`QwenImageControlNetModel`: Qwen-Image; `ZImageControlNetModel`: Z-Image), else from `architecture`. On the "
        "tiny models of those families, built-in tiny ControlNets serve every type.",
        json_schema_extra={"doc_default": "none (tiny: built-in)"},
    )
    controlnet_cache_bytes: int = Field(
        4 * 1024**3,
        ge=0,
        description="ControlNet and IP-Adapter weights kept loaded beside the base model (least recently used dropped first).",
    )
    ip_adapters: dict[str, IPAdapterEntry] = Field(
        default_factory=dict,
        description="IP-Adapters for image references (`--sref`, `--oref`), by name: `source` (a folder), `weight_name` "
        "(the `.safetensors` file in it, default `ip-adapter_sd15.safetensors`), `image_encoder` (a "
        "`CLIPVisionModelWithProjection` folder, e.g. h94/IP-Adapter's `models/image_encoder`), `architecture` (sd1, "
        "sd2, sdxl or flux, default sd1), `kind` (ip-adapter, default; or redux: FLUX.1 Redux, `source` a "
        "`FluxPriorReduxPipeline` folder, for `--oref` only); TOML `[ip_adapters.sd15]` or JSON. The first whose "
        "architecture is the model's family and that draws the job's references is used. On the tiny models "
        "(`tiny`, `tiny-flux`) built-in tiny ones serve.",
        json_schema_extra={"doc_default": "none (tiny: built-in)"},
    )
    depth_model: str | None = Field(
        None,
        description="A depth-estimation model (a DPT or Depth Anything folder, or cached Hub id such as "
        "`Intel/dpt-hybrid-midas`; `.safetensors`) for `/control depth`.",
    )
    annotators: Path | None = Field(
        None,
        description="A folder with lllyasviel/Annotators' files (`body_pose_model.pth`, `hand_pose_model.pth`, "
        "`facenet.pth`, `sk_model.pth`, `sk_model2.pth`, `netG.pth`, `ControlNetHED.pth`, `table5_pidinet.pth`) for "
        "openpose, lineart, softedge and scribble_hed. They are PyTorch pickles; sdbot reads them with torch's "
        "weights-only unpickler, which refuses anything but tensors.",
    )
    instruct_model: str | None = Field(
        None,
        description="What `/edit` runs on when the person's own model doesn't edit: the name of a model that edits "
        "(FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2 Klein, set up in SDBOT_MODELS), or an Instruct Pix2Pix model (diffusers folder or cached "
        "Hub id, e.g. `timbrooks/instruct-pix2pix`). Unset: the first model that edits, else on the tiny model a "
        "built-in tiny Pix2Pix.",
        json_schema_extra={"doc_default": "none (tiny: built-in)"},
    )
    instruct_image_cfg: float = Field(1.5, ge=0, le=10, description="The default `--image-cfg` of `/edit`.")
