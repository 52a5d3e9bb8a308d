"""The training loop on the engine itself: on the tiny SDXL (two text encoders, pooled text
embeds and size conditioning), a trained LoRA and LoKr load through the engine's own path and
change the picture; the loop is deterministic (the same seed gives the same file's tensors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load

from generation.engine import Engine
from generation.training import export, trainer
from generation.training.spec import TrainImage, TrainingSpec
from tests.support.train_pictures import picture_bytes
from tests.test_adapters import asset, draw, xl_engine  # noqa: F401 - xl_engine is a fixture


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield


def train_xl(engine: Engine, method: str) -> bytes:
    images = tuple(
        TrainImage(blob=engine.blobs.put(data, "png"), width=64, height=64, filename=f"{i}.png") for i, data in enumerate(picture_bytes(3))
    )
    spec = TrainingSpec(
        method=method,
        name="foxy",
        model="xl",
        images=images,
        trigger="foxy",
        steps=4,
        rank=4,
        alpha=4,
        lr=1e-2,
        resolution=64,
        seed=3,
        text_encoder=True,
        sample_every=0,
        sample_prompt="foxy",
        sample_steps=2,
        checkpoint_every=100,
    )

    def to_file(learned: trainer.Learned) -> bytes:
        metadata = export.training_metadata(
            spec, architecture="sdxl", captions=learned.captions, steps_done=learned.steps_done, loss=learned.loss, base_model_name="xl"
        )
        return export.adapter_file(learned.components, trainer.ADAPTER, method, metadata, sdxl=True)  # type: ignore[arg-type]

    data, learned = trainer.train(engine, spec, trainer.Hooks(), captions=["foxy"] * 3, export=to_file)
    assert learned.held_out is not None and learned.held_out[1] < learned.held_out[0]
    return data


@pytest.mark.parametrize("method", ["lora", "lokr"])
def test_a_run_on_the_tiny_sdxl_makes_a_file_the_engine_loads(xl_engine: Engine, method: str) -> None:  # noqa: F811
    data = train_xl(xl_engine, method)
    tensors = load(data)
    assert any(key.startswith("lora_te2_") for key in tensors) and any("input_blocks" in key for key in tensors)
    ref = asset(xl_engine, tensors, "foxy", "kohya" if method == "lora" else "lokr")
    plain = draw(xl_engine, model="xl")
    with_it = draw(xl_engine, model="xl", prompt="<lora:foxy:1> a red fox in the snow", loras=(ref,))
    assert np.abs(with_it - plain).max() > 2
    again = load(train_xl(xl_engine, method))
    assert all(torch.equal(tensors[key], again[key]) for key in tensors), "the same seed trains the same weights"
