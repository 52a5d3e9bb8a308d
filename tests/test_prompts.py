"""A1111's prompt syntax: the parser's fragments and weights, the 75-token chunks with comma
backtrack, the weighted encoding token by token, clip skip, and `/imagine` with a weighted prompt
equal to bare diffusers given embeddings built by hand from the rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generation.models.tiny import ensure_tiny
from generation.prompts.encoder import CHUNK_LENGTH, chunk_prompt, encode_prompts
from generation.prompts.weights import parse_prompt_attention
from tests.support.tiny_xl import build_tiny_xl

# --- the parser: A1111's own doctests, and more ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.1 * 1.3 * 1.1),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.1**4),
                (".", 1.1),
            ],
        ),
        ("a (red : 1.3 ) fox", [("a ", 1.0), ("red ", 1.3), (" fox", 1.0)]),
        ("[[nested]] ((deep))", [("nested", 1 / 1.1 / 1.1), (" ", 1.0), ("deep", 1.1 * 1.1)]),
        ("[open", [("open", 1 / 1.1)]),
        ("a fox BREAK a cat", [("a fox", 1.0), ("BREAK", -1.0), ("a cat", 1.0)]),
        ("ratio 3:2 here", [("ratio 3:2 here", 1.0)]),  # a lone colon is text
        ("", [("", 1.0)]),
    ],
)
def test_parse_prompt_attention(text: str, expected: list[tuple[str, float]]) -> None:
    parsed = parse_prompt_attention(text)
    assert [t for t, _ in parsed] == [t for t, _ in expected]
    assert [w for _, w in parsed] == pytest.approx([w for _, w in expected])


# --- chunks ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(models_dir: Path):  # type: ignore[no-untyped-def]
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(ensure_tiny(models_dir))
    sd.set_progress_bar_config(disable=True)
    return sd


def ids(tokenizer, word: str) -> list[int]:  # type: ignore[no-untyped-def]
    return tokenizer(word, add_special_tokens=False)["input_ids"]


def test_chunks_of_75_with_comma_backtrack(tiny) -> None:  # type: ignore[no-untyped-def]
    tok = tiny.tokenizer
    fox, cat, comma = ids(tok, "fox")[0], ids(tok, "cat")[0], ids(tok, ",")[0]
    bos, eos = tok.bos_token_id, tok.eos_token_id
    # 70 foxes, a comma, 10 cats: the chunk fills at 75 with the comma 5 back, so the 4 cats in
    # the first chunk move to the second, whole.
    chunks = chunk_prompt(tok, " ".join(["fox"] * 70) + ", " + " ".join(["cat"] * 10))
    assert [len(c.tokens) for c in chunks] == [77, 77]
    assert chunks[0].tokens == [bos, *[fox] * 70, comma, *[eos] * 4, eos]
    assert chunks[1].tokens == [bos, *[cat] * 10, *[eos] * 65, eos]
    # the comma 30 tokens back is too far (the limit is 20): a plain cut at 75
    chunks = chunk_prompt(tok, " ".join(["fox"] * 45) + ", " + " ".join(["cat"] * 40))
    assert chunks[0].tokens[1:76] == [*[fox] * 45, comma, *[cat] * 29]
    assert chunks[1].tokens[1:12] == [cat] * 11
    # BREAK ends a chunk; weights ride along, 1 on the frame and the padding
    chunks = chunk_prompt(tok, "(fox:1.5) BREAK [cat]")
    assert len(chunks) == 2 and chunks[0].tokens[:3] == [bos, fox, eos] and chunks[1].tokens[:3] == [bos, cat, eos]
    assert chunks[0].weights[:3] == [1.0, 1.5, 1.0] and chunks[1].weights[1] == pytest.approx(1 / 1.1)
    assert all(len(c.weights) == CHUNK_LENGTH + 2 for c in chunks)


def test_plain_prompts_encode_exactly_as_diffusers(tiny) -> None:  # type: ignore[no-untyped-def]
    ours = encode_prompts(tiny, "a red fox in the snow", "blurry, text")
    theirs, their_negative = tiny.encode_prompt("a red fox in the snow", "cpu", 1, True, "blurry, text")
    assert torch.equal(ours.prompt_embeds, theirs) and torch.equal(ours.negative_prompt_embeds, their_negative)


def by_the_rules(tiny, fragments: list[tuple[str, float]], clip_skip: int = 1) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """One chunk built by hand from fragments: tokens with weights, BOS/EOS frame, encode, then
    z * w rescaled to the unweighted mean (A1111's "Original" emphasis)."""
    tok = tiny.tokenizer
    tokens, weights = [], []
    for text, weight in fragments:
        piece = ids(tok, text)
        tokens += piece
        weights += [weight] * len(piece)
    pad = 75 - len(tokens)
    tokens = [tok.bos_token_id, *tokens, *[tok.eos_token_id] * (pad + 1)]
    weights = [1.0, *weights, *[1.0] * (pad + 1)]
    with torch.no_grad():
        out = tiny.text_encoder(torch.tensor([tokens]), output_hidden_states=True)
        z = out[0] if clip_skip == 1 else tiny.text_encoder.text_model.final_layer_norm(out.hidden_states[-clip_skip])
    weighted = z * torch.tensor(weights).reshape(1, -1, 1)
    return weighted * (z.mean() / weighted.mean())


def test_weighted_prompt_token_by_token(tiny) -> None:  # type: ignore[no-untyped-def]
    fragments = [("a ", 1.0), ("red", 1.3), (" fox, ", 1.0), ("blurry", 1 / 1.1)]
    ours = encode_prompts(tiny, "a (red:1.3) fox, [blurry]", "")
    expected = by_the_rules(tiny, fragments)
    assert torch.allclose(ours.prompt_embeds, expected, atol=1e-5)
    plain = encode_prompts(tiny, "a red fox, blurry", "")
    assert (ours.prompt_embeds - plain.prompt_embeds).abs().max() > 1e-2  # the weights do something


def test_clip_skip(tiny) -> None:  # type: ignore[no-untyped-def]
    two = encode_prompts(tiny, "a red fox", "", clip_skip=2)
    assert torch.allclose(two.prompt_embeds, by_the_rules(tiny, [("a red fox", 1.0)], clip_skip=2), atol=1e-5)
    assert (two.prompt_embeds - encode_prompts(tiny, "a red fox", "").prompt_embeds).abs().max() > 1e-2


def test_long_prompts_and_negative_are_padded_to_the_same_chunks(tiny) -> None:  # type: ignore[no-untyped-def]
    long = ", ".join(["a red fox in the snow"] * 30)  # about 200 tokens
    conditioning = encode_prompts(tiny, long, "blurry")
    assert conditioning.prompt_embeds.shape[1] == 77 * 3 == conditioning.negative_prompt_embeds.shape[1]


# --- through the bot ------------------------------------------------------------------------------


def bare_with_embeddings(tiny, prompt_embeds: torch.Tensor, negative: torch.Tensor, seed: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    from diffusers import EulerDiscreteScheduler

    tiny.scheduler = EulerDiscreteScheduler.from_config(tiny.scheduler.config)
    image = tiny(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative,
        num_inference_steps=4,
        guidance_scale=7,
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    return np.asarray(image).astype(int)


async def test_imagine_with_weights_equals_bare_diffusers(bot, tiny) -> None:  # type: ignore[no-untyped-def]
    await bot.send("/imagine a (red:1.3) fox, [blurry] --seed 1 --steps 4 --sampler euler --size 64x64 --cfg 7")
    [(_, done)] = await bot.finish()
    ours = np.asarray(Image.open(done.reply.images[0].path).convert("RGB")).astype(int)
    embeds = by_the_rules(tiny, [("a ", 1.0), ("red", 1.3), (" fox, ", 1.0), ("blurry", 1 / 1.1)])
    negative = by_the_rules(tiny, [("", 1.0)])
    assert np.abs(ours - bare_with_embeddings(tiny, embeds, negative, seed=1)).max() <= 2
    plain = bare_with_embeddings(tiny, by_the_rules(tiny, [("a red fox, blurry", 1.0)]), negative, seed=1)
    assert np.abs(ours - plain).max() > 2  # and the weights changed the picture


async def test_a_200_token_prompt_uses_all_of_it(bot) -> None:  # type: ignore[no-untyped-def]
    head = ", ".join(["a red fox in the snow"] * 12)  # about 75 tokens
    for tail in ("", ", a blue whale in the sea" * 15):
        await bot.send(f"/imagine {head}{tail} --seed 3 --steps 2 --size 64x64")
    [(_, short), (_, long)] = await bot.finish()
    a, b = (np.asarray(Image.open(x.reply.images[0].path)).astype(int) for x in (short, long))
    assert np.abs(a - b).max() > 2  # tokens past 77 change the picture: they are not cut off


# --- SDXL: two encoders, the penultimate layer, the pooled output ------------------------------------


@pytest.fixture(scope="module")
def tiny_xl():  # type: ignore[no-untyped-def]
    """A tiny random SDXL pipeline with CLIP's real tokenizer (tests.support.tiny_xl)."""
    return build_tiny_xl()


def test_sdxl_plain_prompts_encode_exactly_as_diffusers(tiny_xl) -> None:  # type: ignore[no-untyped-def]
    ours = encode_prompts(tiny_xl, "a red fox in the snow", "blurry")
    theirs = tiny_xl.encode_prompt(
        "a red fox in the snow", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True, negative_prompt="blurry"
    )
    for mine, their in zip(
        (ours.prompt_embeds, ours.negative_prompt_embeds, ours.pooled_prompt_embeds, ours.negative_pooled_prompt_embeds),
        theirs,
        strict=True,
    ):
        assert mine is not None and torch.equal(mine, their)
    empty = encode_prompts(tiny_xl, "a fox", "")  # SDXL's empty negative is zeros, as diffusers makes it
    assert not empty.negative_prompt_embeds.any() and not empty.negative_pooled_prompt_embeds.any()  # type: ignore[union-attr]


def test_sdxl_weights_apply_to_both_encoders(tiny_xl) -> None:  # type: ignore[no-untyped-def]
    weighted = encode_prompts(tiny_xl, "a (red:1.5) fox", "").prompt_embeds
    plain = encode_prompts(tiny_xl, "a red fox", "").prompt_embeds
    assert weighted.shape == (1, 77, 64)
    red = 2  # BOS, "a", "red"
    for half in (slice(0, 32), slice(32, 64)):
        assert (weighted[0, red, half] - plain[0, red, half]).abs().max() > 1e-3
