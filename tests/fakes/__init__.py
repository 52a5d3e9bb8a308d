"""Fakes of external servers (Discord, Telegram) for the adapter tests, on 127.0.0.1 only."""
