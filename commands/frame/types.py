"""What adapters hand the command layer (Request) and what they get back (Reply).

Adapters translate platform events into a Request, call `CommandService.handle`, and render each
Reply: text, images, and actions (buttons). Action ids are stable strings (`upscale:1`, `vary:2`,
`reroll`) that resolve through the message they are attached to, so a button keeps working after
a restart as long as the adapter reports the message id it sent (`CommandService.sent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Attachment:
    """A file a user sent (or the image in a message they replied to)."""

    filename: str
    data: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class Press:
    """A button press: the message the button is under, and the action's id or label."""

    message_id: str
    action: str


@dataclass(frozen=True)
class Request:
    platform: str
    user_id: str
    chat_id: str
    user_name: str | None = None
    message_id: str | None = None  # this message, when it is one (results reply to it)
    text: str | None = None
    # Structured form of a command (Discord's typed options): {"command": "imagine", "prompt": ...}.
    options: dict[str, Any] | None = None
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None  # the platform message this one replies to
    reply_to_images: tuple[Attachment, ...] = ()  # images in that message, when the adapter has them
    press: Press | None = None
    age_restricted: bool = False  # sent from an age-restricted (NSFW) channel
    # The person's roles on the platform, for SDBOT_ROLE_MAP: Discord guild role ids, Telegram
    # "chat_admin" where the adapter knows they administer the chat.
    platform_roles: tuple[str, ...] = ()
    # Only the asker reads the answer: a private chat, or a Discord interaction (ephemeral
    # replies). A /link code is given only there.
    private: bool = False
    # The person administers this chat (Discord: Manage Server or Manage Channels; Telegram: a
    # group's owner or admin), so may change its /place settings.
    place_admin: bool = False
    # Their role here (config.roles) and their account's row id (a linked identity's account),
    # filled in by CommandService before a handler runs (`commands.jobs.admission.resolve`).
    role: str | None = None
    account_id: int | None = None
    # What handlers looked up about this request, kept so that a second look is free (the bot
    # message it replies to: `commands.jobs.sources.replied`). Shared by `dataclasses.replace` copies.
    lookups: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Action:
    id: str
    label: str
    row: int = 0  # buttons sharing a row number go on one row, where the platform has rows


@dataclass(frozen=True)
class ImageFile:
    path: Path  # absolute path of a PNG with A1111 parameters
    width: int
    height: int
    seed: int
    index: int  # 0-based position in its job


@dataclass(frozen=True)
class VideoFile:
    """A clip as the engine made it: its MP4 (H.264) and GIF in the blob store, and its frames
    (PNGs in order), from which an adapter makes a smaller file when the MP4 is over its limit."""

    mp4: Path
    gif: Path | None
    width: int
    height: int
    fps: int
    frames: tuple[Path, ...]
    loop: bool = False  # played forward then backward (the MP4 and GIF already are)

    @property
    def seconds(self) -> float:
        played = 2 * len(self.frames) - 2 if self.loop and len(self.frames) > 2 else len(self.frames)
        return played / self.fps


@dataclass(frozen=True)
class DocumentFile:
    """A file sent as it is (a trained LoRA's .safetensors): adapters send it as a document."""

    path: Path  # absolute path in the blob store
    filename: str  # the name people get (`foxy.safetensors`)
    size: int  # bytes


# "files": the original PNGs of a message's images, to be sent as files (Telegram recompresses photos).
# "map": a control map a ControlNet result was steered by, sent after the result (and repliable).
# "sample": a training run's picture so far, sent while it runs (no buttons, no PNG original).
ReplyKind = Literal["text", "error", "status", "result", "single", "failure", "files", "map", "sample"]


@dataclass(frozen=True)
class MessageTarget:
    """What a sent message shows; recorded so that replies and buttons on it resolve."""

    job_id: int
    output_index: int | None  # None: the whole job (a batch, or a status message); "map": the map's index
    role: Literal["status", "result", "single", "map"]


@dataclass(frozen=True)
class Reply:
    text: str
    kind: ReplyKind = "text"
    images: tuple[ImageFile, ...] = ()
    actions: tuple[Action, ...] = ()
    job_id: int | None = None
    # Only the asker should see it, where the platform can do that (Discord ephemeral).
    ephemeral: bool = False
    target: MessageTarget | None = None
    # A seamless texture's 2x2 tiling, shown after the picture (no buttons, not an output).
    preview: ImageFile | None = None
    # Messages sent right after this one, as replies to it, each recorded with `sent` (so people
    # can reply to them): a ControlNet result's control maps.
    followups: tuple[Reply, ...] = ()
    # Files sent as documents with the text (`/lora download NAME`), within the platform's limit.
    documents: tuple[DocumentFile, ...] = ()
    # A clip (/animate, /video2video, /deforum): sent as a video that plays inline, instead of
    # `images` (which then hold its first frame, the poster: a Telegram thumbnail, the console).
    video: VideoFile | None = None
    # Show the picture or clip hidden until tapped (Discord SPOILER_ files, Telegram has_spoiler):
    # the place's safety policy (commands.jobs.safety).
    spoiler: bool = False
    # Whether the originals may be offered (Telegram's 📄 PNG button): not where the policy
    # blurred or withheld the pictures.
    originals: bool = True


@dataclass(frozen=True)
class Outgoing:
    """A delivery the adapter owes a chat: send `reply` there, then call `CommandService.delivered`."""

    delivery_id: int
    chat_id: str
    reply: Reply
    reply_to: str | None  # the user's message that asked for it
    status_message_id: str | None  # the status message it replaces, if one was sent
    user_id: str  # whom to mention where the platform needs it


@dataclass(frozen=True)
class StatusUpdate:
    """New text for a status message of a job still waiting or running, and the newest live
    preview of a running one (a small JPEG; None: none yet, or previews are off)."""

    chat_id: str
    message_id: str
    job_id: int
    text: str
    preview: bytes | None = None
