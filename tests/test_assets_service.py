"""Uploaded LoRAs and embeddings through the command layer: every bad file is refused with a
reason, stored nowhere and listed nowhere, and nothing it carries runs; privacy between two
users; sharing, renaming, deleting; the architecture check at upload and at use."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save

from commands.frame.types import Attachment
from generation.models.tiny import build_tiny_pipeline
from tests.test_adapters import make_lora, to_kohya
from tests.test_asset_files import Payload, raw_file, sdxl_lora  # noqa: F401 - sdxl_lora is a fixture
from tests.test_service import Bot, pixels

PROMPT = "a red fox in the snow --seed 11 --steps 2 --size 64x64"


@pytest.fixture(scope="module")
def kohya_bytes() -> bytes:
    return save(to_kohya(make_lora(build_tiny_pipeline(), 1)))


def blobs_of(bot: Bot) -> set[str]:
    root = bot.core.ctx.settings.data_dir / "blobs"
    return {path.name for path in root.rglob("*") if path.is_file()}


async def upload(bot: Bot, data: bytes, name: str = "fox.safetensors", command: str = "/lora upload", user: str = "alice"):  # type: ignore[no-untyped-def]
    [(_, reply)] = await bot.send(command, user=user, attachments=(Attachment(name, data),))
    return reply


async def test_bad_files_are_refused_stored_nowhere_and_never_run(bot: Bot, tmp_path, sdxl_lora: bytes) -> None:  # noqa: F811
    marker = tmp_path / "pwned"
    unet = build_tiny_pipeline().unet.state_dict()
    bad = {
        "a pickle named .ckpt": (pickle.dumps(Payload(marker)), "fox.ckpt", "pickle"),
        "a pickle named .safetensors": (pickle.dumps(Payload(marker)), "fox.safetensors", "pickle"),
        "a header that claims 2**40 bytes": (raw_file({}, length=2**40), "fox.safetensors", "header"),
        "offsets past the end": (
            raw_file({"x.lora_down.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}, b"\0" * 8),
            "fox.safetensors",
            "end",
        ),
        "a full UNet posing as a LoRA": (save({k: v.contiguous() for k, v in unet.items()}), "fox.safetensors", "checkpoint"),
        "a LoRA shaped for SDXL": (sdxl_lora, "fox.safetensors", "SDXL"),
    }
    before = blobs_of(bot)
    for what, (data, filename, words) in bad.items():
        reply = await upload(bot, data, filename)
        assert reply.kind == "error" and words in reply.text, (what, reply.text)
    assert not marker.exists()
    assert blobs_of(bot) == before  # nothing stored
    [(_, listing)] = await bot.send("/loras")
    assert "none yet" in listing.text
    [(_, nothing)] = await bot.send("/lora upload fox")
    assert nothing.kind == "error" and "Attach" in nothing.text
    [(_, bare_command)] = await bot.send("/lora")  # no verb: the list
    assert "Your LoRAs" in bare_command.text
    [(_, unknown_verb)] = await bot.send("/embedding frobnicate x")
    assert unknown_verb.kind == "error" and "/embedding upload" in unknown_verb.text


async def test_privacy_sharing_and_management(bot: Bot, kohya_bytes: bytes) -> None:
    saved = await upload(bot, kohya_bytes, "My Fox.safetensors")
    assert "`my_fox`" in saved.text and "private" in saved.text
    again = await upload(bot, kohya_bytes, "My Fox.safetensors")
    assert again.kind == "error" and "already have" in again.text

    await bot.send(f"/imagine <lora:my_fox:0.8> {PROMPT}")
    [(_, alices)] = await bot.finish()
    assert 'Lora hashes: "my_fox: ' in Image.open(alices.reply.images[0].path).text["parameters"]

    [(_, hidden)] = await bot.send(f"/imagine <lora:my_fox:0.8> {PROMPT}", user="bob")
    assert hidden.kind == "error" and "don't know a LoRA named `my_fox`" in hidden.text
    [(_, hidden_info)] = await bot.send("/lora info my_fox", user="bob")
    assert hidden_info.kind == "error"
    [(_, bob_list)] = await bot.send("/loras", user="bob")
    assert "my_fox" not in bob_list.text

    [(_, shared)] = await bot.send("/lora share my_fox")
    assert "everyone" in shared.text
    await bot.send(f"/imagine {PROMPT} --lora my_fox:0.8", user="bob")
    [(_, bobs)] = await bot.finish()
    assert np.array_equal(pixels(bobs.reply), pixels(alices.reply))  # --lora NAME:W means <lora:NAME:W>
    [(_, not_his)] = await bot.send("/lora delete my_fox", user="bob")
    assert not_his.kind == "error"

    [(_, renamed)] = await bot.send("/lora rename my_fox fox")
    assert "`fox`" in renamed.text
    [(_, unshared)] = await bot.send("/lora unshare fox")
    assert "private" in unshared.text
    [(_, gone)] = await bot.send(f"/imagine <lora:fox> {PROMPT}", user="bob")
    assert gone.kind == "error"
    [(_, deleted)] = await bot.send("/lora delete fox")
    assert "Deleted" in deleted.text
    [(_, listing)] = await bot.send("/loras")
    assert "none yet" in listing.text


async def test_embeddings_upload_and_use(bot: Bot) -> None:
    vectors = torch.randn(2, 32) * 5  # the tiny model's text width
    reply = await upload(bot, save({"emb_params": vectors}), "shiny.safetensors", command="/embedding upload")
    assert reply.kind == "text" and "`shiny`" in reply.text and "a1111-ti" in reply.text
    as_lora = await upload(bot, save({"emb_params": vectors}), "shiny.safetensors")
    assert as_lora.kind == "error"
    await bot.send(f"/imagine a shiny fox {PROMPT[len('a red fox in the snow') :]}")
    await bot.send(f"/imagine a red fox {PROMPT[len('a red fox in the snow') :]}")
    [(_, with_it), (_, without)] = await bot.finish()
    assert "TI hashes" in Image.open(with_it.reply.images[0].path).text["parameters"]
    assert np.abs(pixels(with_it.reply) - pixels(without.reply)).mean() > 1


async def test_models_and_choosing_one(bot: Bot) -> None:
    [(_, listing)] = await bot.send("/models")
    assert (
        "• tiny — SD 1.x layout at a non-standard size (32-wide text features, a 32-wide text encoder, "
        "UNet 32–64 channels), 64px native (default, yours)"
    ) in listing.text
    [(_, chosen)] = await bot.send("/model tiny")
    assert "Saved" in chosen.text and "tiny" in chosen.text
    [(_, unknown)] = await bot.send("/model nope")
    assert unknown.kind == "error" and "Models: tiny" in unknown.text


# --- issue 20: checked against the model's layers, at upload and at use -----------------------------

CROSS_K = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
TE_Q = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"


def kohya_file(modules: dict[str, tuple[int, int]], metadata: dict[str, str] | None = None) -> bytes:
    """A kohya LoRA changing each module (in, out) at rank 4."""
    tensors = {}
    for key, (inputs, outputs) in modules.items():
        tensors |= {
            f"{key}.lora_down.weight": torch.randn(4, inputs),
            f"{key}.lora_up.weight": torch.randn(outputs, 4),
            f"{key}.alpha": torch.tensor(4.0),
        }
    return save(tensors, metadata=metadata)


async def test_on_a_model_of_non_standard_size_uploads_are_checked_against_its_layers(bot: Bot, kohya_bytes: bytes) -> None:
    """The tiny model is SD 1.x's layout at 32-wide text features, an architecture no file names.
    A LoRA shaped for SDXL (which says so in its metadata) or for SD 2.x is refused with the layer
    and both shapes; one that fits is accepted, also when its metadata claims otherwise."""
    before = blobs_of(bot)
    sdxl = kohya_file({CROSS_K: (2048, 640)}, {"ss_base_model_version": "sdxl_base_v1-0"})
    refused = await upload(bot, sdxl, "xl_style.safetensors")
    assert refused.kind == "error", refused.text
    assert refused.text.startswith(
        "I didn't store `xl_style.safetensors`: it doesn't fit your model `tiny`; it is made for SDXL (2048-wide text "
        "features); `tiny` uses 32-wide text features (layer `down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k`: "
        "2048 inputs → 640 outputs in the file, 32 inputs → 32 outputs in the model)."
    ), refused.text
    sd2 = kohya_file({CROSS_K: (1024, 640), TE_Q: (1024, 1024)})
    refused_sd2 = await upload(bot, sd2, "v2_style.safetensors")
    # the first layer in the file's order (safetensors sorts keys: lora_te_ before lora_unet_) is named
    assert (
        refused_sd2.kind == "error"
        and (
            "it is made for SD 2.x (1024-wide text features); `tiny`'s text encoder is 32 wide (layer "
            "`text_model.encoder.layers.0.self_attn.q_proj`: 1024 inputs → 1024 outputs in the file, 32 inputs → 32 outputs"
        )
        in refused_sd2.text
    ), refused_sd2.text
    assert blobs_of(bot) == before

    saved = await upload(bot, kohya_bytes, "fox.safetensors")
    assert saved.kind == "text" and "for a model with 32-wide text features" in saved.text, saved.text
    assert "It fits your model `tiny` (SD 1.x layout at a non-standard size (32-wide text features" in saved.text
    claims_xl = kohya_file({CROSS_K: (32, 32)}, {"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"})
    odd = await upload(bot, claims_xl, "odd.safetensors")
    assert (
        odd.kind == "text"
        and (
            "Its metadata says it was made for SDXL (`modelspec.architecture: stable-diffusion-xl-v1-base/lora`), but its layers fit `tiny`"
        )
        in odd.text
    ), odd.text
    [(_, listing)] = await bot.send("/loras")
    assert "• fox — kohya · for a model with 32-wide text features" in listing.text and "doesn't fit" not in listing.text


@pytest.fixture
async def two_model_bot(settings, tmp_path):  # type: ignore[no-untyped-def]
    """The bot with a second model of other dimensions: the tiny SDXL (64-wide text features, two encoders)."""
    from config import ModelEntry
    from tests.support.tiny_xl import build_tiny_xl
    from tests.test_service import make_bot

    build_tiny_xl().save_pretrained(tmp_path / "tiny-xl")
    made = await make_bot(settings.model_copy(update={"models": {"xl": ModelEntry(source=str(tmp_path / "tiny-xl"), size=64)}}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_a_stored_file_that_does_not_fit_the_model_is_skipped_with_one_line(two_model_bot: Bot, kohya_bytes: bytes) -> None:
    bot = two_model_bot
    await upload(bot, kohya_bytes, "fox.safetensors")
    await upload(bot, save({"emb_params": torch.randn(2, 32) * 5}), "shiny.safetensors", command="/embedding upload")
    [(_, queued)] = await bot.send(f"/imagine <lora:fox:1> a shiny fox {PROMPT[len('a red fox in the snow') :]} --model xl")
    assert queued.kind == "status", queued.text
    assert (
        "Skipped the LoRA `fox`, which doesn't fit the model `xl`: it is made for a model with 32-wide text features: "
        "it changes the layer `down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k`, which `xl` does not "
        "have."
    ) in queued.text, queued.text
    assert (
        "Skipped the embedding `shiny`, which doesn't fit the model `xl`: it is made for a model with 32-wide "
        "vectors: it holds vectors for 1 text encoder, and `xl` has 2 (32 and 32 wide)."
    ) in queued.text
    [(_, done)] = await bot.finish()
    assert done.reply.kind == "result" and "Skipped the LoRA `fox`" in done.reply.text and "Traceback" not in done.reply.text
    parameters = Image.open(done.reply.images[0].path).text["parameters"]
    assert "Lora hashes" not in parameters and "TI hashes" not in parameters and "Model: xl" in parameters

    # A person whose default model changes keeps their files; the list says which don't fit it.
    await bot.send("/model xl")
    [(_, listing)] = await bot.send("/loras")
    assert "• fox — kohya · for a model with 32-wide text features" in listing.text
    assert "(doesn't fit your model `xl`)" in listing.text
    [(_, on_tiny)] = await bot.send(f"/imagine <lora:fox:1> {PROMPT} --model tiny")
    assert "Skipped" not in on_tiny.text
    [(_, with_it)] = await bot.finish()
    assert 'Lora hashes: "fox: ' in Image.open(with_it.reply.images[0].path).text["parameters"]
