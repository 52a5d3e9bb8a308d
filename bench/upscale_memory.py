#!/usr/bin/env python3
"""Peak memory of a tiled super-resolution upscale against an untiled one, same model and image.

The model is ESRGAN (RRDBNet) with random weights, real architecture at reduced width and depth
(32 features, 2 blocks instead of 64 and 23): its activations have the real network's shape,
`num_feat` channels at up to the output resolution, which is what tiling bounds. Each run goes in
its own process (`--child tiled|untiled`), so one run's freed memory cannot hide the other's peak:
the child reads its resident set size right before the upscale and its peak (ru_maxrss) right
after, and on CUDA also `torch.cuda.max_memory_allocated`. The parent prints both runs, the ratio
untiled/tiled, wall times and the largest pixel difference between the two results.

    python bench/upscale_memory.py                              # 1024 px, 4x, 512 px tiles
    python bench/upscale_memory.py --size 512 --tile 256 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1024 * 1024


def current_rss() -> int:
    """Resident set size now, in bytes (Linux: /proc; elsewhere the peak so far, an upper bound)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss()


def peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def resolve_device(setting: str):  # type: ignore[no-untyped-def]
    import torch

    if setting != "auto":
        return torch.device(setting)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from generation.imaging.upscalers import load_upscaler

    device = resolve_device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    upscaler = load_upscaler(args.model, device, dtype)
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (args.size // 32, args.size // 32, 3), dtype=np.uint8))
    noise = rng.normal(0, 20, (args.size, args.size, 3))
    smooth = np.asarray(small.resize((args.size, args.size), Image.Resampling.BICUBIC), dtype=np.float64)
    image = Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))
    del small, noise, smooth
    tile = args.tile if args.child == "tiled" else None
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    cuda_before = torch.cuda.memory_allocated() if cuda else 0
    rss_before, peak_before = current_rss(), peak_rss()
    start = time.perf_counter()
    out = upscaler.upscale(image, args.factor, tile=tile, overlap=args.overlap)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "rss_before": rss_before,
        "peak_before": peak_before,
        "peak": peak_rss(),
        "cuda_before": cuda_before,
        "cuda_peak": torch.cuda.max_memory_allocated() if cuda else None,
        "device": str(device),
        "dtype": str(upscaler.descriptor.dtype).removeprefix("torch."),
        "size": list(out.size),
        "model": f"{upscaler.architecture} {', '.join(upscaler.descriptor.tags)}",
    }
    np.save(args.out, np.asarray(out))  # after the measurement: for the parent's comparison
    print(json.dumps(result))


def run_child(kind: str, model: Path, out: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--model",
        str(model),
        "--out",
        str(out),
        "--size",
        str(args.size),
        "--factor",
        str(args.factor),
        "--tile",
        str(args.tile),
        "--overlap",
        str(args.overlap),
        "--device",
        args.device,
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"{kind} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="input image side, px")
    parser.add_argument("--factor", type=float, default=4)
    parser.add_argument("--tile", type=int, default=512, help="tile side in input px for the tiled run")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-feat", type=int, default=32)
    parser.add_argument("--num-blocks", type=int, default=2)
    parser.add_argument("--child", choices=["tiled", "untiled"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import numpy as np

    from tests.support.sr_models import write_esrgan

    with tempfile.TemporaryDirectory() as tmp:
        model = write_esrgan(Path(tmp) / "bench-esrgan.safetensors", scale=4, num_feat=args.num_feat, num_blocks=args.num_blocks)
        runs = {kind: run_child(kind, model, Path(tmp) / f"{kind}.npy", args) for kind in ("untiled", "tiled")}
        largest = int(np.abs(np.load(Path(tmp) / "tiled.npy").astype(np.int16) - np.load(Path(tmp) / "untiled.npy")).max())

    first = runs["untiled"]
    print(
        f"{args.factor:g}x upscale of {args.size}x{args.size} -> {first['size'][0]}x{first['size'][1]}, {first['model']} "
        f"(random weights), {first['device']} {first['dtype']}; tiled: {args.tile} px tiles, overlap {args.overlap}"
    )
    cuda = first["cuda_peak"] is not None
    header = f"{'run':8s} {'wall s':>8s} {'RSS before MiB':>15s} {'peak RSS MiB':>13s} {'increase MiB':>13s}"
    print(header + (f" {'CUDA peak MiB':>14s} {'CUDA incr MiB':>14s}" if cuda else ""))
    for kind, run in runs.items():
        line = (
            f"{kind:8s} {run['seconds']:8.1f} {run['rss_before'] / MIB:15.0f} {run['peak'] / MIB:13.0f} "
            f"{(run['peak'] - run['rss_before']) / MIB:13.0f}"
        )
        if cuda:
            line += f" {run['cuda_peak'] / MIB:14.0f} {(run['cuda_peak'] - run['cuda_before']) / MIB:14.0f}"
        print(line)
    untiled, tiled = runs["untiled"], runs["tiled"]
    print(
        f"ratio untiled/tiled: peak RSS {untiled['peak'] / tiled['peak']:.2f}, "
        f"increase {(untiled['peak'] - untiled['rss_before']) / max(tiled['peak'] - tiled['rss_before'], 1):.2f}"
        + (f", CUDA peak {untiled['cuda_peak'] / tiled['cuda_peak']:.2f}" if cuda else "")
        + f"; time tiled/untiled {tiled['seconds'] / untiled['seconds']:.2f}"
    )
    print(f"largest pixel difference tiled vs untiled: {largest}/255")
    for kind, run in runs.items():
        if run["peak"] <= run["peak_before"]:  # ru_maxrss is a high-water mark: the upscale stayed below it
            print(f"note: the {kind} upscale never passed the memory peak of its set-up; its increase is an upper bound")


if __name__ == "__main__":
    main()
