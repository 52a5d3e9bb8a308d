"""The console chat's line protocol (README, "Console protocol").

Input, one JSON object per line (all fields optional):
    {"text": "/imagine a red fox", "user": "alice", "reply_to": "b3",
     "attachments": ["photo.png"], "press": {"message": "b4", "action": "U1"}}
Input line N has the id `uN` (counted from 1 in each run).

Output, one JSON object per line:
    {"event": "message", "id": "b3", "reply_to": "u1", "user": "alice", "kind": "status",
     "text": "...", "images": ["/abs/path.png"], "actions": [{"id": "upscale:1", "label": "U1"}], "job": 7}
    {"event": "edit", "id": "b3", "text": "..."}
A `--tile` result's message also has "preview": "/abs/path.jpg", the picture tiled 2x2.
A clip (/animate, /video2video, /deforum) also has "video": "/abs/path.mp4", the H.264 MP4 to
play; its "images" are then its first frame, the poster.
A picture or clip the safety policy hides behind a spoiler (commands.safety) has "spoiler": true.
A message that carries files to keep (`/lora download NAME`: a trained LoRA) also has
    "documents": [{"path": "/abs/path", "filename": "foxy.safetensors", "size": 1234567}]
in the order sent: `path` is the file itself (absolute), `filename` the name to save it as, `size`
its bytes. The field is there only when the message has documents.
Bot message ids (`bN`) keep counting across runs, so a reply or press can name a message an
earlier run printed.

People can type the short forms instead: `@b4 a blue fox` replies to b4, `!b4 U1` presses U1 on
b4, anything else is sent as text (a line starting with `{` is read as JSON).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commands.render import size_text
from commands.types import Action, DocumentFile, ImageFile, VideoFile

_REPLY = re.compile(r"^@(?P<id>[ub]\d+)\s+(?P<text>.+)$", re.S)
_PRESS = re.compile(r"^!(?P<id>b\d+)\s+(?P<action>\S(?:.*\S)?)\s*$")  # labels may have spaces: "Upscale 2x"


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
        raise InputError("each line must be one JSON object, like {\"text\": \"/imagine a red fox\"}.")
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
        raise InputError("`reply_to` must be a message id string such as \"b3\".")
    if not isinstance(attachments, list) or not all(isinstance(a, str) for a in attachments):
        raise InputError("`attachments` must be a list of file paths.")
    pressed = None
    if press is not None:
        if not isinstance(press, dict) or not isinstance(press.get("message"), str) or not isinstance(press.get("action"), str):
            raise InputError("`press` must look like {\"message\": \"b4\", \"action\": \"U1\"}.")
        pressed = (press["message"], press["action"])
    return InputLine(text, user.strip(), reply_to, attachments, pressed)


def parse_human_line(line: str, user: str = "console") -> InputLine:
    stripped = line.strip()
    if stripped.startswith("{"):
        return parse_json_line(stripped)
    if match := _PRESS.match(stripped):
        return InputLine(user=user, press=(match["id"], match["action"]))
    if match := _REPLY.match(stripped):
        return InputLine(text=match["text"], user=user, reply_to=match["id"])
    return InputLine(text=stripped, user=user)


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
            {"path": str(Path(document.path).resolve()), "filename": document.filename, "size": document.size}
            for document in documents
        ]
    return event


def edit_event(message_id: str, text: str) -> dict[str, Any]:
    return {"event": "edit", "id": message_id, "text": text}


def human(event: dict[str, Any]) -> str:
    """How an event looks to a person at a terminal."""
    if event["event"] == "edit":
        return f"  [{event['id']} now] {event['text']}"
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
