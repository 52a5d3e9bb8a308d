"""Admins add and remove models in chat, without a restart: a diffusers folder, a single-file
checkpoint with a local config, a cached Hub id. Checked in the command layer with a real worker
and SQLite file; a second core on the same database plays another process (a bot or a worker on
another machine), which must see each change at its next request or job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config.models import ModelEntry, ModelRegistry
from generation.models.files import ModelSourceError, inspect_model_source
from generation.models.tiny import TINY_VERSION
from tests.test_asset_files import raw_file
from tests.test_service import Bot, make_bot, pixels

DRAW = "a red fox in the snow --seed 5 --steps 2 --size 64x64"


@pytest.fixture
def tiny_folder(models_dir: Path) -> Path:
    return models_dir / TINY_VERSION


@pytest.fixture(scope="module")
def single_file(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's weights as one original-layout (LDM) checkpoint, as Civitai ships them."""
    from diffusers import StableDiffusionPipeline

    from tests.support.ldm_checkpoint import save_ldm_checkpoint

    path = tmp_path_factory.mktemp("checkpoint") / "civitai-tiny.safetensors"
    save_ldm_checkpoint(StableDiffusionPipeline.from_pretrained(models_dir / TINY_VERSION), path)
    return path


def parameters(reply) -> str:  # type: ignore[no-untyped-def]
    with Image.open(reply.images[0].path) as image:
        return image.text["parameters"]


async def say(bot: Bot, text: str, user: str = "alice"):  # type: ignore[no-untyped-def]
    [(_, reply)] = await bot.send(text, user=user)
    return reply


async def test_an_admin_adds_and_removes_models_and_other_processes_follow(
    bot: Bot, settings, tiny_folder: Path, single_file: Path
) -> None:  # type: ignore[no-untyped-def]
    settings.admin_ids = ["test:alice"]
    settings.model_sync_seconds = 0  # reread at every request (default: at most every 2 s)
    other = await make_bot(settings)  # another process on the same database, started before the change
    try:
        refused = await say(bot, f"/model add second {tiny_folder}", user="bob")
        assert refused.kind == "error" and "Only admins" in refused.text
        added = await say(bot, f"/model add second {tiny_folder} --description a copy of tiny")
        assert added.kind == "text" and "Added the model `second`" in added.text and "64px" in added.text, added.text
        added_file = await say(bot, f"/model add civitai {single_file} --config {tiny_folder}")
        assert "Added the model `civitai`" in added_file.text, added_file.text

        await bot.send(f"/imagine {DRAW} --model second", user="bob")
        await bot.send(f"/imagine {DRAW} --model civitai", user="bob")
        await bot.send(f"/imagine {DRAW}", user="bob")
        while await other.worker.run_once():  # a worker elsewhere draws them: it learns of the models per job
            pass
        [(_, folder), (_, from_file), (_, default)] = await bot.finish()
        assert "Model: second" in parameters(folder.reply) and "Model: civitai" in parameters(from_file.reply)
        assert np.array_equal(pixels(folder.reply), pixels(default.reply))  # the same weights, loaded from the folder
        assert np.abs(pixels(from_file.reply) - pixels(default.reply)).max() <= 2  # and converted from the file

        listing = await say(other, "/models", user="bob")  # the other process's chat, at its next request
        # Both are tiny's weights: described by their dimensions; civitai's LDM keys name its layout.
        dimensions = "(32-wide text features, a 32-wide text encoder, UNet 32–64 channels), 64px native"
        # with what their files take on disk (what they need in memory at that precision)
        assert f"• second — a custom model {dimensions}, 16 MB of weights: a copy of tiny" in listing.text, listing.text
        assert f"• civitai — SD 1.x layout at a non-standard size {dimensions}, 16 MB of weights" in listing.text
        assert "added in chat" not in listing.text
        assert "(added in chat)" in (await say(bot, "/models")).text  # admins see which they may remove

        assert (await say(bot, "/model second", user="carol")).kind != "error"  # a user's default...
        removed = await say(bot, "/model remove second")
        assert removed.kind == "text" and "Removed the model `second`" in removed.text
        gone = await say(other, f"/imagine {DRAW} --model second", user="bob")
        assert gone.kind == "error" and "Unknown model `second`" in gone.text
        stale = await say(other, f"/imagine {DRAW}", user="carol")  # ...that was removed is named, not hidden
        assert stale.kind == "error" and "Unknown model `second`" in stale.text and "/settings" in stale.text
        assert "second" not in (await say(other, "/models")).text

        restarted = await make_bot(settings)  # added models live in the database, not in memory
        try:
            assert restarted.core.ctx.registry.get("civitai") is not None
            assert restarted.core.ctx.registry.get("second") is None
        finally:
            restarted.worker.executor.shutdown()
            await restarted.core.db.close()
    finally:
        other.worker.executor.shutdown()
        await other.core.db.close()


async def test_removing_a_model_that_queued_jobs_use(bot: Bot, settings, tiny_folder: Path) -> None:  # type: ignore[no-untyped-def]
    settings.admin_ids = ["test:alice"]
    await say(bot, f"/model add second {tiny_folder}")
    queued = await say(bot, f"/imagine {DRAW} --model second", user="bob")
    assert queued.kind == "status"
    held = await say(bot, "/model remove second")
    assert held.kind == "error" and "1 queued or running job(s)" in held.text and "--force" in held.text
    forced = await say(bot, "/model remove second --force")
    assert "Removed" in forced.text and "1 job(s)" in forced.text
    [(_, failed)] = await bot.finish()
    assert failed.reply.kind == "failure" and "removed" in failed.reply.text, failed.reply.text


async def test_what_admins_may_not_add_or_remove(bot: Bot, settings, tiny_folder: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.admin_ids = ["test:alice"]
    marker = tmp_path / "pwned"
    pickle_file = tmp_path / "model.ckpt"
    pickle_file.write_bytes(b"\x80\x04not really")
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(b"\x80\x04" + b"\0" * 64)
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(raw_file({"lora_unet_down.lora_down.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4))
    not_pipeline = tmp_path / "folder"
    not_pipeline.mkdir()
    flux = tmp_path / "flux"  # a FLUX.1 folder without its transformer's weights
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    wan = tmp_path / "wan"  # a kind of model not on the family layer (Wan's VACE; Wan itself is)
    wan.mkdir()
    (wan / "model_index.json").write_text(json.dumps({"_class_name": "WanVACEPipeline"}))
    pickled_weights = tmp_path / "pickled"
    shutil.copytree(tiny_folder, pickled_weights)
    for weights in (pickled_weights / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    cases = {
        f"/model add tiny {tiny_folder}": "already a model named `tiny`",
        f"/model add add {tiny_folder}": "a word of the /model command",
        f"/model add ../x {tiny_folder}": "can't be a model name",
        "/model add second": "/model add NAME SOURCE",
        "/model add second /no/such/folder": "There is no folder",
        f"/model add second {not_pipeline}": "no readable model_index.json",
        f"/model add second {flux}": "no transformer weights",
        f"/model add second {wan}": "model (WanVACEPipeline); sdbot runs SD 1.x, SD 2.x, SDXL, SD 3.5, FLUX.1, Chroma",
        f"/model add second {pickled_weights}": "only pickle weights",
        f"/model add second {pickle_file} --config {tiny_folder}": "pickle",
        f"/model add second {renamed} --config {tiny_folder}": "pickle renamed",
        f"/model add second {lora} --config {tiny_folder}": "/lora upload",
        f"/model add second {tiny_folder} --size 63": "--size 63",
        f"/model add second {tiny_folder} --config {tiny_folder}": "only for a single .safetensors",
        f"/model add second {tiny_folder} --arch sd4": "use sd1, sd2, sdxl, sd3, flux, chroma",
        f"/model add second {tiny_folder} --vae nope": "--vae nope",
        f"/model add second {tiny_folder} --frobnicate": "--frobnicate",
        "/model add second not/cached": "HF_HUB_OFFLINE",  # the tests run offline
        "/model remove tiny": "from the bot's settings",
        "/model remove nothing": "no added model named `nothing`",
        "/model remove": "Which model?",
    }
    for command, words in cases.items():
        reply = await say(bot, command)
        assert reply.kind == "error" and words in reply.text, (command, reply.text)
    assert not marker.exists()
    assert bot.core.ctx.registry.names() == ["tiny"]
    assert "added in chat" not in (await say(bot, "/models")).text


async def test_a_single_file_needs_its_configs_offline(bot: Bot, settings, single_file: Path) -> None:  # type: ignore[no-untyped-def]
    settings.admin_ids = ["test:alice"]
    reply = await say(bot, f"/model add civitai {single_file}")
    assert reply.kind == "error" and "--config FOLDER" in reply.text and "HF_HUB_OFFLINE" in reply.text


def test_a_cached_hub_model_is_read_from_the_cache(tmp_path: Path, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    snapshot = tmp_path / "models--someone--tiny-sd" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_folder, snapshot)
    (tmp_path / "models--someone--tiny-sd" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-sd" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    facts = inspect_model_source("someone/tiny-sd")
    assert facts.size == 64 and "cache" in facts.notes[0]
    with pytest.raises(ModelSourceError, match="HF_HUB_OFFLINE"):
        inspect_model_source("someone/not-cached")


def test_architecture_and_size_come_from_the_files(tmp_path: Path) -> None:
    def folder(name: str, class_name: str, width: int, sample: int) -> Path:
        path = tmp_path / name
        (path / "unet").mkdir(parents=True)
        (path / "vae").mkdir()
        (path / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
        (path / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": width, "sample_size": sample}))
        (path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
        (path / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [128, 256, 512, 512]}))
        return path

    assert inspect_model_source(str(folder("v15", "StableDiffusionPipeline", 768, 64))).architecture == "sd1"
    sd2 = inspect_model_source(str(folder("v21", "StableDiffusionPipeline", 1024, 96)))
    assert (sd2.architecture, sd2.size) == ("sd2", 768)
    xl = inspect_model_source(str(folder("xl", "StableDiffusionXLPipeline", 2048, 128)))
    assert (xl.architecture, xl.size) == ("sdxl", 1024)

    def checkpoint(name: str, key: str) -> Path:
        path = tmp_path / f"{name}.safetensors"
        tensors = {
            "model.diffusion_model.out.2.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            key: {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        }
        path.write_bytes(raw_file(tensors, b"\0" * 8))
        return path

    xl_file = checkpoint("xl", "conditioner.embedders.1.model.ln_final.weight")
    assert inspect_model_source(str(xl_file), str(tmp_path / "xl")).architecture == "sdxl"
    with pytest.raises(ModelSourceError, match="an SDXL model but the --config"):
        inspect_model_source(str(xl_file), str(tmp_path / "v15"))
    sd2_file = checkpoint("v2", "cond_stage_model.model.ln_final.weight")
    assert inspect_model_source(str(sd2_file), str(tmp_path / "v21")).architecture == "sd2"


def test_the_worker_unloads_a_removed_or_replaced_model(models_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    import torch

    from generation.errors import ModelLoadError
    from generation.models.loader import ModelCache

    registry = ModelRegistry([ModelEntry(source="tiny")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=2)
    registry.set_added([ModelEntry(source=str(tiny_folder), name="second")])
    first = cache.get("second")
    assert cache.get("second") is first  # kept while unchanged
    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    registry.set_added([ModelEntry(source=str(copy), name="second")])  # removed and added again elsewhere
    replaced = cache.get("second")
    assert replaced is not first and replaced.entry.source == str(copy)
    registry.set_added([])
    with pytest.raises(ModelLoadError, match="removed"):
        cache.get("second")
    assert cache.current is None and "second" not in cache._loaded


def test_the_settings_win_a_name_clash() -> None:
    registry = ModelRegistry([ModelEntry(source="tiny")])
    registry.set_added([ModelEntry(source="/x/other", name="TINY"), ModelEntry(source="/x/y", name="y")])
    assert registry.get("tiny").source == "tiny" and registry.names() == ["tiny", "y"]
    assert registry.is_configured("Tiny") and not registry.is_added("tiny") and registry.is_added("Y")
