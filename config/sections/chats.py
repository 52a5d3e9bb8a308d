"""Settings sections for the chat platforms: Telegram and Discord. Each adapter starts when its
token is set; the console needs no settings."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from config.sections.parse import CommaList


class TelegramSettings(BaseModel):
    """Telegram

    The Telegram adapter starts when `SDBOT_TELEGRAM_TOKEN` is set. It long-polls the Bot API, or
    takes webhook calls when `SDBOT_TELEGRAM_WEBHOOK_URL` is set; see [Telegram](deploy.md#telegram).
    """

    telegram_token: SecretStr | None = Field(
        None, description="The bot token from @BotFather. When set, `run_bot.py serve` starts the Telegram adapter."
    )
    telegram_base_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API address (PTB's `base_url`): the token is appended, or fills `{token}`.",
    )
    telegram_base_file_url: str | None = Field(
        None,
        description="File download address (PTB's `base_file_url`).",
        json_schema_extra={"doc_default": "the base URL with `/bot` → `/file/bot`"},
    )
    telegram_local_mode: bool = Field(
        False, description="The self-hosted Bot API server runs with `--local` (files by path, larger limits)."
    )
    telegram_allowed_users: CommaList = Field(
        default_factory=list, description="Comma-separated Telegram user ids allowed to use the bot; empty: everyone."
    )
    telegram_allowed_chats: CommaList = Field(
        default_factory=list, description="Comma-separated chat ids (groups are negative) where the bot answers; empty: every chat."
    )
    telegram_webhook_url: str | None = Field(
        None, description="Public HTTPS URL for Telegram to call; set: webhook mode instead of long polling."
    )
    telegram_webhook_listen: str = Field("0.0.0.0", description="Address the webhook server listens on (behind your HTTPS proxy).")
    telegram_webhook_port: int = Field(8443, ge=1, le=65535, description="Port the webhook server listens on (behind your HTTPS proxy).")
    telegram_webhook_secret: SecretStr | None = Field(
        None, description="Secret Telegram sends with each webhook call; other requests are refused."
    )
    telegram_max_download_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest file the bot fetches from Telegram (the Bot API's `getFile` limit)."
    )
    telegram_max_upload_bytes: int = Field(
        50 * 1000 * 1000, ge=1024 * 1024, description="Largest file the bot sends (📄 PNG); Telegram's servers take 50 MB."
    )
    telegram_group_edit_seconds: float = Field(3.0, ge=0, description="Least time between edits of a status message in a group.")
    telegram_album_seconds: float = Field(
        1.5, gt=0, le=10, description="An album's pictures are handled as one message once none has come for this long."
    )

    @property
    def resolved_telegram_base_file_url(self) -> str:
        """`…/bot` → `…/file/bot`, as the Bot API lays out its file downloads (cloud and self-hosted)."""
        if self.telegram_base_file_url:
            return self.telegram_base_file_url
        base = self.telegram_base_url
        if base.rstrip("/").endswith("/bot"):
            return base.rstrip("/")[: -len("/bot")] + "/file/bot"
        return "https://api.telegram.org/file/bot"


class DiscordSettings(BaseModel):
    """Discord

    The Discord adapter starts when `SDBOT_DISCORD_TOKEN` is set; see [Discord](deploy.md#discord).
    """

    discord_token: SecretStr | None = Field(
        None, description="The bot token from the Developer Portal. When set, `run_bot.py serve` starts the Discord adapter."
    )
    discord_guild_ids: CommaList = Field(
        default_factory=list, description="Comma-separated server ids: commands sync there at once instead of globally."
    )
    discord_api_base: str = Field("https://discord.com/api/v10", description="REST base address (a proxy, or tests).")
    discord_gateway_url: str = Field("wss://gateway.discord.gg/", description="Gateway address (a proxy, or tests).")
    discord_message_content: bool = Field(
        False, description="Ask for the privileged Message Content intent, so text replies to results remix them."
    )
    discord_status_edit_seconds: float = Field(2.0, ge=0, description="Least time between edits of a status message.")
