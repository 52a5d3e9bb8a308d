#!/usr/bin/env python3
"""What each cache accelerator (`--fast`, SDBOT_CACHE) buys on the tiny models, and what it costs in
the picture: for every picture family's tiny model and every cache its family takes
(generation.models.families), the same txt2img job through the engine (`run_job`) uncached and
cached, alternating (drift in the machine's speed hits both alike), and prints the median time of
each, the speed-up, and the largest and mean pixel difference (of 255) between the cached picture
and the uncached one.

Tiny models have random weights: their outputs change much more from step to step than a trained
model's, so an adaptive cache (First Block Cache, MagCache) skips less here, and a predicting one
(TaylorSeer, PAB) misses by more, than on real weights. The figures check the wiring and give an
order of magnitude; `bench/gpu.py` measures the real architectures.

    python bench/cache_cost.py                  # every family, 20 steps, 64 px, 3 runs
    python bench/cache_cost.py --models tiny,tiny-flux --steps 30 --runs 5
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root, not bench/

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from config.models import ModelEntry, ModelRegistry  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.jobs import run_job  # noqa: E402
from generation.models.families import family  # noqa: E402
from generation.models.loader import ModelCache  # noqa: E402
from generation.spec import GenerationSpec  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402

MODELS = ("tiny", "tiny-sd3", "tiny-flux", "tiny-chroma", "tiny-qwen", "tiny-zimage", "tiny-flux2")


def job(engine: Engine, spec: GenerationSpec) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    [image] = run_job(engine, spec)
    seconds = time.perf_counter() - started
    with Image.open(io.BytesIO(image.png)) as picture:
        return seconds, np.asarray(picture.convert("RGB")).astype(np.int16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "sdbot-bench-models")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is steadier on a shared machine
    names = args.models.split(",")
    registry = ModelRegistry([ModelEntry(source=name) for name in names])
    with tempfile.TemporaryDirectory() as blobs:
        engine = Engine(ModelCache(registry, args.models_dir, torch.device("cpu"), torch.float32), LocalBlobStore(Path(blobs)))
        print(f"{args.steps} steps, {args.size} px, median of {args.runs} (CPU, 1 thread)")
        print(f"{'model':12} {'cache':11} {'uncached s':>10} {'cached s':>9} {'speed-up':>8} {'max diff':>8} {'mean diff':>9}")
        for name in names:
            kind = family(registry.get(name).family)  # type: ignore[union-attr]
            loaded = engine.models.get(name)
            cfg = kind.variant(loaded.entry.guessed_variant).cfg
            base = GenerationSpec(
                kind="txt2img",
                prompt="a red fox in the snow",
                model=name,
                family=kind.id,
                width=args.size,
                height=args.size,
                steps=max(args.steps, kind.min_steps),
                cfg=4.0 if cfg is None else cfg,
                sampler=kind.default_sampler,
                seed=7,
            )
            job(engine, base)  # warm-up: the model's first job
            for cache in kind.caches:
                plain_s, cached_s = [], []
                for _ in range(args.runs):
                    seconds, plain = job(engine, base)
                    plain_s.append(seconds)
                    seconds, cached = job(engine, base.evolve(cache=cache))
                    cached_s.append(seconds)
                diff = np.abs(cached - plain)
                a, b = statistics.median(plain_s), statistics.median(cached_s)
                print(f"{name:12} {cache:11} {a:10.3f} {b:9.3f} {a / b:7.2f}x {int(diff.max()):8d} {diff.mean():9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
