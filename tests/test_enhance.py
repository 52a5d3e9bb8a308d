"""generation.text_models.enhance: /enhance's prompts from a causal LM (a tiny random GPT-2, tests/support/tiny_text_models.py).

What each test proves:
- test_seeds_reproduce_candidates: the same seed gives the same candidates; candidate i is exactly
  the single candidate made with seed + i; another seed gives other candidates.
- test_sampling_leaves_global_rng_alone: torch's global RNG neither changes results nor is changed.
- test_candidates_are_clean_lines_starting_with_the_words: messy input whitespace is collapsed and
  each candidate starts with the user's words, is one line, with no stray spaces or broken bytes.
- test_count_is_respected / test_count_out_of_range.
- test_empty_and_duplicate_candidates_are_dropped: equal-to-input and repeated candidates go; none
  left is an EngineUserError that suggests another seed.
- test_should_stop_cancels_mid_candidate: JobCancelled, within a few tokens of being asked.
- test_line_break_ends_a_candidate: the stopping criterion stops at the first line break.
- test_compose_*: the cleaning rules one by one.
- test_long_prompt_is_refused, test_load_errors_name_the_setting, test_tools_*.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from config import Settings
from generation.errors import EngineUserError, JobCancelled, ModelLoadError
from generation.text_models.enhance import PromptEnhancer, _Watch, compose, load_enhancer
from generation.tools import Tools
from tests.support.tiny_text_models import build_tiny_gpt2

CPU = torch.device("cpu")
WORDS = "a castle on a hill"
TOKENS = 16  # enough to see sampling differ, few enough to stay fast


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2")


@pytest.fixture(scope="module")
def enhancer(gpt2_folder: Path) -> PromptEnhancer:
    return load_enhancer(str(gpt2_folder), CPU, torch.float16)  # float16 asked: a CPU loads float32


def test_seeds_reproduce_candidates(enhancer: PromptEnhancer) -> None:
    assert enhancer.model.dtype == torch.float32
    first = enhancer.generate(WORDS, count=3, seed=41, max_new_tokens=TOKENS)
    assert len(first) == 3
    assert enhancer.generate(WORDS, count=3, seed=41, max_new_tokens=TOKENS) == first
    for index, text in enumerate(first):
        assert enhancer.generate(WORDS, count=1, seed=41 + index, max_new_tokens=TOKENS) == [text]
    other = enhancer.generate(WORDS, count=3, seed=9000, max_new_tokens=TOKENS)
    assert not set(other) & set(first)


def test_sampling_leaves_global_rng_alone(enhancer: PromptEnhancer) -> None:
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    one = enhancer.generate(WORDS, count=2, seed=5, max_new_tokens=TOKENS)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(12345)
    assert enhancer.generate(WORDS, count=2, seed=5, max_new_tokens=TOKENS) == one


def test_candidates_are_clean_lines_starting_with_the_words(enhancer: PromptEnhancer) -> None:
    for seed in range(4):
        for text in enhancer.generate("  a castle \n on\ta hill ", count=2, seed=seed * 10, max_new_tokens=TOKENS):
            assert text.startswith(WORDS)
            assert len(text) > len(WORDS)
            assert text == text.strip() and "  " not in text
            assert text.isprintable() and "\ufffd" not in text


def test_count_is_respected(enhancer: PromptEnhancer) -> None:
    for count in (1, 2, 4):
        assert len(enhancer.generate(WORDS, count=count, seed=3, max_new_tokens=8)) == count


def test_count_out_of_range(enhancer: PromptEnhancer) -> None:
    for count in (0, 5):
        with pytest.raises(ValueError):
            enhancer.generate(WORDS, count=count, seed=1)


def test_empty_and_duplicate_candidates_are_dropped(enhancer: PromptEnhancer, monkeypatch: pytest.MonkeyPatch) -> None:
    made = {10: WORDS, 11: "a castle on a hill, misty", 12: "A castle on a hill,  misty,", 13: "a castle on a hill, gold"}
    monkeypatch.setattr(enhancer, "candidate", lambda prompt, *, seed, **_: made[seed])
    assert enhancer.generate(WORDS, count=4, seed=10) == ["a castle on a hill, misty", "a castle on a hill, gold"]
    monkeypatch.setattr(enhancer, "candidate", lambda prompt, *, seed, **_: WORDS + " ,")
    with pytest.raises(EngineUserError, match="--seed"):
        enhancer.generate(WORDS, count=2, seed=10)


def test_should_stop_cancels_mid_candidate(enhancer: PromptEnhancer) -> None:
    calls = 0

    def stop_on_third() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    with pytest.raises(JobCancelled):  # one candidate: only a check between tokens can stop it
        enhancer.generate(WORDS, count=1, seed=1, max_new_tokens=60, should_stop=stop_on_third)
    assert calls == 3  # asked before the candidate, then once per token: stopped at the second token
    with pytest.raises(JobCancelled):
        enhancer.generate(WORDS, count=1, seed=1, should_stop=lambda: True)


def test_line_break_ends_a_candidate(enhancer: PromptEnhancer) -> None:
    tokenizer = enhancer.tokenizer
    start = len(tokenizer(WORDS)["input_ids"])
    watch = _Watch(tokenizer, start, lambda: False)
    for tail, done in ((", misty, gold", False), (", misty\ngold", True)):
        ids = torch.tensor([tokenizer(WORDS + tail)["input_ids"]])
        assert watch(ids, torch.zeros(1, 1)).tolist() == [done]


def test_compose_keeps_the_words_and_one_line() -> None:
    assert compose("  a  cat ", ", fluffy,\nsecond prompt") == "a cat, fluffy"
    assert compose("a cat", "s on a roof") == "a cats on a roof"  # the model continued the last word
    assert compose("a cat", " on a roof") == "a cat on a roof"
    assert compose("a cat", "\u200b\t, soft  light ,") == "a cat, soft light"


def test_compose_strips_junk() -> None:
    assert compose("a cat", ", see https://x.io/a and www.site.com, artstation.com") == "a cat, see and"
    assert compose("a cat", ", <lora:thing:0.8> glowing <i>eyes</i>") == "a cat, glowing eyes"
    assert compose("a cat", ", oil painting --ar 16:9 --v 5 --stylize, moody") == "a cat, oil painting, moody"
    assert compose("a cat", ", gold \ufffd\ufffd leaf, ,, red") == "a cat, gold leaf, red"
    assert compose("a cat", ", (highly detailed, [sharp") == "a cat, (highly detailed, [sharp])"
    assert compose("a cat", ", (soft:1.2), ((gold) leaf") == "a cat, (soft:1.2), ((gold) leaf)"
    assert compose("a cat,", ", fluffy") == "a cat, fluffy"


def test_compose_returns_the_words_when_nothing_is_left() -> None:
    for rest in ("", "  ", "\nnext prompt", ", ,", " -- ", " https://x.com", " ()", " \ufffd"):
        assert compose("a cat", rest) == "a cat"


def test_long_prompt_is_refused(enhancer: PromptEnhancer) -> None:
    with pytest.raises(EngineUserError, match="too long"):
        enhancer.generate(" ".join(["castle"] * 120), count=1, seed=1, max_new_tokens=20)
    with pytest.raises(EngineUserError, match="a few words"):
        enhancer.generate(" \n ", count=1, seed=1)


def test_load_errors_name_the_setting(tmp_path: Path, gpt2_folder: Path) -> None:
    not_model = tmp_path / "empty"
    not_model.mkdir()
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (pickled / name).write_bytes((gpt2_folder / name).read_bytes())
    # Not a real pickle: loading it would fail loudly, so passing proves it was never opened.
    (pickled / "pytorch_model.bin").write_bytes(b"never unpickle me")
    bin_file = pickled / "pytorch_model.bin"
    cases = {
        tmp_path / "missing": "does not exist",
        not_model: "no config.json",
        bin_file: "pickle",
        pickled: "safetensors",
        "nobody/not-cached-model": "HF_HUB_OFFLINE",
    }
    for source, reason in cases.items():
        with pytest.raises(ModelLoadError) as caught:
            load_enhancer(str(source), CPU, torch.float32)
        assert "SDBOT_ENHANCER" in caught.value.message and reason in caught.value.message, caught.value.message


def test_tools_without_an_enhancer_names_the_setting() -> None:
    with pytest.raises(EngineUserError, match="SDBOT_ENHANCER"):
        Tools(device=CPU, dtype=torch.float32).enhancer()


def test_tools_load_the_configured_enhancer_once(gpt2_folder: Path) -> None:
    settings = Settings(_env_file=None, enhancer=str(gpt2_folder), enhance_max_new_tokens=20)
    tools = Tools.from_settings(settings, CPU, torch.float32)
    assert isinstance(tools.enhancer(), PromptEnhancer) and tools.enhancer() is tools.enhancer()
    assert tools.enhance_max_new_tokens == 20
    with pytest.raises(ValueError):
        Settings(_env_file=None, enhance_max_new_tokens=1000)
