"""sdbot settings: `SDBOT_*` environment variables, a `.env` file, and an optional TOML file.

Precedence, highest first: arguments to `Settings(...)`, environment, `.env`, the TOML file
(`SDBOT_CONFIG`, default `./sdbot.toml` when it exists), the defaults below. Every field is
documented in docs/configuration.md (a test checks every setting is there); keep the two in step.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.models import ControlNetEntry, ModelEntry, ModelRegistry, MotionAdapterEntry
from config.roles import Role, RoleLimits, default_limits

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def _config_file() -> Path:
    return Path(os.environ.get("SDBOT_CONFIG", "sdbot.toml"))


def parse_hours(text: str) -> tuple[int, int]:
    """`22-6` -> (22, 6): from the start hour up to (not including) the end hour, UTC, across
    midnight when the end comes first. Raises ValueError with what is wrong."""
    start, dash, end = text.strip().partition("-")
    if not dash or not start.strip().isdigit() or not end.strip().isdigit():
        raise ValueError(f"training hours must look like `22-6` (from 22:00 to 06:00 UTC), not `{text}`")
    first, last = int(start), int(end)
    if not (0 <= first <= 23 and 0 <= last <= 24) or first == last % 24:
        raise ValueError(f"training hours `{text}`: hours are 0-24 and the start differs from the end")
    return first, last


def training_hours_open(text: str | None, now: datetime | None = None) -> bool:
    """Whether training may run now (SDBOT_TRAIN_HOURS; None: always)."""
    if not text:
        return True
    first, last = parse_hours(text)
    hour = (now or datetime.now(UTC)).astimezone(UTC).hour
    return first <= hour < last if first < last else hour >= first or hour < last


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SDBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- models and hardware -------------------------------------------------------------
    model: str = Field(
        DEFAULT_MODEL,
        description="Default model: a Hub id, a diffusers folder, a single-file .safetensors, or `tiny`.",
    )
    models: dict[str, ModelEntry] = Field(default_factory=dict, description="Further named models (TOML `[models.NAME]` or JSON).")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_loaded_models: int = Field(1, ge=1, description="Pipelines kept in memory at once.")
    # --- speed options (generation.models.speed; measured by bench/gpu.py) ---
    attention: Literal["sdpa", "classic"] = Field(
        "sdpa",
        description="`sdpa`: PyTorch's scaled_dot_product_attention (flash / memory-efficient kernels); "
        "`classic`: diffusers' plain attention (a baseline).",
    )
    channels_last: bool = Field(False, description="UNet and VAE in channels_last memory format (faster convolutions on most GPUs).")
    torch_compile: bool = Field(False, description="torch.compile the UNet (and VAE decoder): slow first job per size, faster after it.")
    vaes: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Named VAEs (a diffusers folder, Hub id or single .safetensors) for `vae` in a model entry, "
        "`--vae NAME` and `/settings --vae NAME`.",
    )

    # --- post-processing models (files you download once; nothing is fetched at run time) ----------
    upscalers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Named super-resolution model files (.safetensors that spandrel loads: Real-ESRGAN, ESRGAN, "
        "SwinIR, ...) for `/upscale --method esrgan`; the first is the default.",
    )
    face_restorers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Named face-restoration model files (.safetensors: GFPGAN, RestoreFormer, ...) for /facefix; the first is the default.",
    )
    face_detector: str | None = Field(None, description="A YuNet .onnx face detector; default: OpenCV's Haar cascade shipped with opencv.")
    segmenter: str | None = Field(None, description="A CLIPSeg model (diffusers-style folder or Hub id) for `/inpaint --select WORDS`.")
    enhancer: str | None = Field(
        None,
        description="A text-generation model (causal LM folder or cached Hub id, e.g. a MagicPrompt GPT-2) for "
        "/enhance; none: /enhance is unavailable.",
    )
    enhance_max_new_tokens: int = Field(75, ge=8, le=256, description="Most tokens /enhance adds to the user's words (CLIP reads 75).")
    captioner: str | None = Field(
        None, description="A BLIP captioning model (folder or cached Hub id) for /describe; none: /describe is unavailable."
    )
    describe_clip: str | None = Field(
        None, description="A CLIP model (folder or cached Hub id) that ranks /describe's term lists; none: caption only."
    )
    describe_terms_dir: Path | None = Field(
        None, description="Folder of <list>.txt term files that replace (same name) or add to /describe's built-in lists."
    )

    # --- ControlNet and Instruct Pix2Pix (generation.control; files you download once) ------------
    controlnets: dict[str, ControlNetEntry] = Field(
        default_factory=dict,
        description="Named ControlNet models (TOML `[controlnets.NAME]` with type, source, architecture; or JSON) for "
        "/control. On the tiny model, built-in tiny ControlNets serve every type.",
    )
    controlnet_cache_bytes: int = Field(
        4 * 1024**3, ge=0, description="ControlNet models kept loaded beside the base model (least recently used dropped first)."
    )
    depth_model: str | None = Field(
        None, description="A depth-estimation model (DPT or Depth Anything folder, or cached Hub id) for `/control depth`."
    )
    annotators: Path | None = Field(
        None,
        description="A folder with controlnet-aux's annotator files (the layout of lllyasviel/Annotators: "
        "body_pose_model.pth, hand_pose_model.pth, facenet.pth, sk_model.pth, sk_model2.pth, netG.pth, "
        "ControlNetHED.pth, table5_pidinet.pth) for openpose, lineart, softedge and scribble_hed.",
    )
    instruct_model: str | None = Field(
        None,
        description="An Instruct Pix2Pix model (diffusers folder or cached Hub id, e.g. timbrooks/instruct-pix2pix) for "
        "/edit. On the tiny model a built-in tiny one is used.",
    )
    instruct_image_cfg: float = Field(1.5, ge=0, le=10, description="Default `--image-cfg` of /edit.")

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Path("data")
    database_url: str | None = Field(None, description="Default: SQLite file <data_dir>/sdbot.db.")
    models_dir: Path | None = Field(None, description="Default: <data_dir>/models (the tiny model lives here).")
    blobs_dir: Path | None = Field(
        None, description="Pictures, uploads and trained files. Default: <data_dir>/blobs; with several machines, a folder they all mount."
    )

    # --- people --------------------------------------------------------------------------
    admin_ids: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Comma-separated `platform:user` or bare user ids.")
    trusted_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="People with the `trusted` role's limits, as SDBOT_ADMIN_IDS."
    )
    banned_ids: Annotated[list[str], NoDecode] = Field(default_factory=list, description="People the bot refuses, as SDBOT_ADMIN_IDS.")
    role_map: Annotated[dict[str, Role], NoDecode] = Field(
        default_factory=dict,
        description="Platform roles that give a role: `discord:<guild role id>=trusted,telegram:chat_admin=trusted`.",
    )
    role_limits: Annotated[dict[Role, RoleLimits], NoDecode] = Field(
        default_factory=dict, description="Per role, limits replacing the built-in ones (config.roles), as JSON or a TOML table."
    )
    # --- safety, graded by place (generation.imaging.safety, commands.safety) ---
    safety_classifier: str | None = Field(
        None,
        description="What scores every output: `tiny`, or a StableDiffusionSafetyChecker or image classifier "
        "(folder or cached Hub id); none: nothing is scored, and places' NSFW policies can't be set.",
    )
    safety_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["nsfw", "porn", "hentai", "sexy"],
        description="An image classifier's labels whose probabilities add up to the score.",
    )
    safety_threshold: float = Field(0.5, ge=0, le=1, description="Score from which a place's policy applies, unless it sets its own.")
    safety_policy: Literal["spoiler", "blur", "block"] = Field(
        "spoiler", description="What a place that set nothing does with a picture over the threshold (age-restricted places: allow)."
    )
    link_code_minutes: int = Field(10, ge=1, le=1440, description="How long a /link code stays good.")
    link_failures_per_hour: int = Field(5, ge=1, description="Wrong /link codes one person may type in an hour.")

    # --- limits: out of bounds is an error the user sees, never a silent clamp ---------------
    max_steps: int = Field(100, ge=1)
    max_pixels: int = Field(1024 * 1024, ge=64 * 64, description="Largest width x height of an image.")
    max_side: int = Field(2048, ge=64)
    min_side: int = Field(64, ge=8)
    max_batch: int = Field(4, ge=1, le=16)
    min_cfg: float = 1.0
    max_cfg: float = 30.0
    max_prompt_chars: int = Field(1500, ge=10)
    max_queued_jobs_per_user: int = Field(5, ge=1)
    # --- prompt features: styles and wildcards (commands.prompt_features) ---
    styles_file: Path | None = Field(None, description="A TOML file of extra global styles, in config/styles.toml's format.")
    wildcards_dir: Path | None = Field(
        None, description="Wildcard lists (`__name__` = name.txt, one option per line). Default: <data_dir>/wildcards."
    )
    max_styles_per_user: int = Field(50, ge=0, description="Styles one user may save with /style save.")
    max_wildcards_per_user: int = Field(50, ge=0, description="Wildcard lists one user may add with /wildcard add.")
    max_wildcard_lines: int = Field(1000, ge=1, description="Lines of one user's wildcard list.")
    # --- uploaded LoRAs and embeddings (commands.assets) ---
    max_asset_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Largest LoRA or embedding file.")
    lora_cache_bytes: int = Field(
        1024 * 1024 * 1024, ge=0, description="Users' LoRAs kept loaded on the GPU (least recently used dropped first)."
    )
    asset_quota_bytes: int = Field(
        2 * 1024 * 1024 * 1024, ge=0, description="What one user's uploaded LoRAs and embeddings may take in all."
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_upload_pixels: int = Field(40_000_000, ge=64 * 64, description="Pillow decompression-bomb limit.")

    # --- training LoRAs, LyCORIS, DreamBooth and embeddings from chat (commands.training) ---
    train_min_images: int = Field(3, ge=1, description="Fewest pictures a /train run accepts.")
    train_max_images: int = Field(40, ge=1, description="Most pictures a /train run accepts (attachments and zip together).")
    train_max_zip_bytes: int = Field(
        200 * 1024 * 1024, ge=1024, description="Most a /train zip may hold once unpacked (a zip bomb stops here)."
    )
    train_max_steps: int = Field(3000, ge=1, description="Most --steps of one run.")
    train_daily_steps: int = Field(6000, ge=1, description="Training steps one person may queue per 24 hours.")
    train_max_resolution: int = Field(1024, ge=32, description="Largest --resolution (the side of a training bucket).")
    train_checkpoint_steps: int = Field(
        50, ge=1, description="A run saves its state (weights, optimizer, step) to the blob store this often."
    )
    train_yield: bool = Field(True, description="A run checkpoints and hands the worker over when drawing jobs are waiting, then resumes.")
    train_hours: str | None = Field(
        None, description="Hours (UTC, e.g. `22-6`) when runs may start or go on; outside them they wait. Empty: always."
    )

    # --- defaults a user can change with /settings ---------------------------------------------
    default_steps: int = Field(25, ge=1)
    default_cfg: float = 7.0
    default_sampler: str = "DPM++ 2M Karras"
    default_n: int = Field(1, ge=1)
    default_strength: float = Field(0.75, gt=0, le=1, description="img2img / remix denoising strength.")
    vary_strength: float = Field(0.6, gt=0, le=1, description="Denoising strength of V1..Vn.")
    vary_subtle_strength: float = Field(0.35, gt=0, le=1, description="Strength of Vary (Subtle).")
    vary_strong_strength: float = Field(0.7, gt=0, le=1, description="Strength of Vary (Strong).")
    inpaint_strength: float = Field(0.85, gt=0, le=1, description="Default strength of /inpaint.")
    outpaint_strength: float = Field(0.9, gt=0, le=1, description="Strength of zoom out and pan in the new area.")
    hires_strength: float = Field(0.35, gt=0, le=1, description="Strength of `/upscale --method hires` tiles.")
    latent_strength: float = Field(0.55, gt=0, le=1, description="Strength of `/upscale --method latent`.")
    default_upscale_method: Literal["auto", "lanczos", "esrgan", "hires", "latent"] = Field(
        "auto", description="Method of /upscale and the Upscale buttons; auto: esrgan when an upscaler is set, else lanczos."
    )
    max_upscale_pixels: int = Field(4096 * 4096, ge=64 * 64, description="Largest result of /upscale (lanczos, esrgan, hires), in pixels.")
    upscale_tile: int = Field(512, ge=32, description="Tile side (input pixels) of esrgan upscales; bounds memory.")

    # --- animation: /animate, /video2video, /deforum (generation.animation, commands.animate) ---
    motion_adapters: Annotated[dict[str, MotionAdapterEntry], NoDecode] = Field(
        default_factory=dict,
        description="Named AnimateDiff motion adapters (`name=source` pairs, or TOML `[motion_adapters.NAME]` with source "
        "and architecture) for `/animate --motion NAME`; the first is the default. On the tiny model the built-in "
        "`tiny` adapter serves.",
    )
    motion_loras: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Named motion LoRAs (camera moves such as guoyww's zoom-in, pan-left: a folder or .safetensors) for "
        "`/animate --camera NAME`. On the tiny model the built-in `tiny-zoom` serves.",
    )
    default_frames: int = Field(16, ge=1, description="Frames of /animate and /video2video without --frames.")
    min_frames: int = Field(8, ge=1, description="Fewest --frames of /animate (AnimateDiff's motion needs a few).")
    max_frames: int = Field(32, ge=1, description="Most frames of /animate and /video2video (longer clips: context windows).")
    max_deforum_frames: int = Field(120, ge=2, description="Most frames of one /deforum run (each is an img2img pass).")
    max_clip_frames: int = Field(128, ge=2, description="Longest clip the Longer button may grow, in frames.")
    default_fps: int = Field(8, ge=1, le=60, description="Frames per second of a clip without --fps.")
    max_fps: int = Field(30, ge=1, le=60)
    max_clip_pixels: int = Field(
        512 * 512, ge=64 * 64, description="Largest width x height of one frame of a clip (a clip holds all its frames at once)."
    )
    animate_context_frames: int = Field(
        16,
        ge=2,
        description="Frames AnimateDiff sees at once (its motion models are trained on 16); longer clips go "
        "in overlapping windows of this many frames.",
    )
    animate_context_stride: int = Field(4, ge=1, description="Frames between the starts of two context windows.")
    deforum_strength: float = Field(0.6, gt=0, le=1, description="Default --strength of /deforum: how much each frame is redrawn.")
    video2video_strength: float = Field(0.6, gt=0, le=1, description="Default --strength of /video2video.")
    max_video_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest video or GIF /video2video reads.")
    max_video_seconds: float = Field(10.0, gt=0, description="Longest video /video2video reads.")

    # --- queue and worker --------------------------------------------------------------------
    lease_seconds: float = Field(30.0, gt=0, description="A running job's lease; renewed every third of it.")
    max_attempts: int = Field(3, ge=1, description="Runs of a job (crashes included) before it fails.")
    poll_seconds: float = Field(1.0, gt=0, description="Queue/outbox polling when nothing wakes us sooner.")
    model_sync_seconds: float = Field(
        2.0, ge=0, description="How often a bot process rereads the models admins added or removed in chat (workers: every job)."
    )
    role_cache_seconds: float = Field(
        2.0, ge=0, description="How long a bot process keeps a person's resolved role (changes made in this process apply at once)."
    )
    progress_seconds: float = Field(1.0, gt=0, description="Least time between progress writes.")
    # --- batching and scheduling across workers (generation.jobs.batched, storage.queue.claim) ---
    max_batch_jobs: int = Field(
        4,
        ge=1,
        le=64,
        description="Compatible txt2img jobs (same model, size, steps, sampler, CFG, LoRAs, VAE; any prompts and "
        "seeds) a worker draws in one pipeline call, each completed separately. 1: no batching.",
    )
    max_batch_images: int = Field(
        4,
        ge=1,
        le=256,
        description="Most images (the jobs' --n together) in one batched call. The default is SDBOT_MAX_BATCH's: a batch "
        "takes no more GPU memory than the largest single job may.",
    )
    batch_wait_ms: int = Field(
        0, ge=0, le=10_000, description="How long a worker waits for more compatible jobs before drawing a batch that is not full."
    )
    affinity_seconds: float = Field(
        30.0, ge=0, description="A worker takes jobs for the model it has loaded first, unless another job has waited this long."
    )
    # --- operations: health endpoint and logs (runtime/) ---
    health_port: int | None = Field(
        None, ge=0, le=65535, description="Serve GET /healthz on this port (0: any free port); none: no endpoint."
    )
    health_host: str = Field("127.0.0.1", description="Address the /healthz endpoint listens on.")
    log_format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per log line, with job ids.")

    # --- Telegram (bot/telegram): starts when the token is set ---------------------------------
    telegram_token: SecretStr | None = Field(None, description="The bot token from @BotFather.")
    telegram_base_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API address, as PTB's base_url: the token is appended, or fills `{token}`.",
    )
    telegram_base_file_url: str | None = Field(
        None, description="File downloads, as PTB's base_file_url. Default: derived from the base URL."
    )
    telegram_local_mode: bool = Field(False, description="The Bot API server runs with --local (files by path).")
    telegram_allowed_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated user ids; empty: everyone."
    )
    telegram_allowed_chats: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated chat ids; empty: every chat."
    )
    telegram_webhook_url: str | None = Field(None, description="Public HTTPS URL; set: webhook mode instead of polling.")
    telegram_webhook_listen: str = "0.0.0.0"
    telegram_webhook_port: int = Field(8443, ge=1, le=65535)
    telegram_webhook_secret: SecretStr | None = None
    telegram_max_download_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest file the bot fetches (the Bot API's getFile limit)."
    )
    telegram_max_upload_bytes: int = Field(
        50 * 1000 * 1000, ge=1024 * 1024, description="Largest document the bot sends (50 MB on Telegram's servers)."
    )
    telegram_group_edit_seconds: float = Field(3.0, ge=0, description="Least time between status edits in a group.")
    telegram_album_seconds: float = Field(
        1.5, gt=0, le=10, description="An album's pictures are one request once none has come for this long."
    )

    # --- Discord (bot/discord): starts when the token is set -----------------------------------
    discord_token: SecretStr | None = Field(None, description="The bot token from the Developer Portal.")
    discord_guild_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated guild ids: commands sync there at once, not globally."
    )
    discord_api_base: str = Field("https://discord.com/api/v10", description="REST base (an HTTP proxy, or tests).")
    discord_gateway_url: str = Field("wss://gateway.discord.gg/", description="Gateway address (a proxy, or tests).")
    discord_message_content: bool = Field(
        False, description="Ask for the privileged Message Content intent: text replies to results remix them."
    )
    discord_status_edit_seconds: float = Field(2.0, ge=0, description="Least time between status edits.")

    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    @field_validator("train_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value:
            parse_hours(value)
        return value or None

    @field_validator("motion_adapters", mode="before")
    @classmethod
    def _motion_adapters(cls, value: Any) -> Any:
        """`name=source` pairs from the environment, as for the named files; TOML and JSON give tables."""
        named = _name_pairs(value)
        if isinstance(named, dict):
            return {name: {"source": entry} if isinstance(entry, str) else entry for name, entry in named.items()}
        return named

    @field_validator("upscalers", "face_restorers", "vaes", "motion_loras", mode="before")
    @classmethod
    def _named_files(cls, value: Any) -> Any:
        return _name_pairs(value)

    @field_validator("role_map", mode="before")
    @classmethod
    def _role_map(cls, value: Any) -> Any:
        return _name_pairs(value)

    @field_validator("role_limits", mode="before")
    @classmethod
    def _role_limits(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator(
        "admin_ids",
        "trusted_ids",
        "banned_ids",
        "safety_labels",
        "telegram_allowed_users",
        "telegram_allowed_chats",
        "discord_guild_ids",
        mode="before",
    )
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            return [str(part).strip() for part in value]  # TOML may give numbers
        return value

    def steps_for(self, model: ModelEntry) -> int:
        """The default --steps on `model`: SDBOT_DEFAULT_STEPS where it is set, else the model's
        own default (`ModelEntry.default_steps`), else `default_steps`' default."""
        if "default_steps" in self.model_fields_set:
            return self.default_steps
        return model.default_steps or self.default_steps

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_side > self.max_side:
            raise ValueError("SDBOT_MIN_SIDE must not exceed SDBOT_MAX_SIDE")
        if self.min_cfg > self.max_cfg:
            raise ValueError("SDBOT_MIN_CFG must not exceed SDBOT_MAX_CFG")
        if self.default_steps > self.max_steps:
            raise ValueError("SDBOT_DEFAULT_STEPS must not exceed SDBOT_MAX_STEPS")
        if self.default_n > self.max_batch:
            raise ValueError("SDBOT_DEFAULT_N must not exceed SDBOT_MAX_BATCH")
        if not self.min_frames <= self.default_frames <= self.max_frames:
            raise ValueError("SDBOT_DEFAULT_FRAMES must lie between SDBOT_MIN_FRAMES and SDBOT_MAX_FRAMES")
        if self.default_fps > self.max_fps:
            raise ValueError("SDBOT_DEFAULT_FPS must not exceed SDBOT_MAX_FPS")
        if not self.min_cfg <= self.default_cfg <= self.max_cfg:
            raise ValueError("SDBOT_DEFAULT_CFG must lie between SDBOT_MIN_CFG and SDBOT_MAX_CFG")
        return self

    # --- derived values ------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'sdbot.db').resolve()}"

    @property
    def resolved_models_dir(self) -> Path:
        return (self.models_dir or self.data_dir / "models").resolve()

    @property
    def resolved_blobs_dir(self) -> Path:
        return (self.blobs_dir or self.data_dir / "blobs").resolve()

    @property
    def resolved_telegram_base_file_url(self) -> str:
        """`…/bot` → `…/file/bot`, as the Bot API lays out its file downloads (cloud and self-hosted)."""
        if self.telegram_base_file_url:
            return self.telegram_base_file_url
        base = self.telegram_base_url
        if base.rstrip("/").endswith("/bot"):
            return base.rstrip("/")[: -len("/bot")] + "/file/bot"
        return "https://api.telegram.org/file/bot"

    def secret_values(self) -> list[str]:
        """Every secret in the settings, for the log redaction in run_bot.py."""
        secrets = [self.telegram_token, self.telegram_webhook_secret, self.discord_token]
        values = [secret.get_secret_value() for secret in secrets if secret is not None]
        if self.database_url:
            from sqlalchemy.engine import make_url

            password = make_url(self.database_url).password
            if password:
                values.append(str(password))
        return values

    def registry(self) -> ModelRegistry:
        return ModelRegistry.from_settings(self.model, self.models)

    def is_admin(self, platform: str, user_id: str) -> bool:
        return _listed(self.admin_ids, platform, user_id)

    def configured_role(self, platform: str, user_id: str) -> Role | None:
        """The role the id lists give this identity (admin first, then banned, then trusted)."""
        for role, ids in (("admin", self.admin_ids), ("banned", self.banned_ids), ("trusted", self.trusted_ids)):
            if _listed(ids, platform, user_id):
                return role  # type: ignore[return-value]
        return None

    def limits(self, role: Role) -> RoleLimits:
        """What `role` may use: the built-in limits with SDBOT_ROLE_LIMITS' fields over them."""
        built_in = default_limits(
            queued_jobs=self.max_queued_jobs_per_user,
            train_steps_per_day=self.train_daily_steps,
            storage_bytes=self.asset_quota_bytes,
        )[role]
        override = self.role_limits.get(role)
        return built_in.model_copy(update=override.model_dump(exclude_unset=True)) if override else built_in


def _listed(ids: list[str], platform: str, user_id: str) -> bool:
    return f"{platform}:{user_id}" in ids or user_id in ids


def _name_pairs(value: Any) -> Any:
    """`name=path,name2=path2` from the environment (TOML and JSON give a table)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return json.loads(value)
    if isinstance(value, str):
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("expected name=path pairs separated by commas")
        return {name.strip(): path.strip() for name, path in pairs}
    return value


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
