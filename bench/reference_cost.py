#!/usr/bin/env python3
"""What image references and /edit cost, in one run, against baselines in the same process.

1. References (IP-Adapter, on the tiny SD model): a job with `--sref`, and with `--sref` and
   `--oref`, against the same job without; `--sref` of a 4-picture moodboard (their mean
   embedding) against one picture's; and the IP-Adapter kept loaded (the ControlNets' LRU)
   against loading it for every job (an engine that forgets it after each job). On tiny-flux: a job
   with `--oref` drawn by FLUX.1's IP-Adapter and by Redux, against the same job without.
2. Per edit model (FLUX.1 Kontext, FLUX.2 Klein, Qwen-Image-Edit-Plus): an edit of one picture, and
   of two and four where the model takes them, against a job drawn from the prompt alone on the same
   model, size and steps: the pictures' VAE encoding and their tokens beside the drawing's on every step.
3. The edit pipeline kept with its model (built once from the loaded weights) against building it
   for every job: the price of `from_components`, and for Qwen-Image-Edit-Plus of reading its
   processor from disk.

On the built-in tiny models (random weights, CPU-sized); real sizes belong to a GPU run with real
files. Qwen-Image-Edit-Plus reads each picture at 1024² through its VAE whatever the edit's size,
so on the tiny model its ratios are far above the others'.

    python bench/reference_cost.py
    python bench/reference_cost.py --size 128 --steps 8 --rounds 5
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
from generation.engine import Engine  # noqa: E402
from generation.jobs import run_job  # noqa: E402
from generation.models.loader import ModelCache, resolve_device, resolve_dtype  # noqa: E402
from generation.spec import GenerationSpec, ReferenceRef  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402

MODELS = {"tiny-kontext": (1,), "tiny-flux2": (1, 2, 4), "tiny-qwen-edit-plus": (1, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    device = resolve_device("auto")
    dtype = resolve_dtype("auto", device)
    work = Path(tempfile.mkdtemp(prefix="sdbot-bench-"))
    registry = ModelRegistry([ModelEntry(source=model) for model in MODELS])
    blobs = LocalBlobStore(work / "blobs")
    engine = Engine(ModelCache(registry, work / "models", device, dtype, max_loaded=len(MODELS)), blobs)

    keys = []
    for i in range(4):
        picture = Image.new("RGB", (args.size, args.size), (60 * i, 200 - 40 * i, 120))
        ImageDraw.Draw(picture).ellipse(
            (args.size // 8, args.size // 8, args.size * 5 // 8, args.size * 7 // 8), outline=(20, 20, 20), width=3
        )
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        keys.append(blobs.put(buffer.getvalue(), "png"))

    def spec(model: str, pictures: int) -> GenerationSpec:
        entry = registry.get(model)
        assert entry is not None
        edit = {"kind": "instruct", "init_image": keys[0], "edit_images": tuple(keys[1:pictures]), "operation": "Edit"} if pictures else {}
        return GenerationSpec(
            **{"kind": "txt2img", **edit},
            prompt="make it winter",
            model=model,
            family=entry.family,
            width=args.size,
            height=args.size,
            steps=args.steps,
            cfg=4.0,
            sampler="Euler",
            seed=1,
        )

    timed = timer(device)

    median = statistics.median
    print(f"{args.size}x{args.size}, {args.steps} steps, {device} {dtype}, {args.rounds} rounds (median)")
    references(args, device, dtype, work, blobs, keys, timed)
    flux_references(args, device, dtype, work, blobs, keys, timed)
    print("tiny edit models:")
    for model, counts in MODELS.items():
        for pictures in (0, *counts):  # load the model, build the edit pipeline, warm up
            run_job(engine, spec(model, pictures))
        plain = median(timed(lambda: run_job(engine, spec(model, 0))) for _ in range(args.rounds))  # noqa: B023
        print(f"{model}: drawn from the prompt {plain:8.3f} s")
        for pictures in counts:
            seconds = median(timed(lambda: run_job(engine, spec(model, pictures))) for _ in range(args.rounds))  # noqa: B023
            print(f"  edit with {pictures} picture{'s' if pictures > 1 else ' '}    {seconds:8.3f} s   x{seconds / plain:.2f} of drawn")
        loaded = engine.models.get(model)
        kept = median(timed(lambda: loaded.pipeline("edit")) for _ in range(args.rounds))  # noqa: B023

        def rebuilt() -> None:
            loaded._pipes.pop("edit", None)  # noqa: B023 - called at once
            loaded.pipeline("edit")  # noqa: B023

        fresh = median(timed(rebuilt) for _ in range(args.rounds))
        print(f"  edit pipeline: kept {kept * 1000:8.3f} ms, built per job {fresh * 1000:8.1f} ms ({fresh / plain:.1%} of a drawn job)")


def references(args, device, dtype, work, blobs, keys, timed) -> None:  # type: ignore[no-untyped-def]
    """Section 1 (module docstring), on the tiny SD model and its built-in IP-Adapter."""
    registry = ModelRegistry([ModelEntry(source="tiny")])
    engine = Engine(ModelCache(registry, work / "models", device, dtype), blobs)

    def spec(*refs: ReferenceRef) -> GenerationSpec:
        return GenerationSpec(
            kind="txt2img", prompt="a red fox in the snow", model="tiny", width=args.size, height=args.size,
            steps=args.steps, cfg=7.0, sampler="Euler", seed=1, references=refs,
        )  # fmt: skip

    style = ReferenceRef(kind="style", images=(keys[1],), adapter="tiny")
    subject = ReferenceRef(kind="subject", images=(keys[2],), adapter="tiny")
    board = ReferenceRef(kind="style", images=tuple(keys), adapter="tiny")  # a moodboard of 4: their mean embedding
    for job in (spec(), spec(style), spec(style, subject), spec(board)):  # load the model and the adapter, warm up
        run_job(engine, job)

    def forgetting() -> None:
        engine.controlnets._loaded.clear()  # noqa: SLF001 - the baseline: no adapter kept between jobs
        engine.controlnets._bytes.clear()
        run_job(engine, spec(style))

    median = statistics.median
    plain = median(timed(lambda: run_job(engine, spec())) for _ in range(args.rounds))
    one = median(timed(lambda: run_job(engine, spec(style))) for _ in range(args.rounds))
    two = median(timed(lambda: run_job(engine, spec(style, subject))) for _ in range(args.rounds))
    boarded = median(timed(lambda: run_job(engine, spec(board))) for _ in range(args.rounds))
    reloading = median(timed(forgetting) for _ in range(args.rounds))
    print("tiny SD model, IP-Adapter references:")
    print(f"  job without a reference        {plain:8.3f} s")
    print(f"  job with --sref                {one:8.3f} s   x{one / plain:.2f} of without")
    print(f"  job with --sref and --oref     {two:8.3f} s   x{two / plain:.2f} of without")
    print(f"  --sref of a 4-picture board    {boarded:8.3f} s   x{boarded / one:.2f} of one picture's")
    print(f"  --sref, adapter loaded per job {reloading:8.3f} s   x{reloading / one:.2f} of kept")


def flux_references(args, device, dtype, work, blobs, keys, timed) -> None:  # type: ignore[no-untyped-def]
    """Section 1 on tiny-flux: --oref through the built-in tiny IP-Adapter and Redux."""
    engine = Engine(ModelCache(ModelRegistry([ModelEntry(source="tiny-flux")]), work / "models", device, dtype), blobs)

    def spec(*refs: ReferenceRef) -> GenerationSpec:
        return GenerationSpec(
            kind="txt2img", prompt="a red fox in the snow", model="tiny-flux", family="flux", width=args.size, height=args.size,
            steps=args.steps, cfg=3.5, sampler="Euler", seed=1, references=refs,
        )  # fmt: skip

    methods = {"IP-Adapter": ("tiny-flux-ip-adapter", "flux-ip-adapter"), "Redux": ("tiny-flux-redux", "redux")}
    oref = {label: ReferenceRef(kind="subject", images=(keys[2],), adapter=a, method=m) for label, (a, m) in methods.items()}
    for job in (spec(), *(spec(ref) for ref in oref.values())):  # load the model and the adapters, warm up
        run_job(engine, job)
    plain = statistics.median(timed(lambda: run_job(engine, spec())) for _ in range(args.rounds))
    print("tiny-flux, FLUX.1 references:")
    print(f"  job without a reference        {plain:8.3f} s")
    for label, ref in oref.items():
        seconds = statistics.median(timed(lambda: run_job(engine, spec(ref))) for _ in range(args.rounds))  # noqa: B023
        print(f"  --oref by {label:<21}{seconds:8.3f} s   x{seconds / plain:.2f} of without")


if __name__ == "__main__":
    main()
