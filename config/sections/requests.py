"""Settings sections for what one request may ask and gets by default: limits, defaults and
strengths, upscaling, styles and wildcards, uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from config.models import ModelEntry
from generation.models.families import family


class LimitSettings(BaseModel):
    """Limits of a request

    Bounds on what one request may ask. Out of bounds is an error the user sees, never a silent
    clamp. Each role's own limits (jobs per minute, GPU time, storage) are in
    [People and roles](#people-and-roles).
    """

    max_steps: int = Field(100, ge=1, description="Most sampling steps.")
    max_pixels: int = Field(1024 * 1024, ge=64 * 64, description="Most pixels (width × height) per image.")
    max_side: int = Field(2048, ge=64, description="Longest side of an image, in pixels.")
    min_side: int = Field(64, ge=8, description="Shortest side of an image, in pixels.")
    max_batch: int = Field(4, ge=1, le=16, description="Most images per job.")
    min_cfg: float = Field(1.0, description="Lowest guidance scale (CFG) a request may ask.")
    max_cfg: float = Field(30.0, description="Highest guidance scale (CFG) a request may ask.")
    max_prompt_chars: int = Field(1500, ge=10, description="Longest prompt and negative prompt, in characters.")
    max_queued_jobs_per_user: int = Field(
        5, ge=1, description="Jobs one person of the `default` role may have waiting or running (`trusted`: twice as many)."
    )
    max_request_jobs: int = Field(
        40,
        ge=1,
        le=1000,
        description="Most jobs one request may queue: a prompt's permutations (`{red, blue} fox`) times `--repeat` (40, as "
        "Midjourney's). Each job counts against the person's queue limits, and a request that would pass them is refused whole.",
    )
    max_compare_cells: int = Field(
        16,
        ge=1,
        le=25,
        description="Most cells of one `/compare` (its axes' values multiplied); at most 25, the U-buttons Discord shows "
        "under one message. A comparison is one job, drawn and charged as its cells.",
    )


class DefaultSettings(BaseModel):
    """Defaults and strengths

    What a request gets when it does not say. People change the first few for themselves with
    `/settings`; the strengths are those of the buttons and commands that redraw a picture.
    """

    default_steps: int = Field(
        25,
        ge=1,
        description="Steps when neither the request nor `/settings` say. Unset, each model's own default applies (a "
        "model's `steps` in the config; 8 on `tiny`, whose pictures are noise anyway), then 25.",
    )
    default_cfg: float = Field(
        7.0,
        description="Guidance scale by default on SD 1.x/2.x and SDXL. FLUX.1 and Chroma use their family's (3.5 on FLUX.1-dev, "
        "none on schnell, 4 on Chroma) unless the model's `cfg` in the config says otherwise.",
    )
    default_sampler: str = Field(
        "DPM++ 2M Karras", description="Sampler by default on SD 1.x/2.x and SDXL; flow-matching families (FLUX.1, Chroma) use Euler."
    )
    default_n: int = Field(1, ge=1, description="Images per job by default.")
    default_strength: float = Field(0.75, gt=0, le=1, description="img2img and remix strength by default.")
    vary_strength: float = Field(0.6, gt=0, le=1, description="Strength of V1…V4.")
    vary_subtle_strength: float = Field(0.35, gt=0, le=1, description="Strength of `Vary (Subtle)`.")
    vary_strong_strength: float = Field(0.7, gt=0, le=1, description="Strength of `Vary (Strong)`.")
    inpaint_strength: float = Field(0.85, gt=0, le=1, description="`/inpaint` strength by default.")
    outpaint_strength: float = Field(0.9, gt=0, le=1, description="Strength in the new area of zoom out and pan.")

    def steps_for(self, model: ModelEntry) -> int:
        """The default --steps on `model`: SDBOT_DEFAULT_STEPS where it is set, else the model's
        own default (`ModelEntry.default_steps`), else `default_steps`' default."""
        if "default_steps" in self.model_fields_set:
            return self.default_steps
        return model.default_steps or self.default_steps

    def cfg_for(self, model: ModelEntry) -> float:
        """The default --cfg on `model`: the model's `cfg`, else its family's own (distilled and
        flow models have theirs: 7 would burn a FLUX.1 picture), else `default_cfg`."""
        own = model.default_cfg
        return own if own is not None else self.default_cfg

    def sampler_for(self, model: ModelEntry) -> str:
        """The default sampler on `model`: `default_sampler`, unless the family draws with flow
        matching, whose samplers are its own."""
        found = family(model.family)
        return found.default_sampler if found.flow_matching else self.default_sampler


class UpscaleSettings(BaseModel):
    """Upscaling

    How `/upscale` and the Upscale buttons enlarge a picture. The esrgan method needs a model file
    from [Post-processing and helper models](#post-processing-and-helper-models).
    """

    default_upscale_method: Literal["auto", "lanczos", "esrgan", "hires", "latent"] = Field(
        "auto",
        description="`/upscale` and the Upscale buttons: `auto` (esrgan when an upscaler is set, else lanczos), "
        "`lanczos`, `esrgan`, `hires`, `latent`.",
    )
    hires_strength: float = Field(0.35, gt=0, le=1, description="Strength of `/upscale --method hires` tiles.")
    latent_strength: float = Field(0.55, gt=0, le=1, description="Strength of `/upscale --method latent`.")
    max_upscale_pixels: int = Field(4096 * 4096, ge=64 * 64, description="Largest upscale result (lanczos, esrgan, hires), in pixels.")
    upscale_tile: int = Field(
        512, ge=32, description="Tile side (input pixels) of esrgan upscales: bounds memory (see `bench/upscale_memory.py`)."
    )


class PromptFeatureSettings(BaseModel):
    """Styles and wildcards

    A style (`--style NAME`) wraps a prompt in a template with its own negative prompt; a
    wildcard (`__name__`) picks a line of a list. Besides the global ones below, each person may
    save their own, within these limits.
    """

    styles_file: Path | None = Field(
        None,
        description="A TOML file of extra global styles, in `config/styles.toml`'s format. Checked at start: a broken "
        "file is logged (the bot still starts), and users are told styles are unavailable until an admin fixes it.",
    )
    wildcards_dir: Path | None = Field(
        None,
        description="Wildcard lists: `name.txt` (subfolders allowed) is `__name__`, one option per line.",
        json_schema_extra={"doc_default": "`<data dir>/wildcards`"},
    )
    max_styles_per_user: int = Field(50, ge=0, description="Styles one person may save with `/style save`.")
    max_wildcards_per_user: int = Field(50, ge=0, description="Wildcard lists one person may add with `/wildcard add`.")
    max_wildcard_lines: int = Field(1000, ge=1, description="Lines of one person's wildcard list.")


class UploadSettings(BaseModel):
    """Uploads, LoRAs and embeddings

    What people may send the bot: images to start from, and LoRA and embedding files to draw with
    (uploaded, or trained with `/train`).
    """

    max_asset_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Largest LoRA or embedding file a user may upload.")
    lora_cache_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description="Users' LoRAs kept loaded per worker (their parameters' bytes; least recently used dropped first, "
        "never the running job's).",
    )
    asset_quota_bytes: int = Field(
        2 * 1024 * 1024 * 1024,
        ge=0,
        description="What the uploaded and trained LoRAs and embeddings of one person of the `default` role may take "
        "in all (`trusted`: four times as much).",
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest image a user may send.")
    max_upload_pixels: int = Field(
        40_000_000, ge=64 * 64, description="Largest image in pixels, checked before decoding (decompression bombs)."
    )
