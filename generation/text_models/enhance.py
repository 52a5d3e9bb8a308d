"""`/enhance`: a few words become detailed Stable Diffusion prompts, written by a text model.

The model is any causal LM that transformers loads (`AutoModelForCausalLM` + `AutoTokenizer`),
named by SDBOT_ENHANCER; the intended kind is a MagicPrompt-style GPT-2 fine-tuned on prompts
people used (e.g. Gustavosta/MagicPrompt-Stable-Diffusion). The user's words are the prefix, and
the model continues them.

Seeds: candidate i is sampled with seed + i, one candidate per `generate` call, so any candidate
can be made again alone, and the same seed gives the same candidates on every run (on the same
device and dtype; fp16 logits on a GPU round differently from fp32 ones on a CPU). Transformers
5.5's `generate` takes no `torch.Generator` and samples with the global RNG, which the engine's
other work and other threads share. So `generate` is asked for greedy decoding, and the last logits
processor (`_SeededSampler`) makes the draw itself: it applies transformers' own temperature, top-k
and top-p warpers and samples with a private CPU generator, leaving one token for greedy to pick.
The sampling maths is transformers'; only the random numbers are ours, and global state is never
touched (the same rule as the engine's noise: a CPU generator per image).

Cleaning a candidate (see `compose`): the continuation is cut at the first line break (MagicPrompt
models write one prompt per line and then start another), links, `<...>` tags and `--flags` are
removed (the last would be read as options of the bot's own commands), whitespace is collapsed to
one line, doubled or dangling separators are dropped and brackets the model opened are closed. The
user's words are kept as they were typed (whitespace collapsed), so every candidate starts with
them. A candidate that adds nothing to the user's words, or repeats an earlier candidate, is dropped
(no retry with another seed: that would break "candidate i is seed + i"), so fewer than `count`
may come back; if none is left, an EngineUserError asks for another seed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from generation.errors import EngineUserError, JobCancelled, ModelLoadError
from generation.models.hf_source import Source, explain, resolve

log = logging.getLogger(__name__)

ABOUT = Source(
    key="SDBOT_ENHANCER",
    what="text model",
    example="Gustavosta/MagicPrompt-Stable-Diffusion",
    model_class="AutoModelForCausalLM",
)
MAX_COUNT = 4

# Sampling, chosen for MagicPrompt-style models (a GPT-2 fine-tuned on ~80k real prompts):
# - top_k 12 / top_p 0.95: such a model knows a few dozen continuations well ("highly detailed",
#   "artstation", artist names); beyond its top dozen it drifts into rare words, links and
#   half-words, and top-p trims the tail further where it is sure.
# - temperature 0.9: a little sharper than the model, for fewer odd words, still varied per seed.
# - repetition_penalty 1.2: without it these models loop ("highly detailed, highly detailed, ...");
#   higher starts to suppress the commas that separate the tags.
TEMPERATURE = 0.9
TOP_K = 12
TOP_P = 0.95
REPETITION_PENALTY = 1.2

_LINK = re.compile(r"(?:https?://|www\.)\S*|\S+\.(?:com|net|org|io|co|ly|me|gg)\b\S*", re.IGNORECASE)
_TAG = re.compile(r"<[^>\n]*>?|>")
# Midjourney-style parameters ("--ar 16:9", "--v 5") and any other --flag with its numeric value.
_FLAG = re.compile(r"(?<!\S)--+[A-Za-z]\w*(?:\s+[\d.:/]+(?!\S))?")
_SEPARATORS = ",;:|-–—/(["
_CLOSERS = {"(": ")", "[": "]"}


class PromptEnhancer:
    """A loaded text model. Not thread-safe by design: the engine calls it from its one thread."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, source: str):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.source = source

    def generate(
        self,
        prompt: str,
        *,
        count: int,
        seed: int,
        max_new_tokens: int = 75,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[str]:
        """Up to `count` cleaned prompts starting with `prompt`; candidate i is sampled with seed + i.

        Empty candidates and duplicates are dropped (so the list may be shorter than `count`);
        raises EngineUserError if none is left, JobCancelled as soon as `should_stop()` is true.
        """
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"count must be 1..{MAX_COUNT}, not {count}")
        words = _one_line(prompt)
        seen = {_key(words)}
        candidates: list[str] = []
        for index in range(count):
            if should_stop():
                raise JobCancelled()
            text = self.candidate(words, seed=seed + index, max_new_tokens=max_new_tokens, should_stop=should_stop)
            if _key(text) in seen:
                log.info("enhance: seed %d gave nothing new; dropped", seed + index)
                continue
            seen.add(_key(text))
            candidates.append(text)
        if not candidates:
            raise EngineUserError(
                f"the text model added nothing to your words with seed {seed}"
                + (f"..{seed + count - 1}" if count > 1 else "")
                + ". Try another `--seed`, or a few more words."
            )
        return candidates

    def candidate(self, prompt: str, *, seed: int, max_new_tokens: int = 75, should_stop: Callable[[], bool] = lambda: False) -> str:
        """One cleaned candidate sampled with `seed` (the prompt alone if the model added nothing)."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        words = _one_line(prompt)
        if not words:
            raise EngineUserError("give me a few words to start from, e.g. `/enhance a castle on a hill`.")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, not {max_new_tokens}")
        encoded = self.tokenizer(words, return_tensors="pt")
        input_ids = encoded["input_ids"].to(self.device)
        start = input_ids.shape[1]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and start + max_new_tokens > limit:
            raise EngineUserError(
                f"that prompt is too long for the text model ({start} tokens; it reads at most "
                f"{limit - max_new_tokens} before writing {max_new_tokens}). Give it a few words."
            )
        eos = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.model.config.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=encoded["attention_mask"].to(self.device),
            do_sample=False,  # greedy over the one token `_SeededSampler` leaves: see the module docstring
            num_beams=1,
            max_new_tokens=max_new_tokens,
            repetition_penalty=REPETITION_PENALTY,  # applied before our processor (transformers appends custom ones)
            logits_processor=LogitsProcessorList([_SeededSampler(seed)]),
            stopping_criteria=StoppingCriteriaList([_Watch(self.tokenizer, start, should_stop)]),
            eos_token_id=eos,
            pad_token_id=pad,
        )
        # Decode prefix and whole sequence and take the difference, instead of decoding the new
        # tokens alone: SentencePiece-style tokenizers drop the leading space of a lone piece.
        prefix = self.tokenizer.decode(input_ids[0], skip_special_tokens=True)
        whole = self.tokenizer.decode(output[0], skip_special_tokens=True)
        if whole.startswith(prefix):
            rest = whole[len(prefix) :]
        else:
            rest = " " + self.tokenizer.decode(output[0, start:], skip_special_tokens=True)
        return compose(words, rest)


def compose(words: str, rest: str) -> str:
    """The user's `words` followed by the model's continuation `rest`, cleaned to one prompt line.

    Only `rest` is cleaned; `words` come back as typed (whitespace collapsed). Returns `words`
    alone when nothing usable is left of `rest`.
    """
    words = _one_line(words)
    rest = re.split(r"[\r\n\u2028\u2029]", rest, maxsplit=1)[0]
    # U+FFFD: a character whose bytes the model split across tokens and never finished.
    rest = "".join(char if char.isprintable() and char != "\ufffd" else " " for char in rest)
    joined = not rest[:1].isspace()  # "cat" + "s": the model continued the user's last word
    rest = _FLAG.sub(" ", _TAG.sub(" ", _LINK.sub(" ", rest)))
    rest = _one_line(rest)
    rest = re.sub(r"\s+([,;:.!?)\]])", r"\1", rest)  # "cat , dog" -> "cat, dog"
    rest = re.sub(r"([,;])(?:\s*[,;])+", r"\1", rest)  # ", ," -> ","
    rest = re.sub(r"\(\s*\)|\[\s*\]", "", rest)  # empty emphasis left by removals
    rest = _one_line(rest).rstrip(_SEPARATORS + " ")
    if words and words[-1] in ",;" and rest[:1] in (",", ";"):
        rest, joined = rest[1:].lstrip(), False  # "a cat," + ", fluffy"
    rest += _closers(rest)
    if not rest or not any(char.isalnum() for char in rest):
        return words
    if rest[0] in ",;:.!?)]" or (joined and rest[0].isalnum()):
        return words + rest
    return f"{words} {rest}"


def load_enhancer(source: str | Path, device: torch.device, dtype: torch.dtype) -> PromptEnhancer:
    """Load a causal LM and its tokenizer from a `save_pretrained` folder or a cached Hub id;
    safetensors only, nothing downloaded. float32 on a CPU (half precision is slow there)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # progress bars on stderr are noise in a bot's log
    name = resolve(source, ABOUT)
    dtype = torch.float32 if device.type == "cpu" else dtype
    log.info("loading text model %s (%s, %s)", name, device, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(name, use_safetensors=True, dtype=dtype, local_files_only=True)
    except Exception as error:  # turn library errors into advice
        raise ModelLoadError(explain(name, error, ABOUT)) from error
    # The checkpoint's own generation defaults (do_sample, top_k, max_length ...) would mix into
    # every call and make transformers warn about unused sampling flags; ours are explicit.
    model.generation_config = GenerationConfig(bos_token_id=model.config.bos_token_id, eos_token_id=model.config.eos_token_id)
    return PromptEnhancer(model.to(device).eval(), tokenizer, device, name)


class _SeededSampler:
    """The last logits processor: temperature, top-k and top-p as transformers does them, then one
    token drawn with a private CPU generator; every other token is set to -inf, so greedy search
    picks the drawn one. A CPU generator (as for the engine's noise) keeps draws independent of
    CUDA's RNG and of anything else using torch's global one."""

    def __init__(self, seed: int):
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(TEMPERATURE), TopKLogitsWarper(TOP_K), TopPLogitsWarper(TOP_P)])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        warped = self.warpers(input_ids, scores.float())
        probabilities = warped.softmax(dim=-1).cpu()
        drawn = torch.multinomial(probabilities, num_samples=1, generator=self.generator).to(scores.device)
        only = torch.full_like(scores, float("-inf"))
        return only.scatter_(1, drawn, 0.0)


class _Watch:
    """Stopping criterion: raises JobCancelled when asked to stop, and ends the candidate at its
    first line break (the rest would be cut anyway; this saves the tokens)."""

    def __init__(self, tokenizer: Any, start: int, should_stop: Callable[[], bool]):
        self.tokenizer = tokenizer
        self.start = start
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if self.should_stop():
            raise JobCancelled()
        # Decoding <= max_new_tokens tokens per step is cheap next to a forward pass.
        text = self.tokenizer.decode(input_ids[0, self.start :], skip_special_tokens=True)
        done = bool(re.search(r"[\r\n]", text))
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def _closers(text: str) -> str:
    """The brackets that close what `text` left open, innermost first: the model is cut off
    mid-emphasis often, and an open "(" would emphasise whatever the user appends."""
    stack: list[str] = []
    for char in text:
        if char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif stack and char == stack[-1]:
            stack.pop()
    return "".join(reversed(stack))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _key(text: str) -> str:
    """Candidates that differ only in case, spacing or trailing separators are the same."""
    return _one_line(text).rstrip(_SEPARATORS + ".!? ").lower()
