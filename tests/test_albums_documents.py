"""What /train and `/lora download` need from the adapters: Telegram albums as one request, files
sent back as documents on every platform, and Discord's /train with its ten picture options.

The real clients run against the fake servers (tests/fakes/). The command layer is real too; only
the commands these tests ask for (`/train`, `/download`, `/lora`) are replaced by recorders, so
the tests see exactly the Requests the adapters built and the files they sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr

import run_bot
from bot.console import ConsoleChat
from bot.console.protocol import human
from bot.discord import DiscordChat
from bot.telegram import TelegramChat
from bot.telegram.albums import distinct_names
from commands import registry
from commands.frame.types import Attachment, DocumentFile, Outgoing, Reply, Request
from config import Settings
from tests.fakes import discord as fake_discord
from tests.fakes import telegram as fake_telegram
from tests.fakes.discord import APP_ID, FakeDiscord, Interaction
from tests.fakes.telegram import FakeTelegram
from tests.support.running_chat import running_chat


class Recorder:
    """Stands in for a command: keeps every Request it gets (and the text of the command after its
    name) and answers with `reply`, or with a line naming what it got."""

    def __init__(self, reply: Reply | None = None):
        self.requests: list[Request] = []
        self.args: list[str] = []
        self.reply = reply

    async def __call__(self, ctx: Any, request: Request, args: str) -> list[Reply]:
        self.requests.append(request)
        self.args.append(args)
        if self.reply is not None:
            return [self.reply]
        return [Reply(f"got {len(request.attachments)} files for: {args}")]


def record(monkeypatch: pytest.MonkeyPatch, command: str, reply: Reply | None = None) -> Recorder:
    recorder = Recorder(reply)
    # a command of ours with its handler replaced, or one made up for the test (`/download`)
    declared = registry.find(command) or registry.Command(command, recorder, "a test's command", (f"/{command}",), "commands")
    monkeypatch.setitem(registry._BY_NAME, command, dataclasses.replace(declared, handler=recorder))
    return recorder


def png(color: tuple[int, int, int], size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


def model_file(folder: Path, name: str, size: int) -> DocumentFile:
    path = folder / f"blob-{name}"
    path.write_bytes(os.urandom(size))
    return DocumentFile(path.resolve(), name, size)


# --- Telegram ----------------------------------------------------------------------------------------


@pytest.fixture
def tg_server():  # type: ignore[no-untyped-def]
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def tg_settings(settings: Settings, tg_server: FakeTelegram) -> Settings:
    return settings.model_copy(
        update={
            "telegram_token": SecretStr(fake_telegram.TOKEN),
            "telegram_base_url": tg_server.base_url,
            "telegram_album_seconds": 1.0,
        }
    )


def telegram_bot(settings: Settings, server: FakeTelegram):  # type: ignore[no-untyped-def]
    return running_chat(settings, TelegramChat, draw=False, ready=lambda chat: "getUpdates" in server.calls)


def replies_to(server: FakeTelegram, message: dict[str, Any]) -> list[fake_telegram.BotMessage]:
    return [m for m in server.sent if m.chat_id == message["chat"]["id"] and m.reply_to == message["message_id"]]


def largest_photo(server: FakeTelegram, message: dict[str, Any]) -> bytes:
    return server.files[message["photo"][-1]["file_id"]]


async def test_a_telegram_album_is_one_request(tg_settings: Settings, tg_server: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    server = tg_server
    train = record(monkeypatch, "train")
    pictures = [png((200, 30, 30)), png((30, 200, 30)), png((30, 30, 200))]
    async with telegram_bot(tg_settings, server):
        # 0.6 s apart, within the 1 s an album waits after its last picture (but not after its first)
        album = await asyncio.to_thread(
            server.send_album, [(None, pictures[0]), ("/train lora foxy --steps 20", pictures[1]), (None, pictures[2])], gap=0.6
        )
        answer = await server.await_for(lambda m: m.reply_to == album[0]["message_id"] and "got" in m.text)
        assert answer.text == "got 3 files for: lora foxy --steps 20"
        [request] = train.requests
        assert request.text == "/train lora foxy --steps 20" and request.message_id == str(album[0]["message_id"])
        assert [a.data for a in request.attachments] == [largest_photo(server, m) for m in album]  # in message order
        assert [a.filename for a in request.attachments] == ["photo-1.jpg", "photo-2.jpg", "photo-3.jpg"]

        # In a group only the caption decides; albums not addressed to us are dropped whole.
        group = fake_telegram.GROUP
        await asyncio.to_thread(server.send_album, [(None, pictures[0]), (None, pictures[1])], chat=group)
        await asyncio.to_thread(server.send_album, [("look at these", pictures[0]), (None, pictures[1])], chat=group)
        ours = await asyncio.to_thread(
            server.send_album,
            [(None, pictures[2]), (None, pictures[1]), ("/train@sdbot_test_bot lora owl", pictures[0])],
            chat=group,
        )
        await server.await_for(lambda m: m.chat_id == group["id"] and m.reply_to == ours[0]["message_id"])
        assert len(train.requests) == 2 and train.requests[1].text == "/train@sdbot_test_bot lora owl"
        assert [a.data for a in train.requests[1].attachments] == [largest_photo(server, m) for m in ours]

        # Without a caption in a private chat: one answer for the album, as for a single photo.
        silent = await asyncio.to_thread(server.send_album, [(None, pictures[0]), (None, pictures[1])])
        await server.await_for(lambda m: m.reply_to == silent[0]["message_id"])
        # Photos sent one by one are no album: each is a request of its own.
        loose = [server.send(photo=pictures[0]), server.send(photo=pictures[1])]
        for message in loose:
            await server.await_for(lambda m, message=message: m.reply_to == message["message_id"])
        await asyncio.sleep(tg_settings.telegram_album_seconds + 0.5)  # anything late would be here by now

    assert len(train.requests) == 2
    assert [m.text for m in replies_to(server, album[0])] == [answer.text]
    assert not replies_to(server, album[1]) and not replies_to(server, album[2])
    group_answers = [m for m in server.sent if m.chat_id == fake_telegram.GROUP["id"]]
    assert len(group_answers) == 1  # the addressed album's answer only
    assert len(replies_to(server, silent[0])) == 1 and "caption" in replies_to(server, silent[0])[0].text
    assert not replies_to(server, silent[1])
    assert all(len(replies_to(server, message)) == 1 for message in loose)


async def test_an_album_with_a_file_too_big_gets_one_refusal(
    tg_settings: Settings, tg_server: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tg_server
    train = record(monkeypatch, "train")
    settings = tg_settings.model_copy(update={"telegram_max_download_bytes": 4096, "telegram_album_seconds": 0.5})
    async with telegram_bot(settings, server):
        first = server.send("/train lora foxy", photo=png((10, 10, 10)), media_group_id="g1")
        server.send(document=("big.png", os.urandom(8192), "image/png"), media_group_id="g1")
        server.send(photo=png((90, 90, 90)), media_group_id="g1")
        refusal = await server.await_for(lambda m: m.reply_to == first["message_id"])
        await asyncio.sleep(1.0)
    assert "big.png is 8 KiB; I can fetch files up to 4 KiB" in refusal.text
    assert [m.text for m in server.sent] == [refusal.text] and train.requests == []


async def test_telegram_sends_documents(
    tg_settings: Settings, tg_server: FakeTelegram, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = tg_server
    settings = tg_settings.model_copy(update={"telegram_max_upload_bytes": 1024 * 1024})
    foxy = model_file(tmp_path, "foxy.safetensors", 300_000)
    huge = model_file(tmp_path, "huge.safetensors", 1536 * 1024)
    record(monkeypatch, "download", Reply("Here is foxy.", documents=(foxy, huge)))
    async with telegram_bot(settings, server) as (chat, _):
        asked = server.send("/download")
        document = await server.await_for(lambda m: m.kind == "document" and m.reply_to == asked["message_id"])
        refused = await server.await_for(lambda m: "huge.safetensors" in m.text and m.reply_to == asked["message_id"])
        assert [m.text for m in replies_to(server, asked)][0] == "Here is foxy."  # the text first
        assert document.filename == "foxy.safetensors" and document.uploaded == foxy.path.read_bytes()
        assert document.params.get("disable_content_type_detection") in (True, "true", "True")
        assert refused.text == ("huge.safetensors is 1.5 MiB, over the 1 MiB I may send in Telegram, so it isn't attached.")

        # a delivery (a finished job's result) carries its documents the same way
        item = Outgoing(
            1,
            str(fake_telegram.ADA["id"]),
            Reply("Your LoRA is ready.", kind="result", documents=(foxy,)),
            str(asked["message_id"]),
            None,
            str(fake_telegram.ADA["id"]),
        )
        message_id = await chat._deliver(item)
    delivered = [m for m in server.sent if str(m.message_id) == message_id]
    assert [m.text for m in delivered] == ["Your LoRA is ready."]
    assert [m.filename for m in server.sent if m.kind == "document"] == ["foxy.safetensors", "foxy.safetensors"]
    assert server.sent[-1].uploaded == foxy.path.read_bytes()


def test_album_names_are_numbered_only_where_they_repeat() -> None:
    files = (Attachment("photo.jpg", b"1"), Attachment("cat.png", b"2"), Attachment("photo.jpg", b"3"))
    assert [a.filename for a in distinct_names(files)] == ["photo-1.jpg", "cat.png", "photo-2.jpg"]
    assert [a.data for a in distinct_names(files)] == [b"1", b"2", b"3"]


# --- Discord -----------------------------------------------------------------------------------------


@pytest.fixture
def dc_server():  # type: ignore[no-untyped-def]
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


@pytest.fixture
def dc_settings(settings: Settings, dc_server: FakeDiscord) -> Settings:
    return settings.model_copy(
        update={
            "discord_token": SecretStr(fake_discord.TOKEN),
            "discord_api_base": dc_server.api_base,
            "discord_gateway_url": dc_server.gateway_url,
        }
    )


def discord_bot(settings: Settings):  # type: ignore[no-untyped-def]
    return running_chat(settings, DiscordChat, draw=False, ready=lambda chat: chat.client.is_ready())


def answer_to(interaction: Interaction):  # type: ignore[no-untyped-def]
    return lambda m: m.interaction_id == interaction.id and not m.deleted and m.content


async def test_discord_train_passes_its_pictures_in_order(
    dc_settings: Settings, dc_server: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = dc_server
    train = record(monkeypatch, "train")
    pictures = {f"image{i}": (f"p{i}.png", png((60 * i, 20, 20)), "image/png") for i in (1, 2, 3)}
    settings = dc_settings.model_copy(update={"max_upload_bytes": 4096})
    async with discord_bot(settings):
        [command] = [c for c in server.commands["global"] if c["name"] == "train"]
        options = {o["name"]: o for o in command["options"]}
        # the run's options typed, as many as Discord takes; the rest in `options`, as --flags
        assert list(options)[:3] == ["method", "name", "steps"] and list(options)[-11:] == [*(f"image{i}" for i in range(1, 11)), "options"]
        assert len(options) == 25
        assert [c["value"] for c in options["method"]["choices"]] == [
            "lora",
            "loha",
            "lokr",
            "dreambooth",
            "embedding",
            "hypernetwork",
            "preview",
            "status",
        ]

        # the fake sends options in the order given: the adapter orders them image1, image2, image3
        scrambled = {key: pictures[key] for key in ("image3", "image1", "image2")}
        asked = server.slash("train", {"method": "lora", "name": "foxy", "options": "--steps 20"}, attachments=scrambled)
        answer = await server.await_for(answer_to(asked))
        assert answer.content == "got 3 files for: lora foxy --steps 20"
        [request] = train.requests
        assert request.options == {"command": "train", "args": "lora foxy --steps 20"}
        assert [(a.filename, a.data) for a in request.attachments] == [pictures[f"image{i}"][:2] for i in (1, 2, 3)]

        status = server.slash("train", {"method": "status"})
        assert (await server.await_for(answer_to(status))).content == "got 0 files for: status"

        big = {"image1": pictures["image1"], "image2": ("big.png", os.urandom(6000), "image/png")}
        refused = server.slash("train", {"method": "lora", "name": "owl"}, attachments=big)
        error = await server.await_for(lambda m: m.interaction_id == refused.id and m.ephemeral)
        assert "`big.png` is 5.9 KiB; I take images up to 4 KiB" in error.content

        # typed in a channel, mentioning the bot (no Message Content intent needed): the same request
        posted = server.post(f"<@{APP_ID}> /train lora foxy --steps 20", attachments=list(pictures.values()))
        typed = await server.await_for(lambda m: m.reference == posted["id"])
        assert typed.content == "got 3 files for: lora foxy --steps 20"

    assert len(train.requests) == 3  # the refused one never reached the command
    assert train.requests[2].text == "/train lora foxy --steps 20" and train.requests[2].message_id == posted["id"]
    assert [(a.filename, a.data) for a in train.requests[2].attachments] == [p[:2] for p in pictures.values()]


async def test_discord_sends_documents(
    dc_settings: Settings, dc_server: FakeDiscord, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = dc_server
    server.upload_limit = 6000  # the interaction's attachment_size_limit
    foxy = model_file(tmp_path, "foxy.safetensors", 5000)
    huge = model_file(tmp_path, "huge.safetensors", 8000)
    lora = record(monkeypatch, "lora", Reply("Here is foxy.", documents=(foxy, huge)))
    async with discord_bot(dc_settings) as (chat, _):
        [command] = [c for c in server.commands["global"] if c["name"] == "lora"]
        [action] = [o for o in command["options"] if o["name"] == "action"]
        assert "download" in [c["value"] for c in action["choices"]]

        asked = server.slash("lora", {"action": "download", "name": "foxy"})
        answer = await server.await_for(answer_to(asked))
        assert lora.args[0].split() == ["download", "foxy"]
        assert answer.files == {"foxy.safetensors": foxy.path.read_bytes()}
        assert answer.content == ("Here is foxy.\n`huge.safetensors` is 7.8 KiB, over the 5.9 KiB I may upload here, so it isn't attached.")

        lora.reply = Reply("Only for you.", ephemeral=True, documents=(foxy,))  # a private file: only the asker gets it
        private = server.slash("lora", {"action": "download", "name": "foxy"})
        secret = await server.await_for(lambda m: m.interaction_id == private.id and m.ephemeral)
        assert secret.content == "Only for you." and secret.files == {"foxy.safetensors": foxy.path.read_bytes()}

        # a delivery without a live interaction: a channel message with the file
        general = fake_discord.GENERAL["id"]
        item = Outgoing(1, general, Reply("Your LoRA is ready.", kind="result", documents=(foxy,)), None, None, fake_discord.ADA["id"])
        message_id = await chat._deliver(item)
    [delivered] = [m for m in server.sent if m.id == message_id]
    assert delivered.channel_id == general and "Your LoRA is ready." in delivered.content
    assert delivered.files == {"foxy.safetensors": foxy.path.read_bytes()}


# --- console -----------------------------------------------------------------------------------------


async def test_console_lists_documents(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    foxy = model_file(tmp_path, "foxy.safetensors", 4321)
    record(monkeypatch, "download", Reply("Here is foxy.", documents=(foxy,)))
    core = await run_bot.build_core(settings)
    out = io.StringIO()
    try:
        lines = io.StringIO(json.dumps({"text": "/download"}) + "\n" + json.dumps({"text": "/help"}) + "\n")
        chat = ConsoleChat(core.service, state_dir=tmp_path / "console", input_stream=lines, output_stream=out, poll_seconds=0.1)
        assert await asyncio.wait_for(chat.run(), 60) == 0
        item = Outgoing(1, "console", Reply("Your LoRA is ready.", kind="result", documents=(foxy,)), "u1", None, "console")
        await chat._send(item)  # a delivery is shown the same way
    finally:
        await core.db.close()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    answer = next(e for e in events if e["reply_to"] == "u1" and e["text"] == "Here is foxy.")
    saved = tmp_path / "console" / "downloads" / answer["id"] / "foxy.safetensors"  # under its real name
    assert answer["documents"] == [{"path": str(saved), "filename": "foxy.safetensors", "size": 4321}]
    assert Path(answer["documents"][0]["path"]).read_bytes() == foxy.path.read_bytes()
    assert all("documents" not in e for e in events if e["reply_to"] == "u2")  # only where there are some
    assert events[-1]["text"] == "Your LoRA is ready." and events[-1]["documents"][0]["filename"] == "foxy.safetensors"
    assert f"📎  foxy.safetensors (4.2 KiB): {saved}" in human(answer)
