#!/usr/bin/env python3
"""What ControlNet costs, in one run, against baselines in the same process.

1. A job steered by one ControlNet (canny), and by two (canny + scribble), against the same job
   without a control: the ControlNet's forward passes on every step.
2. Preprocessing time per map type at the job's size: canny, scribble_xdog, tile_resample and qr
   (OpenCV / segno), and depth and the controlnet-aux annotators where `--depth-model` and
   `--annotators` name files (skipped otherwise, and said so).
3. Switching between two ControlNets on alternate jobs, with both kept loaded (the LRU), against
   the same jobs on an engine whose ControlNet budget is 0 bytes, which loads the ControlNet again
   for every job (the base model stays loaded in both, so this isolates the ControlNet loading).

On the tiny model and its built-in tiny ControlNets by default; `--model` / `--controlnet-dir`
are not offered: real sizes belong to a GPU run with real files (see the README).

    python bench/control_cost.py
    python bench/control_cost.py --size 128 --steps 8 --rounds 5 --annotators /models/Annotators
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw  # noqa: E402

from bench.clock import timer  # noqa: E402
from config import ModelEntry, ModelRegistry  # noqa: E402
from generation.control.nets import ControlNets  # noqa: E402
from generation.control.preprocess import make_map  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.jobs import run_job  # noqa: E402
from generation.models.loader import ModelCache, resolve_device, resolve_dtype  # noqa: E402
from generation.spec import ControlRef, GenerationSpec  # noqa: E402
from generation.tools import Tools  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402

NETWORK_PREPROCESSORS = (
    ("depth", "depth"),
    ("openpose", "openpose_full"),
    ("lineart", "lineart_realistic"),
    ("softedge", "softedge_hed"),
    ("softedge", "softedge_pidinet"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--depth-model", default=None, help="a depth model folder, to time the depth preprocessor")
    parser.add_argument("--annotators", type=Path, default=None, help="lllyasviel/Annotators files, to time openpose, lineart, softedge")
    args = parser.parse_args()

    device = resolve_device("auto")
    dtype = resolve_dtype("auto", device)
    work = Path(tempfile.mkdtemp(prefix="sdbot-bench-"))
    registry = ModelRegistry([ModelEntry(source="tiny")])
    blobs = LocalBlobStore(work / "blobs")
    tools = Tools(device=device, dtype=dtype, depth_model=args.depth_model, annotators=args.annotators)
    engine = Engine(ModelCache(registry, work / "models", device, dtype), blobs, tools)
    # The baseline that reloads: its own base model, and a ControlNet budget of 0 bytes, so each
    # job's ControlNet replaces the last one and is read from disk again.
    reloader = Engine(
        ModelCache(registry, work / "models", device, dtype),
        blobs,
        controlnets=ControlNets({}, work / "models", device, dtype, budget_bytes=0),
    )

    picture = Image.new("RGB", (args.size, args.size), (210, 200, 180))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((args.size // 8, args.size // 8, args.size * 5 // 8, args.size * 7 // 8), outline=(20, 20, 20), width=3)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    key = blobs.put(buffer.getvalue(), "png")

    def unit(type_: str, preprocessor: str, weight: float = 1.0) -> ControlRef:
        return ControlRef(type=type_, model=f"tiny-{type_}", preprocessor=preprocessor, image=key, weight=weight)  # type: ignore[arg-type]

    def spec(*controls: ControlRef) -> GenerationSpec:
        return GenerationSpec(
            kind="txt2img",
            prompt="a red fox in the snow",
            model="tiny",
            width=args.size,
            height=args.size,
            steps=args.steps,
            cfg=7.0,
            sampler="Euler",
            seed=1,
            controls=controls,
        )

    timed = timer(device)

    canny, scribble = unit("canny", "canny"), unit("scribble", "scribble_xdog", 0.5)
    for job in (spec(), spec(canny), spec(canny, scribble)):  # load the model and both ControlNets, warm up
        run_job(engine, job)
        run_job(reloader, job)
    plain, one, two, switching, reloading = [], [], [], [], []
    for round_ in range(args.rounds):
        plain.append(timed(lambda: run_job(engine, spec())))
        one.append(timed(lambda: run_job(engine, spec(canny))))
        two.append(timed(lambda: run_job(engine, spec(canny, scribble))))
        alternate = canny if round_ % 2 else unit("scribble", "scribble_xdog")
        switching.append(timed(lambda: run_job(engine, spec(alternate))))  # noqa: B023 - called at once
        reloading.append(timed(lambda: run_job(reloader, spec(alternate))))  # noqa: B023

    median = statistics.median
    print(f"tiny model, {args.size}x{args.size}, {args.steps} steps, {device} {dtype}, {args.rounds} rounds (median)")
    print(f"job without a control          {median(plain):8.3f} s")
    print(f"job with one ControlNet        {median(one):8.3f} s   x{median(one) / median(plain):.2f} of without")
    print(f"job with two ControlNets       {median(two):8.3f} s   x{median(two) / median(plain):.2f} of without")
    print(f"switching two kept ControlNets {median(switching):8.3f} s   x{median(switching) / median(plain):.2f} of without")
    print(f"loading the ControlNet per job {median(reloading):8.3f} s   x{median(reloading) / median(switching):.2f} of switching")
    print(f"ControlNet loads: kept {engine.controlnets.loads}, reloading {reloader.controlnets.loads}")

    size = (args.size, args.size)
    builtin = [
        unit("canny", "canny"),
        unit("scribble", "scribble_xdog"),
        unit("tile", "tile_resample"),
        ControlRef(type="qr", model="tiny-qr", preprocessor="qr", text="https://example.com"),
    ]
    network = [unit(t, p) for t, p in NETWORK_PREPROCESSORS if (args.depth_model if p == "depth" else args.annotators)]
    print(f"preprocessing at {args.size}x{args.size} (median of {args.rounds}, after a first call that loads the model):")
    for ref in [*builtin, *network]:
        make_map(engine, ref, size)
        seconds = median(timed(lambda: make_map(engine, ref, size)) for _ in range(args.rounds))  # noqa: B023
        print(f"  {ref.preprocessor:18} {seconds * 1000:8.1f} ms")
    skipped = [p for _, p in NETWORK_PREPROCESSORS if not (args.depth_model if p == "depth" else args.annotators)]
    if skipped:
        print(f"  not timed (give --depth-model / --annotators): {', '.join(skipped)}")


if __name__ == "__main__":
    main()
