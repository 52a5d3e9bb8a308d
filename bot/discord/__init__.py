"""The Discord adapter (discord.py 2.x)."""

from bot.discord.adapter import DiscordChat

__all__ = ["DiscordChat"]
