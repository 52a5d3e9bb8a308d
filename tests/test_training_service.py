"""/train through the command layer with a real worker on the tiny model: every bad dataset is
refused with its reason and nothing is queued or stored; each method makes an asset that changes
the picture; DreamBooth draws its class pictures once; one run at a time and the daily budget."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from commands.frame.types import Attachment
from generation.parameters import parse_infotext
from generation.training.run import TrainingTask
from storage.tables import ClassImageSet, Job, utcnow
from tests.support.train_pictures import picture_bytes
from tests.test_assets_service import blobs_of
from tests.test_service import Bot, make_bot, pixels

PROMPT = "a red fox in the snow --seed 11 --steps 2 --size 64x64"
QUICK = "--steps 6 --seed 3 --rank 4 --lr 1e-3 --sample-every 3"
QUICK_EMBEDDING = "--steps 6 --seed 3 --lr 0.05 --vectors 2 --init-word fox --sample-every 3"


def pictures(count: int = 4) -> tuple[Attachment, ...]:
    return tuple(Attachment(f"fox{i}.png", data) for i, data in enumerate(picture_bytes(count)))


def zipped(members: dict[str, bytes]) -> Attachment:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return Attachment("pictures.zip", buffer.getvalue())


async def jobs_in(bot: Bot) -> int:
    async with bot.core.db.transaction() as session:
        return (await session.execute(select(func.count()).select_from(Job))).scalar_one()


@pytest.fixture
async def small_bot(settings):  # type: ignore[no-untyped-def]
    made = await make_bot(settings.model_copy(update={"train_max_images": 5, "train_max_zip_bytes": 1_000_000, "train_daily_steps": 20}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_bad_datasets_are_refused_and_nothing_is_queued_or_stored(small_bot: Bot) -> None:
    bot = small_bot
    good = picture_bytes(3)
    bad = {
        "no pictures": ((), "no pictures"),
        "a text file posing as a picture": ((Attachment("cat.png", b"not a picture at all"), *pictures(3)), "cat.png"),
        "a zip with ../ names": ((zipped({"../evil.png": good[0], "a.png": good[1], "b.png": good[2]}),), "outside"),
        "a zip bomb": ((zipped({"a.png": good[0], "zeros.png": b"\0" * 5_000_000}),), "unpacks to"),
        "too many pictures": (
            pictures(4) + tuple(Attachment(f"more{i}.png", d) for i, d in enumerate(picture_bytes(4, seed=9))),
            "the limit is 5",
        ),
        "too few pictures": (pictures(2), "at least 3"),
    }
    before = blobs_of(bot)
    for what, (attachments, words) in bad.items():
        [(_, reply)] = await bot.send(f"/train lora foxy {QUICK}", attachments=attachments)
        assert reply.kind == "error" and words in reply.text, (what, reply.text)
    assert blobs_of(bot) == before
    assert await jobs_in(bot) == 0
    [(_, no_name)] = await bot.send("/train lora", attachments=pictures())
    assert no_name.kind == "error" and "one name" in no_name.text
    [(_, bad_option)] = await bot.send("/train lora foxy --rank 999 --captions maybe", attachments=pictures())
    assert bad_option.kind == "error" and "--rank 999" in bad_option.text and "--captions" in bad_option.text
    [(_, no_class)] = await bot.send("/train dreambooth rex", attachments=pictures())
    assert no_class.kind == "error" and "--class" in no_class.text
    assert blobs_of(bot) == before and await jobs_in(bot) == 0


async def test_one_run_at_a_time_and_the_daily_step_budget(small_bot: Bot) -> None:
    [(_, queued)] = await small_bot.send(f"/train lora foxy {QUICK}", attachments=pictures())
    assert queued.kind == "status"
    [(_, second)] = await small_bot.send(f"/train lora other {QUICK}", attachments=pictures())
    assert second.kind == "error" and "one run at a time" in second.text
    await small_bot.finish()
    [(_, over)] = await small_bot.send("/train lora other --steps 15", attachments=pictures())
    assert over.kind == "error" and "14 of your 20 training steps" in over.text
    # the first run's steps stop counting 24 hours after it was queued, a moment ago
    expected = {(utcnow() + timedelta(days=1, minutes=-m)).strftime("%H:%M") for m in (0, 1)}
    found = re.search(r"more come back at (\d\d:\d\d) UTC", over.text)
    assert found and found.group(1) in expected, over.text
    [(_, me)] = await small_bot.send("/me")
    assert "Training steps, last 24 h: 6 of 20 — the oldest run's steps come back at" in me.text


@pytest.mark.parametrize(
    ("method", "listing", "use"),
    [
        ("loha", "/loras", "<lora:{name}:1> a red fox in the snow"),
        ("lokr", "/loras", "<lora:{name}:1> a red fox in the snow"),
        ("embedding", "/embeddings", "a red fox in the snow, {name}"),
    ],
)
async def test_each_method_makes_an_asset_that_changes_the_picture(bot: Bot, method: str, listing: str, use: str) -> None:
    name = f"my{method}"
    options = QUICK_EMBEDDING if method == "embedding" else QUICK
    [(_, queued)] = await bot.send(f"/train {method} {name} {options}", attachments=pictures())
    assert queued.kind == "status", queued.text
    delivered = await bot.finish()
    kinds = [item.reply.kind for _, item in delivered]
    assert kinds == ["sample", "result"], [item.reply.text for _, item in delivered]
    result = delivered[-1][1].reply
    assert f"`{name}`" in result.text and result.images
    [(_, listed)] = await bot.send(listing)
    assert f"• {name} —" in listed.text
    await bot.send(f"/imagine {use.format(name=name)} {PROMPT.replace('a red fox in the snow ', '')}")
    await bot.send(
        f"/imagine a red fox in the snow{', ' + 'fox' if method == 'embedding' else ''} {PROMPT.replace('a red fox in the snow ', '')}"
    )
    [(_, with_it), (_, without)] = [(m, item) for m, item in await bot.finish()]
    assert np.abs(pixels(with_it.reply) - pixels(without.reply)).max() > 2


async def test_dreambooth_draws_its_class_pictures_once(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    original = TrainingTask._save_class_images

    async def counting(self, key, pngs):  # type: ignore[no-untyped-def]
        drawn.append(key)
        await original(self, key, pngs)

    monkeypatch.setattr(TrainingTask, "_save_class_images", counting)
    for name in ("rex", "rex2"):
        [(_, queued)] = await bot.send(f'/train dreambooth {name} {QUICK} --class "a dog" --class-images 2', attachments=pictures())
        assert queued.kind == "status", queued.text
        delivered = await bot.finish()
        assert "trained the DreamBooth LoRA" in delivered[-1][1].reply.text
    assert len(drawn) == 1
    async with bot.core.db.transaction() as session:
        [stored] = (await session.execute(select(ClassImageSet))).scalars().all()
    assert len(stored.blobs) == 2


async def test_preview_shows_the_captions_and_trains_nothing(bot: Bot) -> None:
    data = picture_bytes(3)
    archive = zipped({"a/fox0.png": data[0], "a/fox0.txt": "foxy, a fox   in the snow\n", "a/fox1.png": data[1], "a/fox2.png": data[2]})
    [(_, queued)] = await bot.send(f"/train preview lora foxy --captions none {QUICK}", attachments=(archive,))
    assert queued.kind == "status" and "captions for `foxy`" in queued.text
    [(preview_id, item)] = await bot.finish()
    lines = item.reply.text.splitlines()
    assert "the captions `foxy` would be trained with" in lines[0]
    assert lines[1:4] == ["1. a/fox0.png: foxy, a fox in the snow", "2. a/fox1.png: foxy", "3. a/fox2.png: foxy"]
    [(_, listed)] = await bot.send("/loras")
    assert "none yet" in listed.text

    [(_, theirs)] = await bot.press(preview_id, "Train with these captions", user="bob")
    assert theirs.kind == "error" and "Only the person who sent these pictures" in theirs.text
    [(_, queued)] = await bot.press(preview_id, "Train with these captions")
    assert queued.kind == "status" and "LoRA `foxy` from 3 pictures" in queued.text, queued.text
    [(_, trained)] = [(m, i) for m, i in await bot.finish() if i.reply.kind == "result"]
    assert "trained the LoRA `foxy`" in trained.reply.text
    [(_, info)] = await bot.send(f"/info {trained.reply.job_id}")
    assert "1. foxy, a fox in the snow" in info.text and "2. foxy" in info.text


@pytest.fixture
async def checkpointing_bot(settings):  # type: ignore[no-untyped-def]
    made = await make_bot(settings.model_copy(update={"train_checkpoint_steps": 4}))  # a 6-step run saves at step 4
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_train_status_shows_each_runs_step_checkpoint_and_loss_and_previews_apart(checkpointing_bot: Bot) -> None:
    bot = checkpointing_bot
    [(_, previewing)] = await bot.send(f"/train preview lora peek --captions none {QUICK}", attachments=pictures(3))
    await bot.finish()
    [(_, queued)] = await bot.send(f"/train lora foxy --captions none {QUICK}", attachments=pictures(3))
    [(_, waiting)] = await bot.send("/train status")
    runs, _, previews = waiting.text.partition("Caption previews")
    assert f"• #{queued.job_id} queued (position 1): LoRA `foxy` · step 0/6 · no checkpoint yet · no loss yet" in runs, waiting.text
    assert f"#{previewing.job_id}" not in runs, "a preview trains nothing: it is no run"
    assert f"• #{previewing.job_id} succeeded: captions for `peek` from 3 pictures" in previews, waiting.text

    await bot.finish()
    [(_, done)] = await bot.send("/train status")
    runs, _, previews = done.text.partition("Caption previews")
    found = re.search(
        rf"• #{queued.job_id} succeeded: LoRA `foxy` · step 6/6 · last checkpoint at step 4 · loss (\d+\.\d{{4}}) at step 6$",
        runs,
        re.MULTILINE,
    )
    assert found, done.text
    async with bot.core.db.transaction() as session:  # the loss shown is the run's last, as its result keeps it
        job = await session.get(Job, queued.job_id)
        assert job is not None and f"{job.result['losses'][-1][1]:.4f}" == found.group(1)
    assert f"#{previewing.job_id}" not in runs and f"#{previewing.job_id} succeeded" in previews


async def test_samples_carry_their_run_step_and_settings(bot: Bot) -> None:
    [(_, queued)] = await bot.send(f"/train lora foxy --captions none {QUICK}", attachments=pictures(3))
    [(_, sample), (_, result)] = await bot.finish()
    for reply, step in ((sample.reply, 3), (result.reply, 6)):
        parameters = Image.open(reply.images[0].path).text.get("parameters")
        assert parameters, f"the {reply.kind} at step {step} carries no parameters"
        read = parse_infotext(parameters)
        assert read["Prompt"] == "foxy" and read["Training"] == "LoRA foxy" and read["Training step"] == f"{step}/6"
        assert (read["Job"], read["Seed"], read["Steps"], read["Sampler"], read["CFG scale"], read["Size"], read["Model"]) == (
            str(queued.job_id),
            "3",
            "4",
            "Euler a",
            "7",
            "64x64",
            "tiny",
        ), read


async def test_a_reply_to_an_earlier_run_adds_its_pictures(bot: Bot) -> None:
    [(status_id, queued)] = await bot.send(f"/train lora foxy {QUICK}", attachments=pictures(3))
    assert queued.kind == "status"
    await bot.finish()
    extra = tuple(Attachment(f"new{i}.png", d) for i, d in enumerate(picture_bytes(2, seed=7)))
    [(_, again)] = await bot.send(f"/train lora foxy2 {QUICK}", attachments=extra, reply_to=status_id)
    assert again.kind == "status", again.text
    assert "from 5 pictures" in again.text and "With the 3 pictures of the run you replied to and 2 new ones." in again.text
    await bot.finish()
    [(_, same)] = await bot.send(f"/train lora foxy3 {QUICK}", reply_to=status_id)  # no pictures: the same ones again
    assert same.kind == "status" and "from 3 pictures" in same.text
    await bot.finish()
    [(_, other)] = await bot.send(f"/train lora theirs {QUICK}", user="bob", reply_to=status_id)
    assert other.kind == "error" and "no pictures" in other.text  # alice's pictures stay hers


async def test_options_of_another_method_are_refused(bot: Bot) -> None:
    [(_, reply)] = await bot.send("/train embedding shiny --rank 4 --steps 5", attachments=pictures())
    assert reply.kind == "error" and "`--rank` is a LoRA's" in reply.text
    [(_, reply)] = await bot.send("/train lora shiny --vectors 4 --steps 5", attachments=pictures())
    assert reply.kind == "error" and "`--vectors` is an embedding's" in reply.text


async def test_a_run_leaves_the_model_as_it_was(bot: Bot) -> None:
    await bot.send(f"/imagine {PROMPT}")
    [(_, before)] = await bot.finish()
    for method in ("lora", "loha"):
        await bot.send(f"/train {method} left{method} {QUICK}", attachments=pictures())
        await bot.finish()
    await bot.send(f"/imagine {PROMPT}")
    [(_, after)] = await bot.finish()
    assert np.array_equal(pixels(before.reply), pixels(after.reply)), "no trained adapter may stay active"
    from peft.tuners.tuners_utils import BaseTunerLayer

    pipe = bot.worker.engine.models.get("tiny").txt2img
    held = [
        name
        for module in (pipe.unet, pipe.text_encoder)
        for name, layer in module.named_modules()
        if isinstance(layer, BaseTunerLayer) and layer.scaling
    ]
    assert held == [], f"layers still holding an adapter: {held[:3]}"


@pytest.mark.parametrize("dies", ["writing a checkpoint", "deleting the one before"])
async def test_a_worker_that_dies_at_a_checkpoint_leaks_no_file(settings, monkeypatch: pytest.MonkeyPatch, dies: str) -> None:  # type: ignore[no-untyped-def]
    """Six steps, a checkpoint every two: the worker dies at the second checkpoint, after its file
    is written but before its row commits, or after the row commits but before the file it
    superseded is deleted. The attempt that takes the job over deletes that file: when the run
    ends no checkpoint is left on disk (on a real model each is tens of MB)."""
    from storage import training as training_store

    made = await make_bot(settings.model_copy(update={"train_checkpoint_steps": 2}))
    blobs, calls = made.core.ctx.blobs, []
    real_save, real_delete = training_store.save_checkpoint, blobs.delete

    async def save(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("save")
        if calls.count("save") == 2:  # the step-4 file is on disk; its row never commits
            raise RuntimeError("the worker died here (pretend)")
        return await real_save(*args, **kwargs)

    def delete(key: str) -> None:
        calls.append("delete")
        if calls.count("delete") == 1:  # step 4's row committed; step 2's file is left
            raise RuntimeError("the worker died here (pretend)")
        real_delete(key)

    if dies == "writing a checkpoint":
        monkeypatch.setattr(training_store, "save_checkpoint", save)
    else:
        monkeypatch.setattr(blobs, "delete", delete)
    try:
        [(_, queued)] = await made.send("/train lora foxy --steps 6 --seed 3 --rank 4 --sample-every 0", attachments=pictures())
        assert queued.kind == "status", queued.text
        delivered = await made.finish()
        assert "trained the LoRA `foxy`" in delivered[-1][1].reply.text, delivered[-1][1].reply.text
        async with made.core.db.transaction() as session:
            [job] = (await session.execute(select(Job))).scalars().all()
        assert job.attempt == 2, f"a second attempt took the job over ({calls})"
        assert {name for name in blobs_of(made) if name.endswith(".ckpt")} == set()
    finally:
        made.worker.executor.shutdown()
        await made.core.db.close()
