"""`--draft` and Enhance through the bot (issue 35): a draft is the family's fast path at half the
size, its PNG says so, and Enhance draws the picked picture in full from the same seed and
prompt, pixel for pixel what `/imagine` with that seed draws. A LoRA draft applies the operator's
file through the same adapters as a user's LoRA (the draft equals the same picture drawn with that
file uploaded as a LoRA); a model draft draws with the registry's distilled model; with nothing
configured, or something that can't serve, the draft is fewer steps and the reply says why. Every
bad input is answered before anything is queued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from commands.frame.types import Attachment, Reply
from config import ModelEntry, Settings
from tests.test_service import Bot, png, running_bot, tiny_settings

PROMPT = "a red fox in the snow"


def parameters(reply: Reply, index: int = 0) -> str:
    return Image.open(reply.images[index].path).text["parameters"]


def pixels(reply: Reply, index: int = 0) -> np.ndarray:
    return np.asarray(Image.open(reply.images[index].path).convert("RGB")).astype(int)


def labels(reply: Reply) -> list[str]:
    return [action.label for action in reply.actions]


@pytest.fixture(scope="module")
def draft_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 'fast' LoRA for the tiny model (random weights: what matters is that it is applied)."""
    from generation.models.tiny import build_tiny_pipeline
    from tests.test_adapters import make_lora, to_kohya

    path = tmp_path_factory.mktemp("draft") / "tiny-lcm.safetensors"
    save_file(to_kohya(make_lora(build_tiny_pipeline(), 3)), path)
    return path


def draft_settings(tmp_path: Path, models_dir: Path, **changes: Any) -> Settings:
    # 6 steps in full (a fewer-steps draft: 2), sides from 32 px so the tiny model's 64 px halves
    return tiny_settings(tmp_path, models_dir, "tiny", default_steps=6, min_side=32, **changes)


async def queued_jobs(bot: Bot) -> int:
    from sqlalchemy import func, select

    from storage.tables import Job

    async with bot.core.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


async def test_draft_then_enhance_keeps_the_seed_and_prompt(tmp_path: Path, models_dir: Path, draft_lora: Path) -> None:
    async with running_bot(draft_settings(tmp_path, models_dir, draft={"sd1": str(draft_lora)})) as bot:
        [(_, status)] = await bot.send(f"/imagine {PROMPT} --draft --seed 42 --n 2")
        assert status.kind == "status", status.text
        assert "Draft: 4 steps with the fast LoRA `tiny-lcm` at 32x32; Enhance draws it in full." in status.text
        [(result_id, drafted)] = await bot.finish()
        draft = drafted.reply
        assert [(image.width, image.height, image.seed) for image in draft.images] == [(32, 32, 42), (32, 32, 43)]
        assert "draft (LoRA tiny-lcm)" in draft.text and "pick one with U1–U2, then Enhance" in draft.text
        assert labels(draft) == ["U1", "U2", "V1", "V2", "Reroll"]  # Enhance goes under one picture
        second = parameters(draft, 1)
        assert second.startswith(f"{PROMPT}\n") and "Steps: 4, Sampler: LCM, CFG scale: 1, Seed: 43, Size: 32x32" in second
        assert "Draft: LoRA tiny-lcm (" in second and "Lora hashes" not in second

        [(single_id, single)] = await bot.press(result_id, "U2")
        assert "Enhance" in labels(single)
        [(_, queued)] = await bot.press(single_id, "Enhance")
        assert queued.kind == "status" and "Enhancing picture 2 of draft job" in queued.text and "seed 43" in queued.text
        [(enhanced_id, enhanced)] = await bot.finish()
        full = enhanced.reply
        assert [(image.width, image.height, image.seed) for image in full.images] == [(64, 64, 43)]
        info = parameters(full)
        assert info.startswith(f"{PROMPT}\n") and "Steps: 6, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 43, Size: 64x64" in info
        assert f"Enhanced from: job {draft.job_id}" in info and "Draft:" not in info
        assert "Enhance" not in labels(full)  # a picture in full has no Enhance
        [(_, refused)] = await bot.press(enhanced_id, "Enhance")
        assert refused.kind == "error" and "no `Enhance` button" in refused.text

        # Enhance is /imagine with that picture's seed, pixel for pixel
        await bot.send(f"/imagine {PROMPT} --seed 43")
        [(_, plain)] = await bot.finish()
        assert np.array_equal(pixels(full), pixels(plain.reply))

        # The draft is the fast LoRA applied as a user's LoRA is (the same file uploaded, weight 1)...
        await bot.send("/lora upload", attachments=(Attachment("fast.safetensors", draft_lora.read_bytes()),))
        await bot.send(f"/imagine {PROMPT} --seed 42 --size 32x32 --steps 4 --cfg 1 --sampler lcm --lora fast:1")
        await bot.send(f"/imagine {PROMPT} --seed 42 --size 32x32 --steps 4 --cfg 1 --sampler lcm")
        [(_, with_lora), (_, without)] = await bot.finish()
        assert np.abs(pixels(draft) - pixels(with_lora.reply)).max() <= 2  # image 1 of a batch of 2 (rules.md)
        assert np.abs(pixels(draft) - pixels(without.reply)).mean() > 1  # ... and the LoRA counts

        # Reroll under a draft: another draft
        await bot.press(result_id, "Reroll")
        [(_, rerolled)] = await bot.finish()
        assert rerolled.reply.images[0].width == 32 and rerolled.reply.images[0].seed != 42
        assert "Draft: " in parameters(rerolled.reply)


async def test_without_a_fast_path_a_draft_is_fewer_steps_and_says_so(tmp_path: Path, models_dir: Path) -> None:
    async with running_bot(draft_settings(tmp_path, models_dir)) as bot:
        [(_, status)] = await bot.send(f"/imagine {PROMPT} --draft --seed 5 --no blurry")
        assert "Draft: 2 of 6 steps at 32x32 on `tiny` itself, because no fast path is set up for SD 1.x" in status.text
        assert "SDBOT_DRAFT" in status.text and "rougher than a distilled draft" in status.text
        [(result_id, drafted)] = await bot.finish()
        assert "Enhance" in labels(drafted.reply)  # one picture: Enhance right under it
        info = parameters(drafted.reply)
        assert "Steps: 2," in info and "Size: 32x32" in info and "Draft: fewer steps" in info
        assert "Negative prompt: blurry" in info  # fewer steps keep the guidance, so the negative prompt counts
        [(_, queued)] = await bot.press(result_id, "Enhance")
        assert queued.kind == "status"
        [(_, enhanced)] = await bot.finish()
        await bot.send(f"/imagine {PROMPT} --seed 5 --no blurry")
        [(_, plain)] = await bot.finish()
        assert np.array_equal(pixels(enhanced.reply), pixels(plain.reply))


async def test_a_fast_path_that_cant_serve_is_said_plainly(tmp_path: Path, models_dir: Path) -> None:
    pickled = tmp_path / "pickled.safetensors"
    pickled.write_bytes(b"\x80\x04\x95 not a safetensors file")
    for configured, why in (
        (str(tmp_path / "gone.safetensors"), "`gone.safetensors` can't be read"),
        (str(pickled), "the draft LoRA for SD 1.x can't be used"),
    ):
        async with running_bot(draft_settings(tmp_path / Path(configured).stem, models_dir, draft={"sd1": configured})) as bot:
            [(_, status)] = await bot.send(f"/imagine {PROMPT} --draft")
            assert status.kind == "status" and "Draft: 2 of 6 steps" in status.text and why in status.text, status.text


async def test_bad_input_is_answered_before_queueing(tmp_path: Path, models_dir: Path, draft_lora: Path) -> None:
    async with running_bot(draft_settings(tmp_path, models_dir, draft={"sd1": str(draft_lora)})) as bot:
        [(_, switch)] = await bot.send(f"/imagine {PROMPT} --draft maybe")
        assert switch.kind == "error" and "`--draft` is on or off" in switch.text
        [(_, empty)] = await bot.send("/imagine --draft")
        assert empty.kind == "error" and "Tell me what to draw" in empty.text
        photo = Attachment("photo.png", png((200, 30, 30)), "image/png")
        [(_, picture)] = await bot.send(f"/imagine {PROMPT} --draft", attachments=(photo,))
        assert picture.kind == "error" and "`--draft` draws from a prompt alone" in picture.text
        [(_, control)] = await bot.send(f"/control canny {PROMPT} --draft", attachments=(photo,))
        assert control.kind == "error" and "draft" in control.text
        assert await queued_jobs(bot) == 0

        # Enhance is only under drafts, and checks the presser's rights to the draft's LoRAs
        await bot.send("/lora upload", attachments=(Attachment("mine.safetensors", draft_lora.read_bytes()),))
        await bot.send(f"/imagine {PROMPT} --lora mine:0.5")
        await bot.send(f"/imagine {PROMPT} --lora mine:0.5 --draft")
        [(plain_id, plain), (draft_id, _)] = await bot.finish()
        assert "Enhance" not in labels(plain.reply)
        [(_, not_there)] = await bot.press(plain_id, "enhance:1")
        assert not_there.kind == "error"
        [(_, not_his)] = await bot.press(draft_id, "Enhance", user="bob")
        assert not_his.kind == "error" and "`mine`" in not_his.text and "can't use" in not_his.text
        assert await queued_jobs(bot) == 2


async def test_a_model_draft_draws_with_the_distilled_model(tmp_path: Path, models_dir: Path) -> None:
    settings = tiny_settings(
        tmp_path,
        models_dir,
        "tiny",
        default_steps=6,
        min_side=32,
        # the same tiny FLUX.1 twice: one stands for the distilled model
        models={"tiny-flux": ModelEntry(source="tiny-flux"), "tiny-schnell": ModelEntry(source="tiny-flux", name="tiny-schnell")},
        draft={"flux": "tiny-schnell"},
    )
    async with running_bot(settings) as bot:
        [(_, status)] = await bot.send(f"/imagine {PROMPT} --draft --seed 9 --model tiny-flux")
        assert "Draft: 4 steps of `tiny-schnell` at 32x32; Enhance draws it with `tiny-flux` in full." in status.text, status.text
        [(result_id, drafted)] = await bot.finish()
        info = parameters(drafted.reply)
        assert "Model: tiny-schnell" in info and "Draft: model tiny-schnell" in info and "Size: 32x32" in info
        await bot.press(result_id, "Enhance")
        [(_, enhanced)] = await bot.finish()
        await bot.send(f"/imagine {PROMPT} --seed 9 --model tiny-flux")
        [(_, plain)] = await bot.finish()
        assert "Model: tiny-flux" in parameters(enhanced.reply)
        assert np.array_equal(pixels(enhanced.reply), pixels(plain.reply))


def test_enhance_in_the_console_after_a_restart(tmp_path: Path, models_dir: Path, draft_lora: Path) -> None:
    """The console shows Enhance under a draft's picture, and a new process still acts on it (the
    button names the message, which names the job and the picture)."""
    from tests.conftest import bot_env
    from tests.support.console_process import ConsoleProcess

    env = bot_env(tmp_path / "data", models_dir, SDBOT_MIN_SIDE="32", SDBOT_DEFAULT_STEPS="6", SDBOT_DRAFT=f"sd1={draft_lora}")
    first = ConsoleProcess(env, tmp_path / "bot.log")
    first.send(text=f"/imagine {PROMPT} --draft --seed 7")
    drafted = first.message("result", reply_to="u1")
    assert "Enhance" in [action["label"] for action in drafted["actions"]]
    assert Image.open(drafted["images"][0]).size == (32, 32)
    assert first.finish() == 0

    again = ConsoleProcess(env, tmp_path / "bot.log")
    again.send(press={"message": drafted["id"], "action": "Enhance"})
    enhanced = again.message("result", reply_to="u1")
    info = Image.open(enhanced["images"][0]).text["parameters"]
    assert info.startswith(f"{PROMPT}\n") and "Seed: 7, Size: 64x64" in info and "Enhanced from: job 1" in info
    assert again.finish() == 0


def test_the_setting_takes_each_family_its_own_kind_of_fast_path() -> None:
    assert Settings(_env_file=None, draft="sd1=/m/lcm.safetensors,flux=schnell").draft == {"sd1": "/m/lcm.safetensors", "flux": "schnell"}
    for bad, words in (
        ("sd1=/m/lcm.ckpt", "pickles can run code"),
        ("flux=/m/schnell.safetensors", "not a file"),
        ("wan=x", "not a family with a fast path"),
        ("nope=x", "not a family with a fast path"),
    ):
        with pytest.raises(ValueError, match=words):
            Settings(_env_file=None, draft=bad)


def test_each_fast_path_is_one_its_family_can_draw() -> None:
    from commands.explore.draft import half_size
    from generation.models.families import FAMILIES
    from generation.models.samplers import find_sampler

    for found in FAMILIES:
        path = found.draft
        if path is None:
            continue
        if found.flow_matching:
            assert path.sampler in found.samplers, found.id
        else:
            assert find_sampler(path.sampler) is not None, found.id
        assert path.steps >= found.min_steps and found.supports("pictures"), found.id
    assert half_size(1024, 768, 16, 64) == (512, 384)
    assert half_size(1000, 1000, 16, 64) == (496, 496)  # the family's multiples
    assert half_size(64, 64, 8, 64) == (64, 64)  # never under the smallest side, nor over the side
