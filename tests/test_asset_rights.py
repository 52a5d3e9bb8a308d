"""A job made from another person's job uses only the files the presser may use.

Alice's LoRA is private. Every way Bob can make a job out of one of hers — the buttons under her
pictures and clips, a reply, "Imagine this" under `/describe` — is refused while her picture
needs that LoRA; once she shares it, the same presses are queued. The check sits where every job
is queued (`commands.jobs.submit`), so a path added later cannot miss it."""

from __future__ import annotations

from commands.frame.types import Attachment
from tests.test_assets_service import kohya_bytes, upload  # noqa: F401 - kohya_bytes is a fixture
from tests.test_service import Bot

PROMPT = "<lora:secret:0.8> a red fox --seed 11 --steps 2 --size 64x64"
REFUSED = "`secret`"


async def refused(bot: Bot, message_id: str, label: str) -> str:
    [(_, reply)] = await bot.press(message_id, label, user="bob")
    assert reply.kind == "error", (label, reply.text)
    return reply.text


async def test_nobody_else_can_use_a_private_lora_through_another_persons_clip(bot: Bot, kohya_bytes: bytes) -> None:  # noqa: F811
    assert "private" in (await upload(bot, kohya_bytes, "secret.safetensors")).text
    [(_, own)] = await bot.send(f"/imagine {PROMPT}", user="bob")
    assert own.kind == "error" and "don't know a LoRA named `secret`" in own.text

    [(_, queued)] = await bot.send("/animate <lora:secret:0.8> a fox --frames 8 --steps 2 --seed 3")
    assert queued.kind == "status", queued.text
    [(clip_id, clip)] = await bot.finish()
    assert clip.reply.video is not None
    for label in ("Reroll", "Longer", "Upscale 2x", "Remix"):
        assert REFUSED in await refused(bot, clip_id, label), label
    [(_, restyle)] = await bot.send("a fox made of paper", user="bob", reply_to=clip_id)
    assert restyle.kind == "error" and REFUSED in restyle.text, restyle.text

    [(_, shared)] = await bot.send("/lora share secret")
    assert "everyone" in shared.text
    [(_, allowed)] = await bot.press(clip_id, "Reroll", user="bob")
    assert allowed.kind == "status", allowed.text  # the same press, once the file is his to use


async def test_nobody_else_can_use_a_private_lora_through_another_persons_picture(bot: Bot, kohya_bytes: bytes) -> None:  # noqa: F811
    await upload(bot, kohya_bytes, "secret.safetensors")
    await bot.send(f"/imagine {PROMPT} --n 2")
    [(grid_id, grid)] = await bot.finish()
    for label in ("V1", "Reroll"):
        assert REFUSED in await refused(bot, grid_id, label), label

    [(single_id, single)] = await bot.press(grid_id, "U1")  # showing one picture queues nothing: anyone may
    assert single.kind == "single", single.text
    for label in ("Vary (Subtle)", "Zoom Out 2x", "⬅"):  # (an Upscale 2x by lanczos draws nothing: no LoRA)
        assert REFUSED in await refused(bot, single_id, label), label
    [(_, remix)] = await bot.send("a blue fox", user="bob", reply_to=single_id)
    assert remix.kind == "error" and REFUSED in remix.text, remix.text

    # Alice's own edit of her picture: its Reroll repeats the edit with her spec as it is.
    await bot.press(single_id, "Vary (Subtle)")
    [(edit_id, edit)] = await bot.finish()
    assert edit.reply.kind == "result", edit.reply.text
    assert REFUSED in await refused(bot, edit_id, "Reroll")

    # "Imagine this" under /describe of her picture repeats her job exactly.
    picture = Attachment("fox.png", single.images[0].path.read_bytes(), "image/png")
    [(answer_id, answer)] = await bot.send("/describe", user="bob", attachments=(picture,))
    assert [a.label for a in answer.actions] == ["Imagine this"], answer.text
    assert REFUSED in await refused(bot, answer_id, "Imagine this")

    [(_, mine)] = await bot.press(edit_id, "Reroll")  # the owner herself still may
    assert mine.kind == "status", mine.text
