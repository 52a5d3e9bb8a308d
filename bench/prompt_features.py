#!/usr/bin/env python3
"""What the prompt features cost, against the same job without them, in one run.

- regions: `a castle BREAK a dragon --regions cols` (2 regions), and with a base prompt
  (`a valley ADDBASE ...`, 2 regions + base), against the plain prompt: regional prompting runs
  the UNet once per region (and once for the base) plus once for the negative prompt per step,
  where a plain job runs one call of batch 2 (docs/regions.md).
- wildcards: `a {red|green|blue} fox` with --n 4, against the plain prompt with --n 4: each image
  of a wildcard batch has its own prompt, so the engine draws the images one at a time.
- styles cost nothing at run time (the template is applied when the job is made); not measured.

Every variant runs once untimed (model load, warm-up), then the variants take turns, `--rounds`
times, so a change in the machine's speed hits all alike. Prints the median time of each and its
ratio to its baseline.

    python bench/prompt_features.py                            # tiny model, this machine's device
    python bench/prompt_features.py --model /path/to/sd15 --size 512 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from config import ModelEntry, ModelRegistry  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.jobs import run_job  # noqa: E402
from generation.models.loader import ModelCache, resolve_device, resolve_dtype  # noqa: E402
from generation.spec import GenerationSpec  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402

VARIANTS = {  # name: (spec changes, baseline name)
    "plain": ({"prompt": "a castle and a dragon"}, None),
    "regions 2": ({"prompt": "a castle BREAK a dragon", "regions": "cols"}, "plain"),
    "regions 2 + base": ({"prompt": "a valley ADDBASE a castle BREAK a dragon", "regions": "cols"}, "plain"),
    "plain n=4": ({"prompt": "a red fox", "n": 4}, None),
    "wildcards n=4": ({"prompt": "a {red|green|blue} fox", "n": 4}, "plain n=4"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, a diffusers folder or a Hub id in the cache")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    device, dtype = resolve_device("auto"), resolve_dtype("auto", resolve_device("auto"))
    work = Path(tempfile.mkdtemp(prefix="sdbot-bench-"))
    cache = ModelCache(ModelRegistry([ModelEntry(source=args.model)]), work / "models", device, dtype)
    engine = Engine(cache, LocalBlobStore(work / "blobs"))
    model = cache.registry.default.display_name

    def spec(changes: dict) -> GenerationSpec:  # type: ignore[type-arg]
        base = {
            "kind": "txt2img",
            "model": model,
            "width": args.size,
            "height": args.size,
            "steps": args.steps,
            "cfg": 7.0,
            "sampler": "Euler",
            "seed": 1,
        }
        return GenerationSpec(**{**base, **changes})

    def run(changes: dict) -> float:  # type: ignore[type-arg]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run_job(engine, spec(changes))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for changes, _ in VARIANTS.values():
        run(changes)  # load, warm up
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, (changes, _) in VARIANTS.items():
            times[name].append(run(changes))

    print(f"model {model}, {args.size}x{args.size}, {args.steps} steps, Euler, {device} {dtype}, {args.rounds} rounds")
    for name, (_, baseline) in VARIANTS.items():
        median = statistics.median(times[name])
        line = f"{name:18s} {median:8.3f} s"
        if baseline is not None:
            line += f"   x{median / statistics.median(times[baseline]):.2f} of {baseline}"
        print(line)


if __name__ == "__main__":
    main()
