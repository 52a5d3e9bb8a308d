"""Speed options (generation.models.speed) on the tiny model: each really changes the modules,
holds for the pipelines that share them (img2img via from_pipe), and leaves the pixels as they
were. Speed itself is bench/gpu.py's business, never a timed assertion here (docs/rules.md, "Tests and benchmarks")."""

from __future__ import annotations

import gc
import io
import os
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch._dynamo
from PIL import Image
from safetensors.torch import load_file, save

from config import ModelEntry, ModelRegistry, Settings
from generation.engine import Engine
from generation.jobs import run_job
from generation.models import speed
from generation.models.loader import ModelCache
from generation.models.speed import SpeedOptions, apply_speed_options, attention_kinds, is_compiled
from generation.models.tiny import build_tiny_pipeline
from generation.spec import AssetRef, GenerationSpec
from storage.blobs import LocalBlobStore

INDUCTOR_ENV = "SPEED_TEST_INDUCTOR"


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield  # tiny models: one intra-op thread is faster on a busy 2-core machine


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> LocalBlobStore:
    return LocalBlobStore(tmp_path_factory.mktemp("blobs"))  # shared, so engines read the same init images


def make_engine(models_dir: Path, blobs: LocalBlobStore, options: SpeedOptions | None = None) -> Engine:
    registry = ModelRegistry([ModelEntry(source="tiny")])
    return Engine(ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, speed=options), blobs)


@pytest.fixture(scope="module")
def baseline(models_dir: Path, blobs: LocalBlobStore) -> Engine:
    """ModelCache as existing callers build it: no speed argument, so diffusers' defaults."""
    registry = ModelRegistry([ModelEntry(source="tiny")])
    return Engine(ModelCache(registry, models_dir, torch.device("cpu"), torch.float32), blobs)


def spec(**changes: Any) -> GenerationSpec:
    base = dict(
        kind="txt2img", prompt="a red fox in the snow", model="tiny", width=64, height=64, steps=4, cfg=7.0, sampler="Euler", seed=11, n=1
    )
    base.update(changes)
    return GenerationSpec(**base)


def draw(engine: Engine, **changes: Any) -> np.ndarray:
    [image] = run_job(engine, spec(**changes))
    return np.asarray(Image.open(io.BytesIO(image.png)).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def init_image(baseline: Engine, blobs: LocalBlobStore) -> str:
    [source] = run_job(baseline, spec(seed=3))
    return blobs.put(source.png, "png")


@pytest.fixture(scope="module")
def reference(baseline: Engine, init_image: str) -> dict[str, np.ndarray]:
    return {"txt2img": draw(baseline), "img2img": draw(baseline, kind="img2img", init_image=init_image, strength=0.6)}


def differ(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


def pipes(engine: Engine) -> tuple[Any, Any]:
    loaded = engine.models.get("tiny")
    return loaded.txt2img, loaded.pipeline("img2img")


def test_from_settings() -> None:
    settings = Settings(_env_file=None, attention="classic", channels_last=True, torch_compile=True)
    assert SpeedOptions.from_settings(settings) == SpeedOptions("classic", True, True)
    assert SpeedOptions.from_settings(Settings(_env_file=None)) == SpeedOptions()  # the defaults agree


def test_default_is_sdpa(baseline: Engine) -> None:
    txt2img, img2img = pipes(baseline)
    assert attention_kinds(txt2img.unet) == attention_kinds(txt2img.vae) == {"AttnProcessor2_0"}
    assert not is_compiled(txt2img.unet)
    assert baseline.models.speed == SpeedOptions()


def test_classic_attention_swaps_processors_and_keeps_pixels(
    models_dir: Path,
    blobs: LocalBlobStore,
    init_image: str,
    reference: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diffusers.models.attention_processor import AttnProcessor

    engine = make_engine(models_dir, blobs, SpeedOptions(attention="classic"))
    txt2img, img2img = pipes(engine)
    assert img2img.unet is txt2img.unet  # from_pipe shares the module, and so its processors
    assert attention_kinds(txt2img.unet) == attention_kinds(txt2img.vae) == {"AttnProcessor"}
    calls = []
    original = AttnProcessor.__call__
    monkeypatch.setattr(AttnProcessor, "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    assert differ(draw(engine), reference["txt2img"]) <= 2
    assert calls, "the classic processor never ran"
    assert differ(draw(engine, kind="img2img", init_image=init_image, strength=0.6), reference["img2img"]) <= 2


def test_channels_last_converts_conv_weights_and_keeps_pixels(
    models_dir: Path, blobs: LocalBlobStore, init_image: str, reference: dict[str, np.ndarray]
) -> None:
    engine = make_engine(models_dir, blobs, SpeedOptions(channels_last=True))
    txt2img, img2img = pipes(engine)
    assert img2img.unet is txt2img.unet and img2img.vae is txt2img.vae
    for model in (txt2img.unet, txt2img.vae):
        convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
        assert any(not w.is_contiguous() for w in convs)  # 3x3 kernels: really NHWC, not just 1x1 either way
    assert differ(draw(engine), reference["txt2img"]) <= 2
    assert differ(draw(engine, kind="img2img", init_image=init_image, strength=0.6), reference["img2img"]) <= 2


# --- torch_compile ---------------------------------------------------------------------------------


def test_compile_wraps_the_modules_in_place(models_dir: Path, blobs: LocalBlobStore) -> None:
    """The module objects stay (pipelines share them, the LoRA cache keys on id(unet)); only
    their forward is the compiled one. Nothing runs here: see the next tests."""
    from diffusers import UNet2DConditionModel

    engine = make_engine(models_dir, blobs, SpeedOptions(torch_compile=True))
    txt2img, img2img = pipes(engine)
    assert type(txt2img.unet) is UNet2DConditionModel
    assert is_compiled(txt2img.unet) and is_compiled(txt2img.vae.decoder)
    assert img2img.unet is txt2img.unet and is_compiled(img2img.unet)
    assert not is_compiled(txt2img.text_encoder)


def test_compiled_model_is_freed_when_dropped() -> None:
    """The wrapper holds its module weakly: an unloaded model's memory must not wait for a cycle."""
    pipe = build_tiny_pipeline()
    apply_speed_options(pipe, SpeedOptions(torch_compile=True))
    unet = weakref.ref(pipe.unet)
    del pipe
    gc.collect()
    assert unet() is None


@pytest.fixture
def counting_compiler(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """torch.compile with dynamo's real tracing and guards but no code generation: each graph runs
    as traced, and the calls are counted. Inductor itself is too slow on this CPU (next test)."""
    counts = {"compiles": 0, "runs": 0}

    def backend(graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        counts["compiles"] += 1

        def run(*args: Any) -> Any:
            counts["runs"] += 1
            return graph.forward(*args)

        return run

    monkeypatch.setitem(speed.COMPILE_KWARGS, "backend", backend)
    torch._dynamo.reset()
    yield counts
    torch._dynamo.reset()


def make_lora(seed: int) -> dict[str, torch.Tensor]:
    """A rank-4 peft LoRA on the tiny UNet's attention, as diffusers' save_lora_weights writes it."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = build_tiny_pipeline()
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    pipe.unet.add_adapter(config, adapter_name="made")
    with tempfile.TemporaryDirectory() as folder:
        StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet, adapter_name="made"))
        return load_file(Path(folder) / "pytorch_lora_weights.safetensors")


def lora_ref(blobs: LocalBlobStore) -> AssetRef:
    key = blobs.put(save({k: v.contiguous() for k, v in make_lora(5).items()}), "st")
    return AssetRef(name="fox", blob=key, sha256=key.split(".")[0], format="diffusers", weight=0.8)


def test_compiled_jobs_run_the_compiled_graphs_and_lora_jobs_do_not(
    models_dir: Path,
    blobs: LocalBlobStore,
    baseline: Engine,
    reference: dict[str, np.ndarray],
    counting_compiler: dict[str, int],
) -> None:
    """Same pixels as uncompiled; a job with LoRAs runs the UNet eagerly (module docstring:
    adapters would recompile per combination), a job without them on the same model is compiled
    again; seamless padding, changed on the shared convs for one job, is honoured (dynamo's
    guards recompile) and undone after it."""
    engine = make_engine(models_dir, blobs, SpeedOptions(torch_compile=True))
    assert differ(draw(engine), reference["txt2img"]) <= 2
    assert counting_compiler["compiles"] >= 2  # UNet and VAE decoder
    assert counting_compiler["runs"] >= 5  # 4 steps of the UNet, 1 decode

    lora = lora_ref(blobs)
    with_lora = draw(baseline, loras=[lora])
    assert differ(with_lora, reference["txt2img"]) > 5  # the LoRA does change the picture
    runs = counting_compiler["runs"]
    assert differ(draw(engine, loras=[lora]), with_lora) <= 2
    assert counting_compiler["runs"] - runs <= 1  # the decode only: the UNet ran eagerly

    runs = counting_compiler["runs"]
    assert differ(draw(engine), reference["txt2img"]) <= 2  # LoRA loaded but disabled: compiled again
    assert counting_compiler["runs"] - runs >= 5

    assert differ(draw(engine, tile=True), draw(baseline, tile=True)) <= 2
    assert differ(draw(engine), reference["txt2img"]) <= 2


@pytest.mark.skipif(
    not os.environ.get(INDUCTOR_ENV),
    reason="inductor on this 2-core CPU took 154 s for the tiny UNet's first call and as long again for each "
    f"new shape (C++ code generation); the routing is tested with dynamo's tracing above. {INDUCTOR_ENV}=1 runs it",
)
def test_inductor_keeps_pixels(models_dir: Path, blobs: LocalBlobStore, reference: dict[str, np.ndarray]) -> None:
    torch._dynamo.reset()
    engine = make_engine(models_dir, blobs, SpeedOptions(torch_compile=True))
    assert differ(draw(engine), reference["txt2img"]) <= 2
