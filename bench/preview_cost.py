#!/usr/bin/env python3
"""What live previews cost a job, in one run: the same jobs with previews off, linear and taesd
(a tiny random `AutoencoderTiny` of TAESD's real shape, made here), on one engine per mode sharing
the loaded model. Jobs alternate between the modes round by round, so drift (a busy machine, a
warming GPU) hits them alike; the median of each is compared with off's. Previews are made at
SDBOT_PREVIEW_SECONDS (1.5 by default; `--every`), the job's own pace decides how many.

    python bench/preview_cost.py                        # tiny model, this machine's device
    python bench/preview_cost.py --size 256 --steps 30 --rounds 5 --every 0.5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.clock import timer  # noqa: E402
from config import ModelEntry, ModelRegistry  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.imaging.previews import Previewer  # noqa: E402
from generation.jobs import run_job  # noqa: E402
from generation.models.loader import ModelCache, resolve_device, resolve_dtype  # noqa: E402
from generation.models.tiny import ensure_tiny  # noqa: E402
from generation.spec import GenerationSpec  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402


def taesd_folder(folder: Path) -> Path:
    """A random AutoencoderTiny with TAESD's real layout (64 channels, 3 blocks a stage): the
    decode costs what a real TAESD's does; its pictures are noise."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny().save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--every", type=float, default=1.5, help="SDBOT_PREVIEW_SECONDS")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    work = Path(tempfile.mkdtemp(prefix="sdbot-preview-bench-"))
    ensure_tiny(work / "models")
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), work / "models", device, dtype)
    blobs = LocalBlobStore(work / "blobs")
    tiny_vae = taesd_folder(work / "taesd")
    engines = {
        mode: Engine(cache, blobs, previews=Previewer(mode, args.every, {"sd1": tiny_vae}, device=device, dtype=dtype))  # type: ignore[arg-type]
        for mode in ("off", "linear", "taesd")
    }
    spec = GenerationSpec(
        kind="txt2img",
        prompt="a red fox",
        model="tiny",
        width=args.size,
        height=args.size,
        steps=args.steps,
        cfg=7.0,
        sampler="Euler",
        seed=1,
    )
    timed = timer(device)
    times: dict[str, list[float]] = {mode: [] for mode in engines}
    spent: dict[str, list[float]] = {mode: [] for mode in engines}  # seconds inside the previews, a job
    shown: dict[str, list[int]] = {mode: [] for mode in engines}
    for mode, engine in engines.items():
        _clocked(engine.previews, spent[mode], timed)
        with engine.previews.showing(lambda data: None):  # warm up: the model, the tiny autoencoder, the first preview
            run_job(engine, spec.evolve(steps=2))
        spent[mode].clear()
    modes = list(engines)
    for round_ in range(args.rounds):
        for mode in modes[round_ % 3 :] + modes[: round_ % 3]:  # each mode first in turn: drift hits them alike
            engine, sizes, before = engines[mode], [], len(spent[mode])
            with engine.previews.showing(lambda data, sizes=sizes: sizes.append(len(data))):  # type: ignore[misc]
                times[mode].append(timed(lambda engine=engine: run_job(engine, spec)))  # type: ignore[misc]
            spent[mode][before:] = [sum(spent[mode][before:])]
            shown[mode] += sizes
    off = statistics.median(times["off"])
    print(
        f"tiny model on {device}, {args.size}x{args.size}, {args.steps} steps, a preview at most every {args.every} s, {args.rounds} rounds"
    )
    print("  (share: the seconds spent making previews over the job's seconds, job by job: what --every costs, free of")
    print("   the machine's noise; wall: the median job against previews off, in the same run)")
    for mode in engines:
        median = statistics.median(times[mode])
        share = statistics.median(s / t for s, t in zip(spent[mode], times[mode], strict=True))
        previews = len(shown[mode]) / args.rounds
        size = f", {statistics.mean(shown[mode]) / 1024:.1f} KiB each" if shown[mode] else ""
        print(
            f"previews {mode:<7} share {share:6.2%}   wall {median:7.3f} s (x{median / off:.3f} of off)   "
            f"{previews:.1f} previews a job{size}"
        )


def _clocked(previewer: Previewer, spent: list[float], timed: Callable[[Callable[[], object]], float]) -> None:
    """Count the seconds `previewer` spends making previews into `spent` (one entry a preview)."""
    make = previewer.make

    def clocked(*args: Any, **kwargs: Any) -> bytes | None:
        result: list[bytes | None] = []
        spent.append(timed(lambda: result.append(make(*args, **kwargs))))
        return result[0]

    previewer.make = clocked  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
