"""Prompt editing and alternation in a running job: the conditioning the UNet receives at each
step is the encoding of the text A1111 would use at that step (checked through a hook on the
UNet), and switching is per job (the next plain job is not affected)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.jobs import run_job
from generation.models.loader import ModelCache
from generation.prompts.encoder import encode_prompts
from generation.spec import GenerationSpec
from storage.blobs import LocalBlobStore


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def conditioning_per_step(engine: Engine, prompt: str, steps: int = 4, n: int = 1) -> list[torch.Tensor]:
    """The positive half of the text conditioning of every UNet call of one job."""
    unet = engine.models.get("tiny").txt2img.unet
    seen: list[torch.Tensor] = []

    def record(module, args, kwargs):  # type: ignore[no-untyped-def]
        hidden = kwargs["encoder_hidden_states"]
        seen.append(hidden[hidden.shape[0] // 2 :].clone())  # [negatives, positives]

    handle = unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        run_job(
            engine,
            GenerationSpec(
                kind="txt2img", prompt=prompt, model="tiny", width=64, height=64, steps=steps, cfg=7.0, sampler="Euler", seed=1, n=n
            ),
        )
    finally:
        handle.remove()
    return seen


def encoded(engine: Engine, text: str) -> torch.Tensor:
    return encode_prompts(engine.models.get("tiny").txt2img, text, "").prompt_embeds


def which(engine: Engine, seen: list[torch.Tensor], texts: list[str]) -> list[str]:
    candidates = {text: encoded(engine, text) for text in texts}
    names = []
    for hidden in seen:
        [name] = [text for text, z in candidates.items() if torch.allclose(hidden[:1], z, atol=1e-5)]
        assert all(torch.allclose(row, hidden[0]) for row in hidden)  # every image of the batch alike
        names.append(name)
    return names


def test_editing_switches_where_a1111_does(engine: Engine) -> None:
    # A1111 uses `from` while the step index (from 0) is <= when: steps 0, 1, 2 here, then `to`.
    seen = conditioning_per_step(engine, "a [fox:cat:2] in the snow", steps=5)
    assert which(engine, seen, ["a fox in the snow", "a cat in the snow"]) == ["a fox in the snow"] * 3 + ["a cat in the snow"] * 2
    seen = conditioning_per_step(engine, "a [fox:cat:0.5] in the snow", steps=4, n=2)  # a fraction of the steps
    assert which(engine, seen, ["a fox in the snow", "a cat in the snow"]) == ["a fox in the snow"] * 3 + ["a cat in the snow"]


def test_alternation(engine: Engine) -> None:
    seen = conditioning_per_step(engine, "a [fox|cat] in the snow", steps=5)
    fox, cat = "a fox in the snow", "a cat in the snow"
    assert which(engine, seen, [fox, cat]) == [fox, fox, cat, fox, cat]  # A1111's entries (1 fox)(2 cat)(3 fox)...


def test_plain_prompts_keep_one_conditioning(engine: Engine) -> None:
    seen = conditioning_per_step(engine, "a (fox:1.2) in the [snow]", steps=3)
    assert all(torch.equal(hidden, seen[0]) for hidden in seen)
