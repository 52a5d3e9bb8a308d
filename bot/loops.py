"""The two loops every adapter runs beside its event handlers:

- `DeliveryLoop` sends what the command layer owes a platform (results, failure notes), records
  each sent message, and backs off while sending fails. Woken by the worker when a job ends, and
  polling otherwise, so a result finished by a worker on another machine still arrives.
- `StatusLoop` edits the status message of each waiting or running job when its text or its live
  preview changes, no more often than the platform tolerates: per message, and for edits that
  carry a new picture (heavier: an upload) also per chat.

Adapters pass in how to send and how to edit; the loops know nothing of the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from commands.frame.types import Outgoing, Reply, StatusUpdate
from commands.service import CommandService

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
START_RETRY_SECONDS = (1, 2, 5, 10, 30, 60)  # between tries to reach a platform at start


def start_pause(attempt: int) -> float:
    """How long to wait before try `attempt + 1` to reach a platform that was unreachable."""
    return START_RETRY_SECONDS[min(attempt, len(START_RETRY_SECONDS) - 1)]


class Postpone(Exception):
    """Raised by a send or edit that the platform asked us to repeat later (flood control).
    It is not a failure: the delivery is tried again after `seconds`, and never given up for it."""

    def __init__(self, seconds: float):
        super().__init__(f"postponed for {seconds:.1f}s")
        self.seconds = seconds


class Unreachable(Exception):
    """Raised by a send when the platform could not be reached (network down, timeout, a 5xx).
    Not the chat's fault: the whole pass backs off and nothing is counted against the delivery."""


class DeliveryLoop:
    def __init__(
        self,
        service: CommandService,
        platform: str,
        send: Callable[[Outgoing], Awaitable[str]],
        *,
        poll_seconds: float,
        after_delivered: Callable[[Outgoing, str], Awaitable[None]] | None = None,
        send_followup: Callable[[Outgoing, Reply, str], Awaitable[str]] | None = None,
    ):
        self.service = service
        self.platform = platform
        self.send = send  # sends one item, returns the platform's message id
        self.after_delivered = after_delivered  # e.g. remove the job's status message
        # sends one of the item's followups (a control map) as a reply to the message `send` sent
        self.send_followup = send_followup
        self.poll_seconds = poll_seconds
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.woken.set()

    async def run(self) -> None:
        failures = 0
        while True:
            pause = self.poll_seconds
            try:
                for item in await self.service.pending(self.platform):
                    await self.deliver(item)
                failures = 0
            except Postpone as postponed:
                log.warning("%s asked us to slow down; sending again in %.1fs", self.platform, postponed.seconds)
                pause = postponed.seconds
            except Exception:
                failures += 1
                log.exception("%s delivery pass failed (%d in a row); retrying", self.platform, failures)
                # back off while something is broken (a full disk, say), up to a minute between tries
                pause = min(MAX_BACKOFF_SECONDS, self.poll_seconds * 2**failures)
            self.woken.clear()
            await wait_for_event(self.woken, pause)

    async def deliver(self, item: Outgoing) -> None:
        """Send one item and record it. A shutdown that cancelled us between the two would send
        the result again after the restart, so the pair runs shielded and is awaited to its end."""
        task = asyncio.ensure_future(self._send_and_record(item))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                with contextlib.suppress(Exception):
                    await task
            raise

    async def _send_and_record(self, item: Outgoing) -> None:
        try:
            message_id = await self.send(item)
        except (Postpone, Unreachable, asyncio.CancelledError):
            raise
        except Exception as error:  # this chat refuses it (bot blocked, chat gone): count and go on
            log.warning("could not deliver job %s to %s:%s: %s", item.reply.job_id, self.platform, item.chat_id, error)
            await self.service.delivery_failed(item, f"{type(error).__name__}: {error}")
            return
        await self.service.delivered(self.platform, item, message_id)
        await self._send_followups(item, message_id)
        if self.after_delivered is not None:
            try:
                await self.after_delivered(item, message_id)
            except Exception:  # cosmetic (a status message left behind); the result is out
                log.warning("after delivering job %s", item.reply.job_id, exc_info=True)

    async def _send_followups(self, item: Outgoing, message_id: str) -> None:
        """The messages that go with the result (its control maps), each recorded so that people
        can reply to it. Best effort: the result is out and recorded; a map that fails to send is
        logged, not sent again (a crash between the result and its maps loses the maps' messages,
        not the maps, which stay with the job)."""
        for followup in item.reply.followups:
            if self.send_followup is None:
                return
            try:
                followup_id = await self.send_followup(item, followup, message_id)
                await self.service.sent(self.platform, item.chat_id, followup_id, followup)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not send a followup of job %s to %s:%s", item.reply.job_id, self.platform, item.chat_id, exc_info=True)


class StatusLoop:
    """Edits status messages. `edit` gets a `StatusUpdate` whose `preview` is a new picture to
    show, or None to change the text only and keep whatever picture the message shows."""

    def __init__(
        self,
        service: CommandService,
        platform: str,
        edit: Callable[[StatusUpdate], Awaitable[None]],
        *,
        min_interval: Callable[[str], float],
        media_interval: Callable[[str], float] | None = None,
        tick_seconds: float = 0.5,
    ):
        self.service = service
        self.platform = platform
        self.edit = edit
        self.min_interval = min_interval  # chat id -> least seconds between edits of one message
        # chat id -> least seconds between edits that upload a picture, in one chat (Discord limits
        # edits per channel; Telegram's groups take ~20 a minute): min_interval unless given
        self.media_interval = media_interval or min_interval
        self.tick_seconds = tick_seconds
        self.shown: dict[str, tuple[str, bytes | None, float]] = {}  # message id -> (text, preview, when shown)
        self._pictures_at: dict[str, float] = {}  # chat id -> when a picture was last uploaded there
        self._quiet_until = 0.0

    def showing(self, message_id: str, text: str) -> None:
        """A status message was just sent with `text`."""
        self.shown[message_id] = (text, None, time.monotonic())

    async def run(self) -> None:
        while True:
            try:
                await self.one_pass()
            except Exception:
                log.exception("%s status pass failed; retrying", self.platform)
            await asyncio.sleep(self.tick_seconds)

    async def one_pass(self) -> None:
        if time.monotonic() < self._quiet_until:
            return
        updates = await self.service.status_updates(self.platform)
        live = {update.message_id for update in updates}
        for message_id in [m for m in self.shown if m not in live]:
            del self.shown[message_id]  # its job ended
        for update in updates:
            text, preview, when = self.shown.get(update.message_id, ("", None, 0.0))
            now = time.monotonic()
            picture = update.preview is not None and update.preview != preview
            if (update.text == text and not picture) or now - when < self.min_interval(update.chat_id):
                continue
            if picture and now - self._pictures_at.get(update.chat_id, 0.0) < self.media_interval(update.chat_id):
                if update.text == text:
                    continue  # the picture waits for the chat's pace
                update, picture = dataclasses.replace(update, preview=None), False  # the text goes now
            try:
                await self.edit(update if picture else dataclasses.replace(update, preview=None))
            except Postpone as postponed:
                self._quiet_until = time.monotonic() + postponed.seconds
                return
            except Exception as error:  # a status line is cosmetic: log, and try again later
                log.info("could not edit status of job %s: %s", update.job_id, error)
            self.shown[update.message_id] = (update.text, update.preview if picture else preview, time.monotonic())
            if picture:
                self._pictures_at[update.chat_id] = time.monotonic()


async def wait_for_event(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
