"""The Telegram adapter (python-telegram-bot v22)."""

from bot.telegram.adapter import TelegramChat

__all__ = ["TelegramChat"]
