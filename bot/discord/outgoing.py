"""Replies as Discord messages: content within 2000 characters, the images as files fitted to the
upload limit (a grid for a batch), and the buttons.

Discord keeps files as they are uploaded, so a single image goes out as its original PNG, with
its parameters, unless it is over the limit.
"""

from __future__ import annotations

import io
from typing import Any

import discord

from bot import media
from bot.discord.interface import result_view
from bot.text import chunks, shorten
from commands.types import Reply

MAX_CONTENT = 2000
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # bytes per file where nothing tells us more


def leading_texts(reply: Reply) -> list[str]:
    """The first pieces of a text reply too long for one message; `message_kwargs` sends the last."""
    return [] if reply.images else chunks(reply.text, MAX_CONTENT)[:-1]


def message_kwargs(reply: Reply, max_bytes: int, *, mention: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `send` (channel, followup, or reply) that show `reply`."""
    text = reply.text if reply.images else chunks(reply.text, MAX_CONTENT)[-1]
    kwargs: dict[str, Any] = {}
    if reply.images:
        picture = media.fit(media.picture_of(reply.images, f"sdbot-{reply.job_id}"), max_bytes=max_bytes)
        if picture.note:
            text += f"\n{picture.note}"
        kwargs["files"] = [discord.File(io.BytesIO(picture.data), filename=picture.filename)]
        if reply.preview is not None:  # a seamless texture, tiled 2x2
            preview = media.fit(media.picture_of((reply.preview,), f"sdbot-{reply.job_id}-tiled"), max_bytes=max_bytes)
            kwargs["files"].append(discord.File(io.BytesIO(preview.data), filename=preview.filename))
    if mention:
        text = f"<@{mention}> {text}"
        kwargs["allowed_mentions"] = discord.AllowedMentions(users=[discord.Object(int(mention))])
    kwargs["content"] = shorten(text, MAX_CONTENT)
    view = result_view(reply.actions)
    if view is not None:
        kwargs["view"] = view
    return kwargs

