#!/usr/bin/env python3
"""What users' LoRAs cost, in one run, against baselines in the same process.

1. A job with a cached LoRA (loaded by an earlier job, switched on with `set_adapters`) against
   the same job without one: the per-step cost of the adapter layers.
2. Switching between two cached LoRAs on alternate jobs, against the same jobs on an engine whose
   LoRA budget is 0 bytes, which loads the file again for every job (the base model stays loaded
   in both, so this isolates the adapter loading).

The LoRAs are random peft LoRAs (rank 4 by default) on the UNet attention and the text encoder,
made by the script and saved in kohya's naming, as users upload them.

    python bench/lora_cost.py                  # tiny model on this machine's device
    python bench/lora_cost.py --size 128 --steps 8 --rounds 5
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
from safetensors.torch import save  # noqa: E402

from config import ModelEntry, ModelRegistry  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.jobs import run_job  # noqa: E402
from generation.models.loader import ModelCache, resolve_device, resolve_dtype  # noqa: E402
from generation.models.tiny import build_tiny_pipeline  # noqa: E402
from generation.spec import AssetRef, GenerationSpec  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402


def kohya_lora(seed: int, rank: int) -> bytes:
    from diffusers.utils import convert_state_dict_to_kohya
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = build_tiny_pipeline()
    torch.manual_seed(seed)
    config = dict(r=rank, lora_alpha=rank, init_lora_weights=False)
    pipe.unet.add_adapter(LoraConfig(target_modules=["to_q", "to_k", "to_v", "to_out.0"], **config))
    pipe.text_encoder.add_adapter(LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "out_proj"], **config))
    layers = {
        **{f"unet.{k}": v for k, v in get_peft_model_state_dict(pipe.unet).items()},
        **{f"text_encoder.{k}": v for k, v in get_peft_model_state_dict(pipe.text_encoder).items()},
    }
    return save({k: v.contiguous() for k, v in convert_state_dict_to_kohya(layers).items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    device = resolve_device("auto")
    dtype = resolve_dtype("auto", device)
    work = Path(tempfile.mkdtemp(prefix="sdbot-bench-"))
    registry = ModelRegistry([ModelEntry(source="tiny")])
    cache = ModelCache(registry, work / "models", device, dtype)
    blobs = LocalBlobStore(work / "blobs")
    refs = []
    for name, seed in (("one", 1), ("two", 2)):
        key = blobs.put(kohya_lora(seed, args.rank), "st")
        refs.append(AssetRef(name=name, blob=key, sha256=key.split(".")[0], format="kohya", weight=0.8))

    def spec(*loras: AssetRef) -> GenerationSpec:
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
            loras=loras,
        )

    def timed(engine: Engine, job: GenerationSpec) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run_job(engine, job)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    engine = Engine(cache, blobs)
    # The baseline that reloads: its own copy of the base model, and a LoRA budget of 0 bytes, so
    # every job's LoRA is dropped before the next one loads its file again.
    reloader = Engine(ModelCache(registry, work / "models", device, dtype), blobs, adapter_budget_bytes=0)
    for job in (spec(), spec(refs[0]), spec(refs[1])):
        timed(engine, job)  # load the model and both LoRAs, warm up
        timed(reloader, job)
    plain, cached, switching, reloading = [], [], [], []
    for round_ in range(args.rounds):
        plain.append(timed(engine, spec()))
        cached.append(timed(engine, spec(refs[0])))
        switching.append(timed(engine, spec(refs[round_ % 2])))
        reloading.append(timed(reloader, spec(refs[round_ % 2])))

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"tiny model, {args.size}x{args.size}, {args.steps} steps, LoRA rank {args.rank}, {device} {dtype}, {args.rounds} rounds (median)"
    )
    print(f"job without a LoRA           {median(plain):8.3f} s")
    print(f"job with a cached LoRA       {median(cached):8.3f} s   x{median(cached) / median(plain):.2f} of without")
    print(f"switching two cached LoRAs   {median(switching):8.3f} s   x{median(switching) / median(plain):.2f} of without")
    print(f"loading the LoRA every job   {median(reloading):8.3f} s   x{median(reloading) / median(switching):.2f} of switching")
    print(
        f"adapter loads: cached engine {engine.adapters.loads} (hits {engine.adapters.hits}), "
        f"reloading engine {reloader.adapters.loads} (hits {reloader.adapters.hits})"
    )


if __name__ == "__main__":
    main()
