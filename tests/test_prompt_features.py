"""Styles, wildcards and regions through the command layer, with a real worker on the tiny
model: what each does to the job, what it writes into the parameters, and every refusal."""

from __future__ import annotations

import numpy as np
from PIL import Image

from config.styles import apply_styles, load_builtin_styles
from generation.prompts.wildcards import expand
from tests.test_service import Bot, make_bot, pixels


def parameters(reply, index: int = 0) -> str:  # type: ignore[no-untyped-def]
    return Image.open(reply.images[index].path).text["parameters"]


# --- styles ---------------------------------------------------------------------------------------


async def test_styles_list_and_apply_in_order(bot: Bot) -> None:
    [(_, listing)] = await bot.send("/styles")
    builtin = load_builtin_styles()
    for name in ("photographic", "cinematic", "anime", "oil-painting", "line-art"):
        assert name in builtin, name
        assert f"• {name}: {builtin[name].prompt}" in listing.text

    [(_, queued)] = await bot.send("/imagine a red fox --style anime --style cinematic --steps 2 --no blurry")
    assert queued.kind == "status" and "style anime, cinematic" in queued.text
    [(_, result)] = await bot.finish()
    prompt, negative = apply_styles([builtin["anime"], builtin["cinematic"]], "a red fox", "blurry")
    assert "{prompt}" not in prompt and prompt.count("a red fox") == 1
    text = parameters(result.reply)
    assert text.startswith(f"{prompt}\nNegative prompt: {negative}\n")
    assert 'Styles: "anime, cinematic"' in text  # quoted: the value has a comma

    # the other order nests the other way, so the text differs
    other, _ = apply_styles([builtin["cinematic"], builtin["anime"]], "a red fox", "blurry")
    assert other != prompt


async def test_own_styles_are_private_and_global_ones_need_an_admin(settings) -> None:  # type: ignore[no-untyped-def]
    bot = await make_bot(settings.model_copy(update={"admin_ids": ["test:root"]}))
    try:
        [(_, saved)] = await bot.send("/style save Noir {prompt}, film noir, high contrast --no color, vivid")
        assert saved.kind == "text" and "`noir`" in saved.text
        [(_, listing)] = await bot.send("/styles")
        assert "Yours:\n• noir: {prompt}, film noir, high contrast\n   negative: color, vivid" in listing.text

        await bot.send("/imagine a cat --style noir --steps 2")
        [(_, result)] = await bot.finish()
        assert parameters(result.reply).startswith("a cat, film noir, high contrast\nNegative prompt: color, vivid\n")

        [(_, refused)] = await bot.send("/imagine a cat --style noir", user="bob")
        assert refused.kind == "error" and "`noir`" in refused.text and "/styles" in refused.text

        for bad, words in [
            ("/style save plain {prompt} and {prompt}", "only once"),
            ("/style save x {prompt}", "name"),
            ("/style save noir2 {prompt} --global", "Only admins"),
        ]:
            [(_, reply)] = await bot.send(bad)
            assert reply.kind == "error" and words in reply.text, (bad, reply.text)

        [(_, admin)] = await bot.send("/style save house {prompt}, in our house style --global", user="root")
        assert "for everyone" in admin.text
        [(_, queued)] = await bot.send("/imagine a dog --style house --steps 2", user="bob")
        assert queued.kind == "status"

        [(_, deleted)] = await bot.send("/style delete noir")
        assert "Deleted" in deleted.text
        [(_, gone)] = await bot.send("/imagine a cat --style noir")
        assert gone.kind == "error"
        [(_, builtin)] = await bot.send("/style delete cinematic")
        assert builtin.kind == "error" and "Built-in" in builtin.text
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()


# --- wildcards ------------------------------------------------------------------------------------


async def test_wildcards_pick_per_image_from_its_seed(bot: Bot) -> None:
    [(_, saved)] = await bot.send("/wildcard add colors red | green | blue | gold")
    assert "4 lines" in saved.text
    [(_, shown)] = await bot.send("/wildcard show colors")
    assert "• red\n• green\n• blue\n• gold" in shown.text

    template = "a __colors__ {cat|dog|owl}"
    await bot.send(f"/imagine {template} --n 3 --seed 11 --steps 2 --no {{blur|noise}}")
    [(result_id, result)] = await bot.finish()
    files = {"colors": ("red", "green", "blue", "gold")}
    picks = []
    for index in range(3):
        expected = expand(template, 11 + index, files)
        negative = expand("{blur|noise}", 11 + index, files, salt="negative")
        text = parameters(result.reply, index)
        assert text.startswith(f"{expected}\nNegative prompt: {negative}\n"), text
        assert f"Template: {template}" in text and "Negative Template: {blur|noise}" in text
        picks.append(expected)

    # Image 3 alone (seed 13) is the same picture: the picks come from the image's own seed.
    await bot.send(f"/imagine {template} --seed 13 --steps 2 --no {{blur|noise}}")
    [(_, alone)] = await bot.finish()
    assert np.array_equal(pixels(alone.reply), pixels(result.reply, 2))

    # Vary of image 2 keeps image 2's picks (not new ones from a new seed).
    [(single_id, _)] = await bot.press(result_id, "U2")
    await bot.press(single_id, "Vary (Subtle)")
    [(_, varied)] = await bot.finish()
    assert parameters(varied.reply).startswith(picks[1] + "\n")


async def test_wildcard_folder_privacy_and_refusals(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "wild"
    (folder / "animals").mkdir(parents=True)
    (folder / "animals" / "birds.txt").write_text("# birds\nowl\n\nheron\n")
    bot = await make_bot(settings.model_copy(update={"wildcards_dir": folder, "max_wildcard_lines": 3}))
    try:
        [(_, listing)] = await bot.send("/wildcard list")
        assert "`__animals/birds__` (2)" in listing.text
        await bot.send("/imagine a __animals/birds__ at dawn --steps 2 --seed 1")
        [(_, result)] = await bot.finish()
        assert parameters(result.reply).split("\n")[0] in ("a owl at dawn", "a heron at dawn")

        await bot.send("/wildcard add moods calm | wild")
        [(_, refused)] = await bot.send("/imagine a __moods__ sea", user="bob")  # alice's list is hers
        assert refused.kind == "error" and "`__moods__`" in refused.text and await bot.finish() == []
        for bad, words in [
            ("/imagine a {red|blue fox", "brace"),
            ("/wildcard add big a | b | c | d", "limit is 3"),
            ("/wildcard add ../etc a | b", "name"),
            ("/wildcard delete nothing", "no list"),
        ]:
            [(_, reply)] = await bot.send(bad)
            assert reply.kind == "error" and words in reply.text.lower(), (bad, reply.text)
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()


# --- regions --------------------------------------------------------------------------------------


async def test_regions_are_checked_recorded_and_dropped_where_the_frame_changes(bot: Bot) -> None:
    for bad, words in [
        ("/imagine a castle BREAK a dragon BREAK a moat --regions cols:1,2", "3"),
        ("/imagine a castle --base-ratio 0.3", "--regions"),
        ("/imagine a castle BREAK a dragon --regions diagonal", "--regions diagonal"),
    ]:
        [(_, reply)] = await bot.send(bad)
        assert reply.kind == "error" and words in reply.text, (bad, reply.text)
    assert await bot.finish() == []

    prompt = "oil painting ADDCOMM a valley ADDBASE a castle BREAK a dragon"
    [(_, queued)] = await bot.send(f"/imagine {prompt} --regions cols --base-ratio 0.3 --steps 2")
    assert "regions cols (base 0.3)" in queued.text
    [(result_id, result)] = await bot.finish()
    text = parameters(result.reply)
    assert text.startswith(prompt + "\n") and "Regions: cols" in text and "Base ratio: 0.3" in text

    await bot.press(result_id, "Zoom Out 2x")  # a new frame: one prompt, no regions
    [(_, zoomed)] = await bot.finish()
    text = parameters(zoomed.reply)
    assert "Regions" not in text and "BREAK" not in text.split("\n")[0] and "ADDBASE" not in text


async def test_a_remix_of_a_regional_picture_may_leave_the_regions(bot: Bot) -> None:
    await bot.send("/imagine a castle BREAK a dragon --regions cols --steps 2")
    [(result_id, _)] = await bot.finish()
    [(_, refused)] = await bot.send("a knight --strength 0.5", reply_to=result_id)  # one part, two columns
    assert refused.kind == "error" and "--regions off" in refused.text
    [(_, queued)] = await bot.send("a knight --strength 0.5 --regions off", reply_to=result_id)
    assert queued.kind == "status"
    [(_, remix)] = await bot.finish()
    assert "Regions" not in parameters(remix.reply)


async def test_a_broken_styles_file_is_an_admins_problem_said_plainly(settings, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "styles.toml"
    broken.write_text('[styles.house]\nprompt = "no placeholder here, twice {prompt} {prompt}"\n')
    bot = await make_bot(settings.model_copy(update={"styles_file": broken}))
    try:
        assert "house" in caplog.text and "unavailable to users" in caplog.text  # said at start, before any use
        [(_, reply)] = await bot.send("/imagine a cat --style cinematic")
        assert reply.kind == "error" and "SDBOT_STYLES_FILE" in reply.text and str(tmp_path) not in reply.text
        assert "house" in caplog.text  # the admin reads what is wrong in the log
    finally:
        bot.worker.executor.shutdown()
        await bot.core.db.close()
