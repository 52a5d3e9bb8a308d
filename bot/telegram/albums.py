"""Telegram albums (media groups) as one request.

Telegram sends each picture of an album as a message of its own, all with the same
`media_group_id`, and only one of them carries the caption (the command). `Albums` keeps the
messages of each album (per chat) until none has come for `seconds`, then hands them over
together, in message-id order, to be one Request. Telegram says nothing about how many pictures
an album has, so waiting a moment after the last one is how every bot does it.

Only albums are merged: several photos sent one by one (or picked together but sent "as
separate photos") are separate messages without a `media_group_id`, and each is its own request.

Whether an album is meant for the bot is decided when it is complete (the caption may come on
any of its messages), so in a group chat the album's other photos are kept until then: only
messages, no downloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from telegram import Message

from commands.frame.types import Attachment

log = logging.getLogger(__name__)


@dataclass
class _Album:
    deadline: float  # loop time when it is taken as complete
    messages: list[Message] = field(default_factory=list)
    now: asyncio.Event = field(default_factory=asyncio.Event)  # set at shutdown: hand it over at once


class Albums:
    def __init__(self, seconds: float, handle: Callable[[list[Message]], Awaitable[None]]):
        self.seconds = seconds
        self.handle = handle  # gets an album's messages, in message-id order
        self._albums: dict[tuple[int, str], _Album] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, message: Message) -> None:
        """A message of an album; its album is handled `seconds` after its last message came."""
        assert message.media_group_id is not None
        key = (message.chat.id, message.media_group_id)
        deadline = asyncio.get_running_loop().time() + self.seconds
        album = self._albums.get(key)
        if album is None:
            album = self._albums[key] = _Album(deadline)
            task = asyncio.create_task(self._collect(key, album), name=f"telegram-album-{key[1]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        album.messages.append(message)
        album.deadline = deadline

    async def _collect(self, key: tuple[int, str], album: _Album) -> None:
        loop = asyncio.get_running_loop()
        # The deadline moves with each message; no timer is ever cancelled (a cancel could land
        # in the middle of handling the album).
        while not album.now.is_set() and (left := album.deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(album.now.wait(), left)
        del self._albums[key]  # a message that comes later starts an album of its own
        try:
            await self.handle(sorted(album.messages, key=lambda message: message.message_id))
        except Exception:
            log.exception("error while handling a Telegram album in chat %s", key[0])

    async def close(self, timeout: float = 10.0) -> None:
        """Shutdown: albums still being collected are handled now; after `timeout`, given up."""
        for album in self._albums.values():
            album.now.set()
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)  # never left cancelled and un-awaited


def distinct_names(attachments: tuple[Attachment, ...]) -> tuple[Attachment, ...]:
    """An album's files under names that differ: every photo of an album is `photo.jpg`, so repeated
    names are numbered in order (`photo-1.jpg`, `photo-2.jpg`, ...). Unique names stay as they are."""
    names = [attachment.filename for attachment in attachments]
    counts = {name: names.count(name) for name in names}
    seen: dict[str, int] = {}
    renamed = []
    for attachment in attachments:
        name = attachment.filename
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            path = PurePosixPath(name)
            name = f"{path.stem}-{seen[name]}{path.suffix}"
        renamed.append(Attachment(name, attachment.data, attachment.content_type))
    return tuple(renamed)
