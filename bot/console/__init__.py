from bot.console.adapter import ConsoleChat

__all__ = ["ConsoleChat"]
