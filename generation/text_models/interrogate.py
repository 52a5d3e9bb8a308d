"""`/describe`: candidate prompts for an image that carries no generation metadata.

A captioning model (BLIP through transformers: BlipForConditionalGeneration + BlipProcessor, e.g.
Salesforce/blip-image-captioning-large; SDBOT_CAPTIONER) says what is in the picture, and an
optional CLIP model (CLIPModel + CLIPProcessor, e.g. openai/clip-vit-large-patch14, the one SD 1.x
was trained with; SDBOT_DESCRIBE_CLIP) ranks lists of terms by how well each matches the image,
as pharmapsychotic's CLIP Interrogator does: cosine similarity of CLIP's image embedding with the
text embedding of each term.

Term lists are text files, one term per line (`#` starts a comment), named `<list>.txt`. The built-in
ones live in config/describe_terms (mediums, movements, flavors, artists); a file in
SDBOT_DESCRIBE_TERMS_DIR with the same name replaces a built-in list (an empty one switches it off),
and any other name adds a list. Artists are ranked and shown as "by NAME". Each list is embedded
once per loaded model (batched, on first use) and kept.

The candidates, in this order (duplicates dropped, at most `count`):
1. the caption;
2. CLIP Interrogator's "classic" prompt: caption, best medium + "by" best artist, best movement,
   the best term of each added list, the three best flavours;
3. its "fast" prompt, short: caption + the 8 best terms of all lists merged into one ranking;
4. its "fast" prompt as CLIP Interrogator returns it: caption + the best terms of all lists merged
   (up to 32), as many as fit CLIP's 77 tokens.
Every candidate is cut to fit 77 CLIP tokens, dropping whole terms. Without a CLIP model there is
nothing to rank, so /describe gives one candidate: the caption.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from generation.errors import EngineUserError, JobCancelled, ModelLoadError
from generation.models.hf_source import Source, explain, resolve

log = logging.getLogger(__name__)

BUILTIN_TERMS = Path(__file__).resolve().parents[2] / "config" / "describe_terms"  # config/ is package data
CAPTIONER = Source(
    key="SDBOT_CAPTIONER",
    what="captioning model",
    example="Salesforce/blip-image-captioning-large",
    model_class="BlipForConditionalGeneration",
)
CLIP = Source(key="SDBOT_DESCRIBE_CLIP", what="CLIP model", example="openai/clip-vit-large-patch14", model_class="CLIPModel")
TERMS_KEY = "SDBOT_DESCRIBE_TERMS_DIR"
MAX_COUNT = 4
CLIP_TOKENS = 77
BATCH = 128  # terms per text-encoder pass: CLIP-L at 77 tokens, well inside any GPU's memory
SHORT_TERMS = 8
MAX_TERMS = 32  # CLIP Interrogator's max_flavors for its fast mode
_CLASSIC = ("mediums", "artists", "movements", "flavors")  # the lists the classic prompt names
# BLIP-large's captions often open with made-up words ("arafed", "araffe"): an artefact of its
# training captions, worthless in a prompt.
_ARTEFACT = re.compile(r"\bara+f+\w*\s*", re.IGNORECASE)


class Interrogator:
    """A loaded captioner and, optionally, CLIP with its term lists. Not thread-safe by design:
    the engine calls it from its one thread."""

    def __init__(
        self,
        captioner: Any,
        caption_processor: Any,
        clip: Any | None,
        clip_processor: Any | None,
        terms: dict[str, list[str]],
        device: torch.device,
    ):
        self.captioner = captioner
        self.caption_processor = caption_processor
        self.clip = clip
        self.clip_processor = clip_processor
        self.terms = terms
        self.device = device
        self._embedded: dict[str, torch.Tensor] = {}  # list name -> (terms, dim), unit length, float32 CPU

    def describe(self, image: Image.Image, *, count: int = 4, should_stop: Callable[[], bool] = lambda: False) -> list[str]:
        """Up to `count` candidate prompts for `image` (see the module docstring for each)."""
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"count must be 1..{MAX_COUNT}, not {count}")
        _check(should_stop)
        image = image.convert("RGB")
        caption = self.caption(image, should_stop=should_stop)
        if self.clip is None or count == 1:
            if not caption:
                raise EngineUserError("the captioning model found nothing to say about this image.")
            return [caption]
        features = self.image_features(image)
        ranked = {name: self.rank(name, features, MAX_TERMS, should_stop=should_stop) for name in self.terms}
        ranked = {name: terms for name, terms in ranked.items() if terms}
        merged = self.rank_merged(features, MAX_TERMS, should_stop=should_stop)
        candidates = [
            [caption],
            [caption, *_classic(caption, ranked)],
            [caption, *merged[:SHORT_TERMS]],
            [caption, *merged],
        ]
        out: list[str] = []
        for parts in candidates:
            text = self._fit([part for part in parts if part])
            if text and text.lower() not in {seen.lower() for seen in out}:
                out.append(text)
        if not out:
            raise EngineUserError("the captioning model found nothing to say about this image.")
        return out[:count]

    def caption(self, image: Image.Image, *, should_stop: Callable[[], bool] = lambda: False) -> str:
        """BLIP's caption, one line, deterministic: beam search (3 beams, 5..30 new tokens), as in
        BLIP's own demo, with no sampling."""
        from transformers import StoppingCriteriaList

        inputs = self.caption_processor(images=image.convert("RGB"), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, dtype=self.captioner.dtype)
        with torch.inference_mode():
            tokens = self.captioner.generate(
                pixel_values=pixels,
                num_beams=3,
                do_sample=False,
                min_new_tokens=5,  # BLIP's demo sets a minimum length: no one-word captions
                max_new_tokens=30,
                stopping_criteria=StoppingCriteriaList([_Cancel(should_stop)]),
            )
        return clean_caption(self.caption_processor.decode(tokens[0], skip_special_tokens=True))

    def image_features(self, image: Image.Image) -> torch.Tensor:
        """CLIP's image embedding, (dim,), unit length, float32 on the CPU."""
        if self.clip is None:
            raise EngineUserError(f"no CLIP model is configured ({CLIP.key}), so there is nothing to rank terms with.")
        pixels = self.clip_processor.image_processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            output = self.clip.get_image_features(pixel_values=pixels.to(self.device, dtype=self.clip.dtype))
        return _unit(_pooled(output))[0]

    def term_features(self, name: str, *, should_stop: Callable[[], bool] = lambda: False) -> torch.Tensor:
        """The embeddings of list `name`'s terms, (terms, dim), unit length; computed once, kept."""
        if name not in self._embedded:
            texts = [_shown(name, term) for term in self.terms[name]]
            tokenizer = self.clip_processor.tokenizer
            parts = []
            for start in range(0, len(texts), BATCH):
                _check(should_stop)  # a first describe with a long list takes a while: stay cancellable
                batch = tokenizer(
                    texts[start : start + BATCH], padding=True, truncation=True, max_length=CLIP_TOKENS, return_tensors="pt"
                ).to(self.device)
                with torch.inference_mode():
                    parts.append(_unit(_pooled(self.clip.get_text_features(**batch))))
            dim = self.clip.config.projection_dim
            self._embedded[name] = torch.cat(parts) if parts else torch.empty(0, dim)
        return self._embedded[name]

    def rank(self, name: str, image: torch.Tensor, top: int, *, should_stop: Callable[[], bool] = lambda: False) -> list[str]:
        """List `name`'s `top` terms (as shown: artists as "by NAME") best-matching first."""
        scores = self.term_features(name, should_stop=should_stop) @ image
        # A stable sort: equal scores keep the list's order, so results never depend on the kernel.
        order = torch.sort(scores, descending=True, stable=True).indices[:top].tolist()
        return [_shown(name, self.terms[name][index]) for index in order]

    def rank_merged(self, image: torch.Tensor, top: int, *, should_stop: Callable[[], bool] = lambda: False) -> list[str]:
        """The `top` best terms of all lists in one ranking, each term once (CLIP Interrogator's
        fast mode merges its tables the same way)."""
        scored: list[tuple[float, str]] = []
        for name in self.terms:
            scores = (self.term_features(name, should_stop=should_stop) @ image).tolist()
            scored += [(score, _shown(name, term)) for score, term in zip(scores, self.terms[name], strict=True)]
        scored.sort(key=lambda pair: -pair[0])  # stable: ties keep list and file order
        out: list[str] = []
        for _, term in scored:
            if term.lower() not in {seen.lower() for seen in out}:
                out.append(term)
            if len(out) == top:
                break
        return out

    def _fit(self, parts: list[str]) -> str:
        """`parts` joined with ", ", dropping the terms after the first (the caption, kept whole)
        that would take the prompt past CLIP's 77 tokens."""
        if self.clip_processor is None or not parts:
            return ", ".join(parts)
        tokenizer = self.clip_processor.tokenizer
        kept = parts[:1]
        for part in parts[1:]:
            # verbose=False: counting a too-long text is the point here, not a warning.
            if len(tokenizer(", ".join([*kept, part]), verbose=False)["input_ids"]) <= CLIP_TOKENS:
                kept.append(part)
        return ", ".join(kept)


def load_interrogator(
    captioner: str | Path, clip: str | Path | None, terms_dir: Path | None, device: torch.device, dtype: torch.dtype
) -> Interrogator:
    """Load BLIP (and CLIP, when configured) from folders or cached Hub ids, safetensors only,
    and read the term lists (built-ins, then `terms_dir`). float32 on a CPU."""
    from transformers import BlipForConditionalGeneration, BlipProcessor, CLIPModel, CLIPProcessor
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    dtype = torch.float32 if device.type == "cpu" else dtype
    terms = load_terms(terms_dir)  # first: a wrong folder should not cost a model load
    name = resolve(captioner, CAPTIONER)
    log.info("loading captioner %s (%s, %s)", name, device, dtype)
    try:
        caption_model = BlipForConditionalGeneration.from_pretrained(name, use_safetensors=True, dtype=dtype, local_files_only=True)
        caption_processor = BlipProcessor.from_pretrained(name, local_files_only=True)
    except Exception as error:
        raise ModelLoadError(explain(name, error, CAPTIONER)) from error
    clip_model = clip_processor = None
    if clip is not None:
        clip_name = resolve(clip, CLIP)
        log.info("loading CLIP %s for /describe (%s, %s)", clip_name, device, dtype)
        try:
            clip_model = CLIPModel.from_pretrained(clip_name, use_safetensors=True, dtype=dtype, local_files_only=True)
            clip_processor = CLIPProcessor.from_pretrained(clip_name, local_files_only=True)
        except Exception as error:
            raise ModelLoadError(explain(clip_name, error, CLIP)) from error
        clip_model = clip_model.to(device).eval()
    return Interrogator(caption_model.to(device).eval(), caption_processor, clip_model, clip_processor, terms, device)


def load_terms(terms_dir: Path | None) -> dict[str, list[str]]:
    """The term lists by name: the built-in files, then those in `terms_dir`, which replace a
    built-in of the same name (an empty file removes it) or add a list. Names are the file stems,
    lower-cased; built-ins first, in `_CLASSIC` order, then added lists alphabetically."""
    files = {path.stem.lower(): path for path in sorted(BUILTIN_TERMS.glob("*.txt"))}
    if terms_dir is not None:
        folder = Path(terms_dir).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"{TERMS_KEY} is `{folder}`, which is not a folder of <list>.txt term files.")
        files.update({path.stem.lower(): path for path in sorted(folder.glob("*.txt"))})
    order = [name for name in _CLASSIC if name in files] + sorted(name for name in files if name not in _CLASSIC)
    lists = {name: _read_terms(files[name]) for name in order}
    return {name: terms for name, terms in lists.items() if terms}


def _read_terms(path: Path) -> list[str]:
    seen: set[str] = set()
    terms = []
    for line in path.read_text(encoding="utf-8").splitlines():
        term = " ".join(line.split())
        if term and not term.startswith("#") and term.lower() not in seen:
            seen.add(term.lower())
            terms.append(term)
    return terms


def clean_caption(text: str) -> str:
    """One line, without BLIP-large's made-up words and trailing punctuation."""
    return " ".join(_ARTEFACT.sub("", text).split()).strip(" ,.")


def _classic(caption: str, ranked: dict[str, list[str]]) -> list[str]:
    """CLIP Interrogator's classic prompt after the caption (its "trending" list is not built in;
    a terms_dir can add one, as any extra list)."""
    medium = ranked.get("mediums", [""])[0]
    if medium and caption.lower().startswith(medium.lower()):
        medium = ""  # "a painting of ..., a painting": CLIP Interrogator skips it the same way
    artist = ranked.get("artists", [""])[0]
    extras = [terms[0] for name, terms in ranked.items() if name not in _CLASSIC]
    movement = ranked.get("movements", [""])[0]
    return [" ".join(filter(None, [medium, artist])), movement, *extras, *ranked.get("flavors", [])[:3]]


def _shown(name: str, term: str) -> str:
    return f"by {term}" if name == "artists" else term


def _pooled(output: Any) -> torch.Tensor:
    # transformers 5.5 returns a ModelOutput whose pooler_output is the projected embedding;
    # older versions returned the tensor itself.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _unit(features: torch.Tensor) -> torch.Tensor:
    features = features.float().cpu()
    return features / features.norm(dim=-1, keepdim=True)


def _check(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise JobCancelled()


class _Cancel:
    """Stopping criterion that only raises JobCancelled when the job should stop."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        _check(self.should_stop)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
