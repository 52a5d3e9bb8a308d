"""The console chat: the whole bot on stdin/stdout, for people (`run_bot.py console`) and for
scripts (`--jsonl`). It is a real adapter: it only translates lines into Requests and Replies
into lines, like the Discord and Telegram adapters do with their events.

One chat ("console") shared by every `user`. At end of input it waits until no console job is
waiting or running and nothing is owed to the console, then returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from bot.console.protocol import MESSAGE_ID, InputError, InputLine, edit_event, human, message_event, parse_human_line, parse_json_line
from bot.loops import DeliveryLoop, StatusLoop, wait_for_event
from commands.frame.types import Attachment, DocumentFile, Outgoing, Press, Reply, Request, StatusUpdate
from commands.service import CommandService

log = logging.getLogger(__name__)

PLATFORM = "console"
CHAT = "console"
EDIT_SECONDS = 0.5  # least time between edits of one status message
RECORD_WAIT_SECONDS = 10.0  # longest a press waits for the result it names to be recorded


class MessageIds:
    """Bot message ids b1, b2, ... that keep counting across runs (a reply may name an old one)."""

    def __init__(self, state_file: Path):
        self.state_file = state_file
        state_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._last = int(json.loads(state_file.read_text())["last_message"])
        except (FileNotFoundError, ValueError, KeyError):
            self._last = 0

    @property
    def last_number(self) -> int:
        """N of the newest id handed out, bN (0 before the first)."""
        return self._last

    def next(self) -> str:
        self._last += 1
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last_message": self._last}))
        os.replace(tmp, self.state_file)  # saved before the id is shown, so it is never reused
        return f"b{self._last}"


class ConsoleChat:
    def __init__(
        self,
        service: CommandService,
        *,
        state_dir: Path,
        jsonl: bool = True,
        input_stream: TextIO | None = None,
        output_stream: TextIO | None = None,
        poll_seconds: float = 1.0,
    ):
        self.service = service
        self.jsonl = jsonl
        self.input = input_stream or sys.stdin
        self.output = output_stream or sys.stdout
        self.poll_seconds = poll_seconds
        self.ids = MessageIds(Path(state_dir) / "console-state.json")
        self.downloads = Path(state_dir) / "downloads"  # documents under their real names (`saved_as`)
        self.previews = Path(state_dir) / "previews"  # each status message's newest live preview
        self._uploads: dict[str, tuple[Attachment, ...]] = {}  # input id -> its attachments (this run)
        self._end_wait = asyncio.Event()
        # Results shown but not yet recorded (the delivery loop records right after the send): a
        # script that presses a button the instant it reads the result waits for the record,
        # instead of hearing "I don't know that message".
        self._recording: dict[str, asyncio.Event] = {}
        self._followups: dict[str, list[str]] = {}  # a result's message id -> its followups' ids
        self.deliveries = DeliveryLoop(
            service,
            PLATFORM,
            self._send,
            poll_seconds=poll_seconds,
            after_delivered=self._after_delivered,
            send_followup=self._send_followup,
        )
        self.statuses = StatusLoop(service, PLATFORM, self._edit, min_interval=lambda chat: EDIT_SECONDS, tick_seconds=EDIT_SECONDS)

    def wake(self) -> None:
        """Something may be owed to the console: deliver now rather than at the next poll."""
        self.deliveries.wake()
        self._end_wait.set()

    # --- main loop ---------------------------------------------------------------------------

    async def run(self) -> int:
        if not self.jsonl:
            self._banner()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        _start_reader(self.input, lines, asyncio.get_running_loop())
        deliveries = asyncio.create_task(self.deliveries.run())
        statuses = asyncio.create_task(self.statuses.run())
        number = 0
        try:
            while (line := await lines.get()) is not None:
                if not line.strip():
                    continue
                number += 1
                await self._handle_line(f"u{number}", line)
            while await self.service.busy(PLATFORM):  # end of input: finish what we owe
                self._end_wait.clear()
                await wait_for_event(self._end_wait, self.poll_seconds)
        finally:
            for task in (deliveries, statuses):
                task.cancel()
            await asyncio.gather(deliveries, statuses, return_exceptions=True)
        return 0

    async def _handle_line(self, input_id: str, line: str) -> None:
        try:
            parsed = parse_json_line(line) if self.jsonl else parse_human_line(line)
            request = self._request(input_id, parsed)
            target = request.press.message_id if request.press else request.reply_to
            if target in self._recording:
                with contextlib.suppress(TimeoutError):  # a record that failed: go on, the service says so
                    await asyncio.wait_for(self._recording[target].wait(), RECORD_WAIT_SECONDS)
        except InputError as error:
            self._emit(message_event(self.ids.next(), reply_to=input_id, user=None, kind="error", text=f"Line {input_id[1:]}: {error}"))
            return
        replies = await self.service.handle(request)
        if not replies:  # nothing to act on (`{"reply_to": "b3"}` alone): a script waiting for an answer gets one
            replies = [Reply("Nothing to act on: send `text`, `attachments` or a `press`.", kind="error")]
        for reply in replies:
            message_id = self.ids.next()
            self._emit_reply(message_id, reply, reply_to=input_id, user=request.user_id)
            try:
                await self.service.sent(PLATFORM, CHAT, message_id, reply)
            except Exception:  # the message is out; only its buttons and replies will not resolve
                log.exception("could not record console message %s", message_id)
            if reply.kind == "status":
                self.statuses.showing(message_id, reply.text)

    def _request(self, input_id: str, line: InputLine) -> Request:
        for target in (line.reply_to, line.press[0] if line.press else None):
            self._check_exists(target, input_id)
        attachments = tuple(_read_attachment(path) for path in line.attachments)
        self._uploads[input_id] = attachments
        reply_images = self._uploads.get(line.reply_to or "", ()) if line.reply_to else ()
        return Request(
            platform=PLATFORM,
            user_id=line.user,
            chat_id=CHAT,
            user_name=line.user,
            message_id=input_id,
            text=line.text,
            attachments=attachments,
            reply_to=line.reply_to,
            reply_to_images=reply_images,
            press=Press(*line.press) if line.press else None,
            private=True,  # one person at a terminal
        )

    def _check_exists(self, target: str | None, input_id: str) -> None:
        """A reply or press naming a message not written yet is a typo. The service would take such
        a reply as plain text (as a reply to a person's message on a platform) and draw it, and
        answer such a press with "I don't know that message any more"; say what is wrong instead."""
        match = MESSAGE_ID.fullmatch(target or "")
        if match is None:
            return
        number = int(match["number"])
        if match["sender"] == "b" and number > self.ids.last_number:
            newest = f"the newest is b{self.ids.last_number}" if self.ids.last_number else "I have written none yet"
            raise InputError(f"there is no message {target} yet ({newest}). Use an id shown in [brackets].")
        if match["sender"] == "u" and number >= int(input_id[1:]):
            raise InputError(f"there is no line {target} before this one ({input_id}); lines count from u1 in each run.")

    # --- what the bot owes the console ----------------------------------------------------------

    async def _send(self, item: Outgoing) -> str:
        message_id = self.ids.next()
        self._recording[message_id] = asyncio.Event()
        self._emit_reply(message_id, item.reply, reply_to=item.reply_to, user=item.user_id)
        return message_id

    async def _send_followup(self, item: Outgoing, followup: Reply, message_id: str) -> str:
        followup_id = self.ids.next()
        self._recording[followup_id] = asyncio.Event()
        self._followups.setdefault(message_id, []).append(followup_id)
        self._emit_reply(followup_id, followup, reply_to=message_id, user=item.user_id)
        return followup_id

    async def _after_delivered(self, item: Outgoing, message_id: str) -> None:
        # called once the result and its followups are recorded: replies and presses on them may go
        for recorded_id in (message_id, *self._followups.pop(message_id, ())):
            recorded = self._recording.pop(recorded_id, None)
            if recorded is not None:
                recorded.set()
        self._end_wait.set()  # the end-of-input wait may be waiting on this

    async def _edit(self, update: StatusUpdate) -> None:
        image = None
        if update.preview is not None:  # a file per status message, replaced whole (never read half written)
            image = self.previews / f"{update.message_id}.jpg"
            await asyncio.to_thread(_write_whole, image, update.preview)
        self._emit(edit_event(update.message_id, update.text, image))

    # --- output ----------------------------------------------------------------------------------

    def _emit_reply(self, message_id: str, reply: Reply, *, reply_to: str | None, user: str | None) -> None:
        self._emit(
            message_event(
                message_id,
                reply_to=reply_to,
                user=user,
                kind=reply.kind,
                text=reply.text,
                images=reply.images,
                actions=reply.actions,
                job=reply.job_id,
                preview=reply.preview,
                documents=tuple(self._saved_as(message_id, document) for document in reply.documents),
                video=reply.video,
                spoiler=reply.spoiler,
            )
        )

    def _saved_as(self, message_id: str, document: DocumentFile) -> DocumentFile:
        """The document at a path with its real name (`downloads/b12/foxy.safetensors`), as a
        platform would save it: the blob store's own name (`877d…4110.st`) says nothing, and a
        file given out must go back in as it is (`/lora upload` with that path). A hard link
        where the file system allows, else a copy."""
        folder = self.downloads / message_id
        target = folder / Path(document.filename).name
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            try:
                os.link(document.path, target)
            except OSError:
                shutil.copyfile(document.path, target)
        return dataclasses.replace(document, path=target)

    def _emit(self, event: dict[str, Any]) -> None:
        text = json.dumps(event, ensure_ascii=False) if self.jsonl else human(event)
        self.output.write(text + "\n")
        self.output.flush()

    def _banner(self) -> None:
        lines = [
            "sdbot console chat. Type /help, or /imagine a red fox --steps 4 (a line without a command is a prompt too).",
            "Reply to a message: @b3 new prompt · press a button: !b3 U1 · quit: Ctrl-D (waits for your jobs) or Ctrl-C.",
        ]
        lines += self.service.startup_notes()
        self.output.write("\n".join(lines) + "\n\n")
        self.output.flush()


def _write_whole(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def _read_attachment(path: str) -> Attachment:
    file = Path(path).expanduser()
    try:
        return Attachment(file.name, file.read_bytes())
    except OSError as error:
        raise InputError(f"I can't read the attachment `{path}`: {error.strerror or error}.") from None


def _start_reader(stream: TextIO, lines: asyncio.Queue[str | None], loop: asyncio.AbstractEventLoop) -> None:
    """Read input on a daemon thread (stdin may be a file, a pipe or a terminal)."""

    def put(item: str | None) -> None:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:  # the chat already ended
            pass

    def read() -> None:
        for line in stream:
            put(line)
        put(None)

    threading.Thread(target=read, name="console-input", daemon=True).start()
