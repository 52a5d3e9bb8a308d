"""The console chat's line protocol (docs/console-protocol.md).

Input, one JSON object per line (all fields optional):
    {"text": "/imagine a red fox", "user": "alice", "reply_to": "b3",
     "attachments": ["photo.png"], "press": {"message": "b4", "action": "U1"}}
Input line N has the id `uN` (counted from 1 in each run).

Output, one JSON object per line:
    {"event": "message", "id": "b3", "reply_to": "u1", "user": "alice", "kind": "status",
     "text": "...", "images": ["/abs/path.png"], "actions": [{"id": "upscale:1", "label": "U1"}], "job": 7}
    {"event": "edit", "id": "b3", "text": "..."}
An edit of a running job's status may carry its live preview: "image": "/abs/path.jpg" (a small
JPEG, replaced by the next preview of that message; not the `preview` of a `--tile` result).
A `--tile` result's message also has "preview": "/abs/path.jpg", the picture tiled 2x2.
A clip (/animate, /video2video, /deforum) also has "video": "/abs/path.mp4", the H.264 MP4 to
play; its "images" are then its first frame, the poster.
A picture or clip the safety policy hides behind a spoiler (commands.jobs.safety) has "spoiler": true.
A message that carries files to keep (`/lora download NAME`: a trained LoRA) also has
    "documents": [{"path": "/abs/path", "filename": "foxy.safetensors", "size": 1234567}]
in the order sent: `path` is the file itself (absolute, named `filename`: under the console's
`downloads/<message id>/`), `filename` the name to save it as, `size` its bytes. The field is there only when the message has documents.
Bot message ids (`bN`) keep counting across runs, so a reply or press can name a message an
earlier run printed.

People can type the short forms instead: `@b4 a blue fox` replies to b4, `!b4 U1` presses U1 on
b4, a line starting with `{` is read as JSON, and any other line is sent as text. The console is a
private chat, so a plain sentence is a prompt: it draws, as `/imagine` would (in group chats the
Telegram adapter passes on only commands and replies to the bot; the Discord one only slash
commands, messages that mention the bot and replies to its results). A line that starts with `!`
or `@` but is not a well-formed press or reply is answered with how to write it and sends
nothing, so a typo never becomes a drawing (`/imagine !…` draws such a prompt). A reply or press
naming a message that does not exist yet (`b9` when the newest is `b5`, or an input line `uN`
not before this one) is answered the same way, in both forms.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commands.frame.types import Action, DocumentFile, ImageFile, VideoFile
from commands.jobs.render import size_text

_REPLY = re.compile(r"^@(?P<id>[ub]\d+)\s+(?P<text>.+)$", re.S)
_PRESS = re.compile(r"^!(?P<id>b\d+)\s+(?P<action>\S(?:.*\S)?)\s*$")  # labels may have spaces: "Upscale 2x"
MESSAGE_ID = re.compile(r"(?P<sender>[ub])(?P<number>\d+)")  # bN: the bot's messages; uN: input lines


class InputError(ValueError):
    pass


@dataclass
class InputLine:
    text: str | None = None
    user: str = "console"
    reply_to: str | None = None
    attachments: list[str] = field(default_factory=list)
    press: tuple[str, str] | None = None


def parse_json_line(line: str) -> InputLine:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"that line is not valid JSON ({error.msg} at column {error.colno}).") from None
    if not isinstance(data, dict):
        raise InputError('each line must be one JSON object, like {"text": "/imagine a red fox"}.')
    unknown = set(data) - {"text", "user", "reply_to", "attachments", "press"}
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}; fields: text, user, reply_to, attachments, press.")
    text, user, reply_to = data.get("text"), data.get("user", "console"), data.get("reply_to")
    attachments = data.get("attachments", [])
    press = data.get("press")
    if text is not None and not isinstance(text, str):
        raise InputError("`text` must be a string.")
    if not isinstance(user, str) or not user.strip():
        raise InputError("`user` must be a non-empty string.")
    if reply_to is not None and not isinstance(reply_to, str):
        raise InputError('`reply_to` must be a message id string such as "b3".')
    if not isinstance(attachments, list) or not all(isinstance(a, str) for a in attachments):
        raise InputError("`attachments` must be a list of file paths.")
    pressed = None
    if press is not None:
        if not isinstance(press, dict) or not isinstance(press.get("message"), str) or not isinstance(press.get("action"), str):
            raise InputError('`press` must look like {"message": "b4", "action": "U1"}.')
        pressed = (press["message"], press["action"])
    return InputLine(text, user.strip(), reply_to, attachments, pressed)


def parse_human_line(line: str, user: str = "console") -> InputLine:
    stripped = line.strip()
    if stripped.startswith("{"):
        return parse_json_line(stripped)
    if stripped.startswith("!"):
        if match := _PRESS.match(stripped):
            return InputLine(user=user, press=(match["id"], match["action"]))
        raise InputError(_how_to_press(stripped))
    if stripped.startswith("@"):
        if match := _REPLY.match(stripped):
            return InputLine(text=match["text"], user=user, reply_to=match["id"])
        raise InputError(_how_to_reply(stripped))
    return InputLine(text=stripped, user=user)


# A mistyped short form must not fall through to text: as a prompt it queued a 25-step drawing of
# the typo (five of them filled the queue). Each answer says what to write instead.


def _how_to_press(line: str) -> str:
    target = _short_form_target(line)
    if MESSAGE_ID.fullmatch(target) is None or target.startswith("u"):
        named = f"`{target}` is not one of my message ids" if target else "the id of my message is missing"
        return (
            f"`!` presses a button, but {named}. Write `!b3 U1`: the id of my message as shown in [brackets], "
            "a space, and the label of a button under it. To draw a prompt that starts with `!`, put `/imagine ` before it."
        )
    return f"which button? Write its label after the id, e.g. `!{target} U1`: the labels are the [buttons] under {target}."


def _how_to_reply(line: str) -> str:
    target = _short_form_target(line)
    if MESSAGE_ID.fullmatch(target) is None:
        named = f"`{target}` is not a message id" if target else "the id of the message is missing"
        return (
            f"`@` replies to a message, but {named}. Write `@b3 a blue fox`: the id of my message (b3) or of "
            "your line (u2), a space, and your text. To draw a prompt that starts with `@`, put `/imagine ` before it."
        )
    return f"a reply needs text after the id: a prompt, like `@{target} a blue fox`, or a command, like `@{target} /upscale 2`."


def _short_form_target(line: str) -> str:
    """`!b3 Upscale 2x` -> "b3": what follows the sign, up to the first space ("" for `@ a dog`)."""
    return re.split(r"\s", line[1:], maxsplit=1)[0]


def message_event(
    message_id: str,
    *,
    reply_to: str | None,
    user: str | None,
    kind: str,
    text: str,
    images: tuple[ImageFile, ...] = (),
    actions: tuple[Action, ...] = (),
    job: int | None = None,
    preview: ImageFile | None = None,
    documents: tuple[DocumentFile, ...] = (),
    video: VideoFile | None = None,
    spoiler: bool = False,
) -> dict[str, Any]:
    event = {
        "event": "message",
        "id": message_id,
        "reply_to": reply_to,
        "user": user,
        "kind": kind,
        "text": text,
        "images": [str(Path(image.path).resolve()) for image in images],
        "actions": [{"id": action.id, "label": action.label} for action in actions],
        "job": job,
    }
    if preview is not None:  # a seamless texture tiled 2x2
        event["preview"] = str(Path(preview.path).resolve())
    if video is not None:  # a clip: its MP4 (the images are its poster)
        event["video"] = str(Path(video.mp4).resolve())
    if spoiler:  # the chat's safety policy hides it until tapped, where a platform can
        event["spoiler"] = True
    if documents:  # files to keep, sent as they are
        event["documents"] = [
            {"path": str(Path(document.path).resolve()), "filename": document.filename, "size": document.size} for document in documents
        ]
    return event


def edit_event(message_id: str, text: str, image: Path | None = None) -> dict[str, Any]:
    """A status message's new text, and its live preview's file when the edit shows a new one."""
    event: dict[str, Any] = {"event": "edit", "id": message_id, "text": text}
    if image is not None:
        event["image"] = str(image)
    return event


def human(event: dict[str, Any]) -> str:
    """How an event looks to a person at a terminal."""
    if event["event"] == "edit":
        line = f"  [{event['id']} now] {event['text']}"
        return line + (f"\n    👁  {event['image']}  (preview)" if event.get("image") else "")
    arrow = f" → {event['reply_to']}" if event.get("reply_to") else ""
    lines = [f"[{event['id']}{arrow}] {event['text']}"]
    lines += [f"    🖼  {path}" for path in event["images"]]
    if event.get("video"):
        lines.append(f"    🎞  {event['video']}")
    if event.get("preview"):
        lines.append(f"    🧩  {event['preview']}  (tiled 2x2)")
    lines += [f"    📎  {d['filename']} ({size_text(d['size'])}): {d['path']}" for d in event.get("documents", ())]
    if event["actions"]:
        buttons = " ".join(f"[{a['label']}]" for a in event["actions"])
        lines.append(f"    {buttons}   (press with: !{event['id']} {event['actions'][0]['label']})")
    return "\n".join(lines)
