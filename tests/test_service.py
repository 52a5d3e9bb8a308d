"""The command layer end to end in one process, as an adapter uses it: requests in, replies out,
a real worker on the tiny model, a real SQLite file. Buttons, remix, uploads and accounts."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Iterable
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import run_bot
from commands.frame.types import Attachment, Outgoing, Press, Reply, Request
from config import ModelEntry, Settings
from tests.support.labels import EDIT_LABELS


class Bot:
    """Plays the part of an adapter on platform "test", chat "chat"."""

    def __init__(self, core: run_bot.Core, worker) -> None:  # type: ignore[no-untyped-def]
        self.core, self.worker = core, worker
        self.service = core.service
        self._ids = count(1)
        self.followups: dict[str, list[tuple[str, Reply]]] = {}  # a result's message id -> its followups

    async def send(self, text: str | None = None, user: str = "alice", **fields) -> list[tuple[str, Reply]]:  # type: ignore[no-untyped-def]
        request = Request(
            platform="test", user_id=user, chat_id="chat", user_name=user, message_id=f"in{next(self._ids)}", text=text, **fields
        )
        sent = []
        for reply in await self.service.handle(request):
            message_id = f"m{next(self._ids)}"
            await self.service.sent("test", "chat", message_id, reply)
            sent.append((message_id, reply))
        return sent

    async def press(self, message_id: str, action: str, user: str = "alice") -> list[tuple[str, Reply]]:
        return await self.send(None, user=user, press=Press(message_id, action))

    async def finish(self) -> list[tuple[str, Outgoing]]:
        """Run every queued job, then deliver what is owed."""
        while await self.worker.run_once():
            pass
        delivered = []
        for item in await self.service.pending("test"):
            message_id = f"m{next(self._ids)}"
            await self.service.delivered("test", item, message_id)
            delivered.append((message_id, item))
            for followup in item.reply.followups:  # a ControlNet result's maps, sent after it
                followup_id = f"m{next(self._ids)}"
                await self.service.sent("test", "chat", followup_id, followup)
                self.followups.setdefault(message_id, []).append((followup_id, followup))
        return delivered

    async def history(self, user: str = "alice") -> str:
        [(_, reply)] = await self.send("/history", user=user)
        return reply.text


async def make_bot(settings: Settings) -> Bot:
    core = await run_bot.build_core(settings)
    return Bot(core, run_bot.build_worker(core))


@contextlib.asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[Bot]:
    """A bot for one test, its worker's threads and its database closed afterwards."""
    made = await make_bot(settings)
    try:
        yield made
    finally:
        made.worker.executor.shutdown()
        await made.core.db.close()


def tiny_settings(tmp_path: Path, models_dir: Path, model: str, others: Iterable[str] = (), **changes: Any) -> Settings:
    """A chat test's settings: the built-in tiny `model` by default and `others` beside it, fast
    polling, 2 steps; `changes` on top."""
    fields: dict[str, Any] = dict(
        _env_file=None,
        model=model,
        models={name: ModelEntry(source=name) for name in others},
        data_dir=tmp_path / "data",
        models_dir=models_dir,
        default_steps=2,
        poll_seconds=0.2,
        progress_seconds=0.2,
    )
    return Settings(**{**fields, **changes})


def png(color: tuple[int, int, int], size: tuple[int, int] = (80, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(reply: Reply, index: int = 0) -> np.ndarray:
    return np.asarray(Image.open(reply.images[index].path).convert("RGB")).astype(int)


async def test_imagine_then_result_with_buttons(bot: Bot) -> None:
    [(status_id, status)] = await bot.send("/imagine a red fox --seed 42 --steps 2 --n 2")
    assert status.kind == "status" and "queued (position 1)" in status.text
    [(result_id, item)] = await bot.finish()
    reply = item.reply
    assert item.reply_to.startswith("in") and item.status_message_id == status_id
    assert [a.label for a in reply.actions] == ["U1", "U2", "V1", "V2", "Reroll"]
    assert [img.seed for img in reply.images] == [42, 43] and all(img.path.exists() for img in reply.images)
    assert "Seed: 43" in Image.open(reply.images[1].path).text["parameters"]
    # U2: image 2 alone, its own buttons, no new job
    [(single_id, single)] = await bot.press(result_id, "U2")
    assert single.kind == "single" and [img.seed for img in single.images] == [43]
    assert [a.label for a in single.actions] == EDIT_LABELS
    assert await bot.finish() == []


async def test_vary_reroll_and_vary_on_a_single(bot: Bot) -> None:
    await bot.send("/imagine a lighthouse --seed 7 --steps 4 --n 2")
    [(result_id, result)] = await bot.finish()
    [(_, queued)] = await bot.press(result_id, "v2")  # labels match case-insensitively
    assert queued.kind == "status"
    [(_, varied)] = await bot.finish()
    assert "🔁" in varied.reply.text and len(varied.reply.images) == 2
    assert not np.array_equal(pixels(varied.reply), pixels(result.reply, 1))
    info = (await bot.send(f"/info {varied.reply.job_id}"))[0][1].text
    assert f"From job {result.reply.job_id}, image 2" in info and "Denoising strength: 0.6" in info

    await bot.press(result_id, "reroll")
    [(_, rerolled)] = await bot.finish()
    assert rerolled.reply.images[0].seed != 7 and len(rerolled.reply.images) == 2
    assert "a lighthouse" in rerolled.reply.text

    [(single_id, _)] = await bot.press(result_id, "U1")
    await bot.press(single_id, "Vary (Strong)", user="bob")  # anyone who sees it may press; the job is bob's
    [(_, bobs)] = await bot.finish()
    assert bobs.user_id == "bob" and bobs.reply.images[0].width == 64


async def test_reply_to_a_result_remixes_it(bot: Bot) -> None:
    await bot.send("/imagine a red fox --seed 3 --steps 4 --no blurry --sampler euler")
    [(result_id, result)] = await bot.finish()
    [(_, queued)] = await bot.send("a blue fox --strength 0.5", reply_to=result_id)
    assert queued.kind == "status" and "strength 0.5" in queued.text
    [(_, remix)] = await bot.finish()
    info = (await bot.send(f"/info {remix.reply.job_id}"))[0][1].text
    assert "a blue fox" in info and "Negative prompt: blurry" in info and "Sampler: Euler," in info
    assert f"From job {result.reply.job_id}" in info


async def test_reply_to_a_batch_asks_which_image(bot: Bot) -> None:
    await bot.send("/imagine cats --steps 2 --n 2")
    [(result_id, _)] = await bot.finish()
    [(_, reply)] = await bot.send("dogs", reply_to=result_id)
    assert reply.kind == "error" and "Press U1–U2" in reply.text


async def test_attachment_is_the_init_image(bot: Bot) -> None:
    photo = Attachment("photo.png", png((200, 30, 30), (80, 64)), "image/png")
    [(_, queued)] = await bot.send("/imagine a red square --steps 4 --strength 0.3", attachments=(photo,))
    assert "80x64" in queued.text and "strength 0.3" in queued.text
    [(_, done)] = await bot.finish()
    image = pixels(done.reply)
    assert image.shape == (64, 80, 3)


async def test_reply_to_a_persons_photo(bot: Bot) -> None:
    photo = Attachment("p.jpg", png((10, 200, 10)), "image/jpeg")
    [(_, queued)] = await bot.send("make it night --steps 4", reply_to="someone-elses-msg", reply_to_images=(photo,))
    assert queued.kind == "status"
    [(_, done)] = await bot.finish()
    assert "🔁" in done.reply.text


@pytest.mark.parametrize(
    ("attachment", "expected"),
    [
        (Attachment("notes.txt", b"hello", "text/plain"), "can't read `notes.txt` as an image"),
        (Attachment("huge.png", b"x" * (20 * 2**20 + 1), "image/png"), "up to 20 MiB"),
    ],
)
async def test_bad_uploads_get_a_clear_reply(bot: Bot, attachment: Attachment, expected: str) -> None:
    [(_, reply)] = await bot.send("/imagine a cat", attachments=(attachment,))
    assert reply.kind == "error" and expected in reply.text


async def test_decompression_bomb_is_refused_before_decoding(bot: Bot) -> None:
    bot.core.settings.max_upload_pixels = 100 * 100
    [(_, reply)] = await bot.send("/imagine a cat", attachments=(Attachment("big.png", png((0, 0, 0), (200, 200))),))
    assert "megapixels" in reply.text


BAD_INPUTS = [
    "/imagine a cat --foo 1",
    "/imagine a cat --no",
    "/imagine a cat --steps",
    "/imagine a cat --steps many",
    "/imagine a cat --steps 1000",
    "/imagine a cat --size 100x100",
    "/imagine a cat --size 4096x4096",
    "/imagine a cat --n 9",
    "/imagine a cat --cfg 99",
    "/imagine a cat --strength 2",
    "/imagine",
    "/imagine --seed 4",
    "/imagine a cat --sampler nope",
    "/imagine a cat --model nope",
    "/imagine a cat --strength 0.5",
    "/frobnicate",
]


async def test_bad_input_creates_no_job(bot: Bot) -> None:
    await bot.send("/imagine one good job --steps 2")
    before = await bot.history()
    for text in BAD_INPUTS:
        replies = await bot.send(text)
        assert len(replies) == 1, text
        assert replies[0][1].kind == "error" and replies[0][1].ephemeral, text
        assert "Traceback" not in replies[0][1].text
    assert await bot.history() == before
    assert "#1" in before and "#2" not in before


async def test_queue_limit(bot: Bot) -> None:
    for _ in range(5):
        await bot.send("/imagine a cat --steps 2")
    [(_, reply)] = await bot.send("/imagine a cat --steps 2")
    assert reply.kind == "error" and "limit is 5" in reply.text
    bot.core.settings.admin_ids = ["test:alice"]  # as after a restart with the new config:
    bot.core.ctx.roles_changed()  # no role resolved before it is kept (SDBOT_ROLE_CACHE_SECONDS)
    [(_, reply)] = await bot.send("/imagine a cat --steps 2")
    assert reply.kind == "status"  # admins are not limited


async def test_settings_show_set_use_reset(bot: Bot) -> None:
    [(_, shown)] = await bot.send("/settings")
    assert "steps: 4 (default)" in shown.text
    [(_, saved)] = await bot.send("/settings --steps 3 --sampler euler_a --no ugly --ar 2:1")
    assert "Saved." in saved.text and "steps: 3" in saved.text and "Euler a" in saved.text
    [(_, queued)] = await bot.send("/imagine a cat")
    assert "3 steps · Euler a" in queued.text and "128x64" in queued.text  # 2:1, grown to the 64 px minimum side
    [(_, bad)] = await bot.send("/settings --steps 999 --size 1x1")
    assert bad.kind == "error" and len(bad.text.splitlines()) == 3
    [(_, reset)] = await bot.send("/settings reset sampler")
    assert "DPM++ 2M Karras (default)" in reset.text and "steps: 3" in reset.text
    [(_, reset)] = await bot.send("/settings reset")
    assert "steps: 4 (default)" in reset.text


async def test_queue_cancel_history_info(bot: Bot) -> None:
    await bot.send("/imagine first --steps 2")
    await bot.send("/imagine second --steps 2")
    await bot.send("/imagine bobs --steps 2", user="bob")
    [(_, queue)] = await bot.send("/queue")
    # fair share: bob's first job goes before alice's second
    assert "Job 1 queued: position 1" in queue.text and "Job 2 queued: position 3" in queue.text
    assert "3 waiting" in queue.text
    [(_, cancelled)] = await bot.send("/cancel")
    assert "Job 2 cancelled" in cancelled.text
    [(_, nope)] = await bot.send("/cancel 3")
    assert nope.kind == "error" and "among yours" in nope.text  # bob's job
    [(_, nope)] = await bot.send("/info 3")
    assert "among yours" in nope.text
    delivered = await bot.finish()
    assert sorted(item.reply.job_id for _, item in delivered) == [1, 3]
    history = await bot.history()
    assert "#2 🛑 cancelled" in history and "#1 ✅ succeeded" in history
    result_id = next(mid for mid, item in delivered if item.reply.job_id == 1)
    [(_, info)] = await bot.send("/info", reply_to=result_id)
    assert "Job 1: ✅ succeeded" in info.text and "Steps: 2, Sampler: DPM++ 2M Karras" in info.text


async def test_buttons_and_replies_resolve_after_a_restart(settings: Settings) -> None:
    first = await make_bot(settings)
    await first.send("/imagine a castle --steps 2 --n 2")
    [(result_id, _)] = await first.finish()
    first.worker.executor.shutdown()
    await first.core.db.close()

    second = await make_bot(settings)  # a new process would see exactly this: the same files
    try:
        [(single_id, single)] = await second.press(result_id, "U1")
        assert single.kind == "single"
        [(_, queued)] = await second.send("a castle at night", reply_to=single_id)
        assert queued.kind == "status"
        await second.press(result_id, "Reroll")
        assert len(await second.finish()) == 2
        [(_, unknown)] = await second.press("m-never-sent", "U1")
        assert unknown.kind == "error" and "don't know that message" in unknown.text
        [(_, wrong)] = await second.press(result_id, "U7")
        assert "Its buttons: U1, U2, V1, V2, Reroll" in wrong.text
    finally:
        second.worker.executor.shutdown()
        await second.core.db.close()


async def test_model_load_failure_reaches_the_user(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.model = str(tmp_path / "no-such-model")
    bot = await make_bot(settings)
    try:
        await bot.send("/imagine a cat")
        [(_, item)] = await bot.finish()
        assert item.reply.kind == "failure"
        assert "does not exist" in item.reply.text and "Job 1 failed" in item.reply.text
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()


async def test_structured_options_use_the_same_checks(bot: Bot) -> None:
    """Discord's typed options go through the same validation as the text syntax."""
    [(_, text_error)] = await bot.send("/imagine a cat --steps 500 --sampler warp")
    [(_, typed_error)] = await bot.send(None, options={"command": "imagine", "args": "a cat", "steps": 500, "sampler": "warp"})
    assert typed_error.kind == "error"  # the same problems, each named as the user wrote it
    assert typed_error.text == text_error.text.replace("--steps 500", "steps: 500").replace("--sampler warp", "sampler: warp")
    [(_, queued)] = await bot.send(None, options={"command": "imagine", "args": "a cat", "no": "dogs", "seed": 5, "steps": 2, "n": 2})
    assert queued.kind == "status" and "seeds 5–6" in queued.text
    [(_, item)] = await bot.finish()
    assert "Negative: dogs" in item.reply.text
    [(_, history)] = await bot.send(None, options={"command": "history", "args": "1"})
    assert "Your last job:" in history.text


async def test_a_delivery_that_keeps_failing_is_given_up(bot: Bot) -> None:
    await bot.send("/imagine a cat --steps 2")
    while await bot.worker.run_once():
        pass
    [item] = await bot.service.pending("test")
    results = [await bot.service.delivery_failed(item, "chat not found") for _ in range(10)]
    assert results == [False] * 9 + [True]
    assert await bot.service.pending("test") == [] and not await bot.service.busy("test")


async def test_no_input_reaches_an_internal_error(bot: Bot) -> None:
    """Random flag soup: every reply is a queued job or a user error, never an apology."""
    import random

    rng = random.Random(7)
    flags = ["--no", "--ar", "--size", "--seed", "--steps", "--cfg", "--sampler", "--n", "--model", "--strength", "—seed", "--x", "--", "-"]
    values = [
        "",
        "0",
        "-1",
        "1e9",
        "nan",
        "inf",
        "3:2",
        "0:1",
        "64x64",
        "64×96",
        "8x8",
        "euler_a",
        "tiny",
        "0.5",
        "1.5",
        "héllo",
        "%s",
        "{}",
        "4294967296",
        "2.0",
        "x" * 40,
    ]
    for i in range(150):
        parts = ["/imagine", rng.choice(["a cat", "", "ünïcode ✨", "--"])]
        for _ in range(rng.randint(0, 4)):
            parts += [rng.choice(flags), rng.choice(values)]
        for _, reply in await bot.send(" ".join(parts), user=f"fuzz{i}"):
            assert reply.kind in ("status", "error"), (parts, reply.text)
            assert "went wrong on my side" not in reply.text, (parts, reply.text)


async def test_a_request_is_resolved_once(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The account is found once per request (by CommandService, before the handler), not again
    by each handler; a reply's bot message and job are looked up once, though /imagine asks
    whether it is a clip and then which picture it is."""
    from storage import outbox, users

    await bot.send("/imagine a red fox --seed 3 --steps 2")
    [(result_id, _)] = await bot.finish()
    counted = {"accounts": 0, "refs": 0}

    def counting(name: str, real):  # type: ignore[no-untyped-def]
        async def count(*args, **kwargs):  # type: ignore[no-untyped-def]
            counted[name] += 1
            return await real(*args, **kwargs)

        return count

    monkeypatch.setattr(users, "get_or_create", counting("accounts", users.get_or_create))
    monkeypatch.setattr(outbox, "find_ref", counting("refs", outbox.find_ref))
    bot.core.ctx.roles.clear()  # a person not seen lately: their account is resolved ...
    [(_, queued)] = await bot.send("a blue fox --strength 0.5 --steps 2", reply_to=result_id)
    assert queued.kind == "status"
    assert counted == {"accounts": 1, "refs": 1}  # ... once, and the replied-to picture found once
    [(_, saved)] = await bot.send("/settings --steps 30")
    assert "Saved" in saved.text and counted["accounts"] == 1  # seen just now: nothing to look up again
