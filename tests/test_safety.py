"""The safety policy, graded by place, through the command layer with the real worker: a tiny
StableDiffusionSafetyChecker whose score the test sets (its image projection zeroed, so every
picture's score is 0.5 - 10 × its concept threshold), loaded through the real path; each place's
policy (allow, spoiler, blur, block; age-restricted channels; thresholds) on delivery, recorded on
the outputs, the originals withheld where the picture was blurred or blocked, /admin review; a
place's refused terms, models and negative prompt; bad input to /place. Also: the image
classifier kind against bare transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from commands.frame.types import Reply, Request
from generation.imaging.safety import build_tiny_safety_checker, load_safety_classifier
from storage.tables import JobOutput
from tests.test_service import Bot, make_bot

ADMIN = "telegram:1"


def controlled_checker(folder: Path, score: float) -> Path:
    """A tiny safety checker that scores every picture `score` (its projection is zero, so every
    cosine is 0 and the margin is minus the concept threshold)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    source = build_tiny_safety_checker(folder / "source")
    model = StableDiffusionSafetyChecker.from_pretrained(source)
    with torch.no_grad():
        model.visual_projection.weight.zero_()
        model.concept_embeds_weights.fill_(-(score - 0.5) / 10)
    target = folder / f"score-{score}"
    model.save_pretrained(target)
    CLIPImageProcessor.from_pretrained(source).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def flagging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return controlled_checker(tmp_path_factory.mktemp("safety"), 0.9)


@pytest.fixture
async def safe_bot(settings, flagging: Path):  # type: ignore[no-untyped-def]
    made = await make_bot(settings.model_copy(update={"safety_classifier": str(flagging), "admin_ids": [ADMIN]}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def ask(bot: Bot, text: str, *, chat: str = "group", user: str = "2", **fields) -> list[Reply]:  # type: ignore[no-untyped-def]
    request = Request(
        platform="telegram", user_id=user, chat_id=chat, user_name=f"u{user}", message_id=f"m-{text[:30]}", text=text, **fields
    )
    replies = await bot.service.handle(request)
    for n, reply in enumerate(replies):
        await bot.service.sent("telegram", chat, f"{request.message_id}-{n}", reply)
    return replies


async def drawn(bot: Bot, text: str = "/imagine a fox --steps 1 --seed 4", **kwargs) -> Reply:  # type: ignore[no-untyped-def]
    [status] = await ask(bot, text, **kwargs)
    assert status.kind == "status", status.text
    while await bot.worker.run_once():
        pass
    [item] = await bot.service.pending("telegram")
    await bot.service.delivered("telegram", item, f"out-{item.reply.job_id}")  # the message id: out-JOB
    return item.reply


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


async def actions_recorded(bot: Bot) -> list[tuple[float | None, str | None]]:
    async with bot.core.db.transaction() as session:
        from sqlalchemy import select

        rows = (await session.execute(select(JobOutput).order_by(JobOutput.job_id, JobOutput.index))).scalars()
        return [(round(row.safety_score, 3) if row.safety_score is not None else None, row.safety_action) for row in rows]


async def test_each_policy_on_a_flagged_picture_and_the_decision_recorded(safe_bot: Bot) -> None:
    bot = safe_bot
    spoilered = await drawn(bot)  # the default outside age-restricted channels: spoiler
    assert spoilered.spoiler and "Behind a spoiler" in spoilered.text and "score 0.90" in spoilered.text
    original = spoilered.images[0].path

    assert (await ask(bot, "/place --nsfw blur"))[0].kind == "error"  # only the chat's admins
    assert "Saved." in (await ask(bot, "/place --nsfw blur", user="1"))[0].text
    blurred = await drawn(bot)
    assert not blurred.spoiler and blurred.originals is False and "Blurred by this chat's safety policy" in blurred.text
    assert blurred.images[0].path != original and rgb(blurred.images[0].path).shape == rgb(original).shape
    assert np.abs(rgb(blurred.images[0].path) - rgb(original)).max() > 0
    assert rgb(blurred.images[0].path).std() < rgb(original).std()  # smoothed
    assert "parameters" not in Image.open(blurred.images[0].path).text  # nothing of the original travels with it
    originals = await bot.service.originals("telegram", "group", f"out-{blurred.job_id}")
    assert originals.kind == "error" and "safety policy" in originals.text

    await ask(bot, "/place --nsfw block", user="1")
    blocked = await drawn(bot, "/imagine a fox --steps 1 --seed 4 --n 2")
    assert "Withheld by this chat's safety policy" in blocked.text and "pictures 1, 2" in blocked.text
    assert "/admin review" in blocked.text and len(blocked.images) == 2
    assert all((rgb(image.path) == 128).all() for image in blocked.images)  # grey placeholders

    await ask(bot, "/place --nsfw allow", user="1")
    allowed = await drawn(bot)
    assert not allowed.spoiler and "safety" not in allowed.text and (rgb(allowed.images[0].path) == rgb(original)).all()
    await ask(bot, "/place --nsfw spoiler --threshold 0.95", user="1")  # the score is under this place's threshold
    assert not (await drawn(bot)).spoiler
    await ask(bot, "/place reset", user="1")
    in_nsfw_channel = await drawn(bot, chat="after-dark", age_restricted=True)
    assert not in_nsfw_channel.spoiler  # age-restricted channels allow by default

    assert await actions_recorded(bot) == [
        (0.9, "spoiler"),
        (0.9, "blur"),
        (0.9, "block"),
        (0.9, "block"),
        (0.9, "allow"),
        (0.9, "allow"),
        (0.9, "allow"),
    ]
    review = (await ask(bot, "/admin review", user="1"))[0].text
    assert "job 3 picture 1 · block · score 0.90" in review and "job 2 picture 1 · blur" in review
    assert "private chat" in (await ask(bot, "/admin review 3", user="1"))[0].text
    [originals] = await ask(bot, "/admin review 3", user="1", chat="1", private=True)
    assert originals.kind == "files" and len(originals.images) == 2 and "1: 0.90 (block)" in originals.text
    assert "I don't understand" in (await ask(bot, "/admin review soon", user="1"))[0].text


async def test_a_place_refuses_terms_limits_models_and_adds_its_negative(safe_bot: Bot) -> None:
    bot = safe_bot
    saved = await ask(bot, '/place --terms "gore, blood moon" --models tiny --negative "lowres, watermark"', user="1")
    assert "refused prompt terms: gore, blood moon" in saved[0].text and "models: tiny" in saved[0].text
    refused = (await ask(bot, "/imagine a fox, Gore everywhere --steps 1"))[0]
    assert refused.kind == "error" and "doesn't allow `gore`" in refused.text
    assert (await ask(bot, "/imagine a gored ox --steps 1"))[0].kind == "status"  # whole words only
    assert (await ask(bot, "/imagine under a blood moon --steps 1"))[0].kind == "error"
    queued = (await ask(bot, "/imagine a fox --steps 1", user="3"))[0]
    assert "Negative prompt from this chat's settings: lowres, watermark" in queued.text
    own_negative = (await ask(bot, "/imagine a fox --steps 1 --no blur", user="4"))[0]
    assert "chat's settings" not in own_negative.text
    elsewhere = (await ask(bot, "/imagine a fox, gore --steps 1", chat="other", user="5"))[0]
    assert elsewhere.kind == "status"  # another chat, other rules

    for bad, says in [
        ("/place --nsfw maybe", "`--nsfw` is one of allow, spoiler, blur, block"),
        ("/place --threshold 2", "`--threshold 2` is out of bounds: use 0 to 1"),
        ("/place --models nope", "There is no model named `nope`"),
        ("/place hello", "I don't understand `hello`"),
        ("/place reset colour", "I can't reset `colour`"),
        ("/place --volume 3", "volume"),
    ]:
        reply = (await ask(bot, bad, user="1"))[0]
        assert reply.kind == "error" and says in reply.text, (bad, reply.text)


async def test_without_a_classifier_nothing_is_scored_and_the_policy_cannot_be_set(bot: Bot) -> None:
    request = Request(platform="telegram", user_id="9", chat_id="g", text="/place --nsfw block", place_admin=True)
    [reply] = await bot.service.handle(request)
    assert reply.kind == "error" and "No safety classifier is configured" in reply.text
    [shown] = await bot.service.handle(Request(platform="telegram", user_id="9", chat_id="g", text="/place"))
    assert "no classifier is configured" in shown.text


def test_an_image_classifier_scores_the_unsafe_labels_as_bare_transformers(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    classifier = load_safety_classifier(str(tmp_path / "vit"), ["NSFW"], tmp_path, torch.device("cpu"))
    pictures = [
        Image.new("RGB", (48, 40), (200, 30, 30)),
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8)),
    ]
    bare = ViTForImageClassification.from_pretrained(tmp_path / "vit").eval()
    inputs = ViTImageProcessor.from_pretrained(tmp_path / "vit")(images=pictures, return_tensors="pt")
    with torch.no_grad():
        expected = bare(**inputs).logits.softmax(-1)[:, 1].tolist()
    assert classifier.score(pictures) == pytest.approx(expected, abs=1e-6)
    assert expected[0] != pytest.approx(expected[1], abs=1e-4)  # the score depends on the picture
    with pytest.raises(Exception, match="none of them is in SDBOT_SAFETY_LABELS"):
        load_safety_classifier(str(tmp_path / "vit"), ["porn"], tmp_path, torch.device("cpu"))
