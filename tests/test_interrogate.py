"""generation.text_models.interrogate: /describe's candidates from BLIP + CLIP (tiny random models from
tests/support/tiny_text_models.py).

What each test proves:
- test_caption_alone_without_clip: no CLIP configured gives one candidate, the caption, one clean
  line, the same on every call.
- test_candidates_with_clip: the caption first, every candidate starts with it, fits CLIP's 77
  tokens, no duplicates, `count` respected (and a prefix of the longer list).
- test_candidates_are_assembled_from_the_rankings: with the similarities fixed by the test, the
  classic and fast candidates are exactly the best medium/artist/movement/extra/flavours and the
  best terms of all lists merged, in order. Fails if a ranking is reversed or ignored.
- test_clip_ranking_picks_the_most_similar_term: with the real tiny CLIP, the ranking equals the
  order of similarities the test computes itself, one term at a time; the list file puts the best
  term last and the worst first, so list order or a reversed sort fails.
- test_term_embeddings_are_batched_and_kept: one text-encoder pass per batch, none on reuse, and
  batching (with padding) changes nothing.
- test_terms_dir_replaces_and_adds_lists: same-name files replace a built-in (an empty one removes
  it), new names add a list; comments, blanks and duplicates are skipped.
- test_clean_caption: BLIP-large's "arafed" artefacts and line breaks go.
- test_built_in_lists: each built-in list is of a sensible size, without duplicates.
- test_should_stop_cancels, test_load_errors_name_the_settings, test_tools_*.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import generation.text_models.interrogate as interrogate
from config import Settings
from generation.errors import EngineUserError, JobCancelled, ModelLoadError
from generation.text_models.interrogate import BUILTIN_TERMS, Interrogator, clean_caption, load_interrogator, load_terms
from generation.tools import Tools
from tests.support.tiny_text_models import build_tiny_blip, build_tiny_clip

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("describe")
    return {"blip": build_tiny_blip(root / "tiny-blip"), "clip": build_tiny_clip(root / "tiny-clip")}


@pytest.fixture(scope="module")
def full(folders: dict[str, Path]) -> Interrogator:
    return load_interrogator(str(folders["blip"]), str(folders["clip"]), None, CPU, torch.float32)


@pytest.fixture(scope="module")
def caption_only(folders: dict[str, Path]) -> Interrogator:
    return load_interrogator(str(folders["blip"]), None, None, CPU, torch.float32)


def picture(seed: int, width: int = 60, height: int = 40) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def clip_tokens(interrogator: Interrogator, text: str) -> int:
    return len(interrogator.clip_processor.tokenizer(text, verbose=False)["input_ids"])


def test_caption_alone_without_clip(caption_only: Interrogator) -> None:
    image = picture(0)
    out = caption_only.describe(image, count=4)
    assert len(out) == 1 and out[0] and "\n" not in out[0] and out[0] == " ".join(out[0].split())
    assert caption_only.describe(image.convert("RGBA"), count=4) == out == [caption_only.caption(image)]


def test_candidates_with_clip(full: Interrogator) -> None:
    image = picture(1)
    out = full.describe(image, count=4)
    caption = full.caption(image)
    assert len(out) == 4 and out[0] == caption and len({text.lower() for text in out}) == 4
    assert all(text.startswith(caption + ", ") for text in out[1:])
    assert all(clip_tokens(full, text) <= 77 for text in out)
    assert clip_tokens(full, out[3]) > 60  # the long fast prompt fills CLIP's window
    assert full.describe(image, count=2) == out[:2]
    with pytest.raises(ValueError):
        full.describe(image, count=5)


def _fixed(scores: dict[str, list[float]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """An image vector and per-term unit vectors whose similarity with it is exactly `scores`."""
    image = torch.zeros(4)
    image[0] = 1.0
    vectors = {name: torch.tensor([[value, math.sqrt(1 - value * value), 0.0, 0.0] for value in values]) for name, values in scores.items()}
    return image, vectors


def test_candidates_are_assembled_from_the_rankings(full: Interrogator, monkeypatch: pytest.MonkeyPatch) -> None:
    terms = {
        "mediums": ["a photo", "an oil painting", "a sketch"],
        "artists": ["Ann", "Bo", "Cy"],
        "movements": ["cubism", "baroque"],
        "flavors": ["misty", "gold", "moody", "neon", "dusty", "soft"],
        "lighting": ["backlit", "candlelight"],  # an added list
    }
    image, vectors = _fixed(
        {
            "mediums": [0.1, 0.5, 0.3],
            "artists": [0.2, 0.1, 0.45],
            "movements": [0.05, 0.25],
            "flavors": [0.35, 0.15, 0.6, 0.4, 0.05, 0.2],
            "lighting": [0.3, 0.55],
        }
    )
    stub = Interrogator(None, None, full.clip, full.clip_processor, terms, CPU)
    monkeypatch.setattr(stub, "caption", lambda image, **_: "a cat")
    monkeypatch.setattr(stub, "image_features", lambda image: image_vector)
    monkeypatch.setattr(stub, "term_features", lambda name, **_: vectors[name])
    image_vector = image
    out = stub.describe(picture(2), count=4)
    assert out == [
        "a cat",
        "a cat, an oil painting by Cy, baroque, candlelight, moody, neon, misty",
        "a cat, moody, candlelight, an oil painting, by Cy, neon, misty, a sketch, backlit",
        "a cat, moody, candlelight, an oil painting, by Cy, neon, misty, a sketch, backlit, baroque, by Ann, "
        "soft, gold, a photo, by Bo, cubism, dusty",
    ]
    # CLIP Interrogator's rule: a caption that already starts with the medium does not repeat it.
    monkeypatch.setattr(stub, "caption", lambda image, **_: "an oil painting of a cat")
    assert stub.describe(picture(2), count=2)[1] == "an oil painting of a cat, by Cy, baroque, candlelight, moody, neon, misty"


def test_clip_ranking_picks_the_most_similar_term(folders: dict[str, Path], tmp_path: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folders["clip"]).eval()
    processor = CLIPProcessor.from_pretrained(folders["clip"])
    image = picture(3)
    with torch.no_grad():
        seen = model.get_image_features(**processor(images=image, return_tensors="pt")).pooler_output[0]

    @torch.no_grad()
    def similarity(text: str) -> float:
        embedded = model.get_text_features(**processor.tokenizer([text], return_tensors="pt")).pooler_output[0]
        return float(embedded @ seen / (embedded.norm() * seen.norm()))

    mediums = [line for line in (BUILTIN_TERMS / "mediums.txt").read_text().splitlines() if line[:1] not in ("", "#")]
    artists = ["Claude Monet", "Frida Kahlo", "Hokusai", "Edward Hopper", "Alphonse Mucha", "Paul Klee"]
    by_medium = sorted(mediums[:16], key=similarity)  # worst first: the file's order is the wrong answer
    by_artist = sorted(artists, key=lambda name: similarity(f"by {name}"))
    (tmp_path / "mediums.txt").write_text("\n".join(by_medium))
    (tmp_path / "artists.txt").write_text("\n".join(by_artist))

    interrogator = load_interrogator(str(folders["blip"]), str(folders["clip"]), tmp_path, CPU, torch.float32)
    features = interrogator.image_features(image)
    assert interrogator.rank("mediums", features, 16) == by_medium[::-1]
    assert interrogator.rank("artists", features, 2) == [f"by {name}" for name in by_artist[::-1][:2]]
    classic = interrogator.describe(image, count=2)[1]
    caption = interrogator.caption(image)
    assert classic.startswith(f"{caption}, {by_medium[-1]} by {by_artist[-1]}, ")


def test_term_embeddings_are_batched_and_kept(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    interrogator = load_interrogator(str(folders["blip"]), str(folders["clip"]), None, CPU, torch.float32)
    passes: list[int] = []
    encode = interrogator.clip.get_text_features

    def counting(**batch):  # type: ignore[no-untyped-def]
        passes.append(batch["input_ids"].shape[0])
        return encode(**batch)

    monkeypatch.setattr(interrogator.clip, "get_text_features", counting)
    monkeypatch.setattr(interrogate, "BATCH", 8)
    terms = interrogator.terms["mediums"]
    batched = interrogator.term_features("mediums")
    assert passes == [8] * (len(terms) // 8) + ([len(terms) % 8] if len(terms) % 8 else [])
    assert interrogator.term_features("mediums") is batched and len(passes) == math.ceil(len(terms) / 8)
    monkeypatch.setattr(interrogate, "BATCH", 1)
    interrogator._embedded.clear()
    assert torch.allclose(interrogator.term_features("mediums"), batched, atol=1e-5)
    assert batched.shape == (len(terms), interrogator.clip.config.projection_dim)
    assert torch.allclose(batched.norm(dim=-1), torch.ones(len(terms)))


def test_terms_dir_replaces_and_adds_lists(tmp_path: Path) -> None:
    (tmp_path / "mediums.txt").write_text("# my mediums\nfresco\n\n  fresco  \nFresco\nclay   model\n")
    (tmp_path / "artists.txt").write_text("# nobody\n")
    (tmp_path / "Trending.txt").write_text("trending on pixiv\n")
    (tmp_path / "notes.md").write_text("not a list")
    lists = load_terms(tmp_path)
    assert list(lists) == ["mediums", "movements", "flavors", "trending"]
    assert lists["mediums"] == ["fresco", "clay model"]
    assert lists["trending"] == ["trending on pixiv"]
    assert lists["movements"] == load_terms(None)["movements"]
    with pytest.raises(ModelLoadError, match="SDBOT_DESCRIBE_TERMS_DIR"):
        load_terms(tmp_path / "missing")


def test_clean_caption() -> None:
    assert clean_caption("arafed man in a hat\n standing  there .") == "man in a hat standing there"
    assert clean_caption("araffe cat on a sofa,") == "cat on a sofa"
    assert clean_caption("a parade of arabian horses") == "a parade of arabian horses"


def test_built_in_lists() -> None:
    lists = load_terms(None)
    assert list(lists) == ["mediums", "artists", "movements", "flavors"]
    for name, terms in lists.items():
        assert 30 <= len(terms) <= 80, name
        assert len({term.lower() for term in terms}) == len(terms), name
        assert not any(term.startswith("by ") for term in terms), name


def test_should_stop_cancels(full: Interrogator, caption_only: Interrogator) -> None:
    with pytest.raises(JobCancelled):
        full.describe(picture(4), should_stop=lambda: True)
    calls = 0

    def later() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    with pytest.raises(JobCancelled):  # no CLIP: only a check inside the caption's generation can stop it
        caption_only.describe(picture(4), should_stop=later)
    assert calls == 3
    # A first describe embeds the term lists, which takes a while with long lists: it checks too.
    fresh = Interrogator(full.captioner, full.caption_processor, full.clip, full.clip_processor, full.terms, CPU)
    fresh.caption = lambda image, **_: "a cat"  # type: ignore[method-assign]
    calls = 1  # the next check, describe's first, passes; the one after stops
    with pytest.raises(JobCancelled):
        fresh.describe(picture(4), should_stop=later)
    assert calls == 3 and not fresh._embedded


def test_load_errors_name_the_settings(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="SDBOT_CAPTIONER"):
        load_interrogator(str(tmp_path / "missing"), None, None, CPU, torch.float32)
    with pytest.raises(ModelLoadError, match="SDBOT_DESCRIBE_CLIP"):
        load_interrogator(str(folders["blip"]), "nobody/no-clip-here", None, CPU, torch.float32)
    with pytest.raises(ModelLoadError, match="SDBOT_DESCRIBE_TERMS_DIR"):
        load_interrogator(str(folders["blip"]), None, tmp_path / "nope", CPU, torch.float32)


def test_tools_without_a_captioner_names_the_setting() -> None:
    with pytest.raises(EngineUserError, match="SDBOT_CAPTIONER"):
        Tools(device=CPU, dtype=torch.float32, describe_clip="somewhere").interrogator()


def test_tools_load_the_configured_interrogator_once(folders: dict[str, Path], tmp_path: Path) -> None:
    settings = Settings(_env_file=None, captioner=str(folders["blip"]), describe_clip=str(folders["clip"]), describe_terms_dir=tmp_path)
    tools = Tools.from_settings(settings, CPU, torch.float32)
    interrogator = tools.interrogator()
    assert interrogator is tools.interrogator() and interrogator.clip is not None
