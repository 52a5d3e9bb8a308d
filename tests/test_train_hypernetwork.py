"""Issue 37's training line: `/train hypernetwork foxnet` on four pictures runs in the console
(status, a sample, the result with its last sample and A1111's `.pt`), the `.pt` is in A1111's
layout (the fields and keys `Hypernetwork.save` writes; its modules load into a transcription of
A1111's `HypernetworkModule`, and a picture drawn with it equals A1111's forward within 2/255),
it uploads again through `/hypernetwork upload`, and a picture with it differs from one without
(an untrained hypernetwork, A1111's N(0, 0.01) init, changes the tiny model's picture by 1/255: the
threshold fails when training does nothing). A run that yields and resumes from its checkpoint
learns exactly what a straight run learns; other families are refused before anything is queued."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from commands.frame.types import Attachment
from config import ModelEntry
from generation.engine import Engine
from generation.errors import TrainingYielded
from generation.training import trainer
from generation.training.spec import TrainImage, TrainingSpec
from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.support.train_pictures import picture_bytes, picture_files
from tests.test_adapters import engine  # noqa: F401 - a fixture: the tiny model's engine
from tests.test_hypernetworks import DEFAULT, a1111_modules, reference
from tests.test_service import make_bot

PROMPT = "a red fox in the snow --seed 11 --steps 4 --cfg 7 --sampler euler --size 64x64"
WIDTHS = [32, 64]  # the tiny model's text width (32) and its UNet's widths (32, 64)


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield  # tiny models: one intra-op thread is faster on a busy 2-core machine


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def a1111_layers(saved: dict) -> dict[int, tuple[torch.nn.Module, torch.nn.Module]]:  # type: ignore[type-arg]
    """The `.pt`'s modules loaded as A1111 loads them: `HypernetworkModule(size, sd[0])`, whose
    `linear` Sequential takes the state dict's `linear.` entries, strictly."""
    layers = {}
    for width in WIDTHS:
        pair = []
        for state in saved[width]:
            module = a1111_modules(width, DEFAULT, torch.Generator().manual_seed(0))
            module.load_state_dict({key.removeprefix("linear."): value for key, value in state.items()}, strict=True)
            pair.append(module)
        layers[width] = (pair[0], pair[1])
    return layers


def test_train_a_hypernetwork_in_the_console_upload_it_again_and_draw_with_it(tmp_path: Path, models_dir: Path) -> None:
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir, SDBOT_DEFAULT_STEPS="4"), tmp_path / "bot.log")
    pictures = picture_files(tmp_path / "pictures")
    asked = bot.say(text="/train hypernetwork foxnet --steps 6 --seed 3 --lr 1e-2 --sample-every 3", attachments=pictures)
    status = bot.message("status", reply_to=asked)
    assert "hypernetwork `foxnet` from 4 pictures" in status["text"] and "layers 1, 2, 1, linear" in status["text"], status["text"]
    result = bot.message("result", timeout=300, reply_to=asked)
    assert "trained the hypernetwork `foxnet`" in result["text"] and "<hypernet:foxnet:1>" in result["text"], result["text"]
    assert result["images"], "the last sample comes with the result"
    [document] = result["documents"]
    assert document["filename"] == "foxnet.pt"
    samples = bot.messages("sample")
    assert [sample["text"].split(":")[0] for sample in samples] == [f"🧪 Job {result['job']}, step 3/6"] and samples[0]["images"]

    uploaded = bot.message("text", reply_to=bot.say(text="/hypernetwork upload again", attachments=[document["path"]]))
    assert "Saved the hypernetwork `again`" in uploaded["text"] and "widths 32, 64" in uploaded["text"], uploaded["text"]
    drawn = bot.message("result", reply_to=bot.say(text=f"/imagine <hypernet:again:1> {PROMPT}"))
    plain = bot.message("result", reply_to=bot.say(text=f"/imagine {PROMPT}"))
    listed = bot.message("text", reply_to=bot.say(text="/hypernetworks"))
    assert "foxnet" in listed["text"] and "again" in listed["text"]
    assert bot.finish() == 0

    saved = torch.load(document["path"], map_location="cpu", weights_only=True)  # as A1111 reads it (no code)
    assert [key for key in saved if isinstance(key, int)] == WIDTHS
    assert saved["layer_structure"] == [1, 2, 1] and saved["activation_func"] == "linear" and saved["weight_initialization"] == "Normal"
    assert not saved["is_layer_norm"] and not saved["use_dropout"] and not saved["activate_output"]
    assert saved["dropout_structure"] == [0, 0, 0] and saved["step"] == 6 and saved["name"] == "foxnet"
    assert list(saved[32][0]) == ["linear.0.weight", "linear.0.bias", "linear.1.weight", "linear.1.bias"]
    assert saved[64][1]["linear.0.weight"].shape == (128, 64) and saved[64][1]["linear.1.weight"].shape == (64, 128)
    assert all(state["linear.1.bias"].abs().max() > 0 for pair in (saved[32], saved[64]) for state in pair), "trained: biases start at 0"
    with_it = pixels(drawn["images"][0])
    assert np.abs(with_it - reference(models_dir, a1111_layers(saved), 1.0)).max() <= 2, "A1111's forward with the .pt"
    assert np.abs(with_it - pixels(plain["images"][0])).max() > 10, "the trained hypernetwork changes the picture"


def run_spec(engine: Engine) -> TrainingSpec:  # noqa: F811
    images = tuple(
        TrainImage(blob=engine.blobs.put(data, "png"), width=64, height=64, filename=f"{i}.png") for i, data in enumerate(picture_bytes(2))
    )
    return TrainingSpec(
        method="hypernetwork",
        name="foxnet",
        model="tiny",
        images=images,
        trigger="foxnet",
        steps=3,
        lr=1e-2,
        resolution=64,
        seed=3,
        sample_every=0,
        sample_prompt="foxnet",
        sample_steps=2,
        checkpoint_every=100,
    )


def test_a_yielded_run_resumes_from_its_checkpoint_to_the_same_weights(engine: Engine) -> None:  # noqa: F811
    spec, captions = run_spec(engine), ["foxnet"] * 2
    _, straight = trainer.train(engine, spec, trainer.Hooks(), captions=captions, export=lambda learned: b"")
    saved: list[tuple[int, bytes]] = []
    hooks = trainer.Hooks(should_yield=lambda: True, checkpoint=lambda step, data, losses: saved.append((step, data)))
    with pytest.raises(TrainingYielded):
        trainer.train(engine, spec, hooks, captions=captions, export=lambda learned: b"")
    [(step, state)] = saved
    assert step == 1
    _, resumed = trainer.train(
        engine, spec, trainer.Hooks(), captions=captions, resume=trainer.Resume(step, state), export=lambda learned: b""
    )
    assert sorted(straight.hypernetwork) == sorted(resumed.hypernetwork) and len(straight.hypernetwork) == 16
    assert all(torch.equal(straight.hypernetwork[key], resumed.hypernetwork[key]) for key in straight.hypernetwork)
    assert straight.losses == resumed.losses
    pipe = engine.models.get("tiny").txt2img
    assert not any(module._forward_pre_hooks for module in pipe.unet.modules()), "no hook outlives the run"


async def test_other_families_and_lora_options_are_refused_before_queueing(settings) -> None:  # type: ignore[no-untyped-def]
    models = {"tiny": ModelEntry(source="tiny"), "xl": ModelEntry(source="stabilityai/stable-diffusion-xl-base-1.0", architecture="sdxl")}
    bot = await make_bot(settings.model_copy(update={"models": models}))
    try:
        attachments = tuple(Attachment(f"fox{i}.png", data) for i, data in enumerate(picture_bytes(4)))
        [(_, refused)] = await bot.send("/train hypernetwork foxnet --model xl", attachments=attachments)
        assert refused.kind == "error" and "A hypernetwork can't be trained on `xl`, which is SDXL" in refused.text, refused.text
        assert "SD 1.x or 2.x" in refused.text
        [(_, options)] = await bot.send("/train hypernetwork foxnet --rank 4 --vectors 2", attachments=attachments)
        assert options.kind == "error" and "`--rank` is a LoRA's" in options.text and "`--vectors` is an embedding's" in options.text
        [(_, listed)] = await bot.send("/train status")
        assert "no training runs yet" in listed.text
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()
