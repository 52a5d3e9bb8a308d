#!/usr/bin/env python3
"""What training costs, in one run, against baselines in the same process: the tiny model on
CPU, a LoRA at 64 px, rank 4 (+ the text encoder's), batch 1, 4 deterministic pictures (those
of tests/support/train_pictures.py). A step's time is the median interval between steps' ends
(`Hooks.progress` timestamps for the bot), so set-up, the held-out loss, the export and the
last sample are left out; each figure is the median over the rounds.

1. Steps/s through the bot (`trainer.train`, no checkpoint, no samples) against a bare diffusers
   + peft loop written here with the same settings (train_text_to_image_lora's recipe: the same
   targets, DDPMScheduler, latents encoded once, at the bot's buckets, MSE, AdamW, clipping at
   1.0, constant rate). bot/bare is the ratio of step times: 1.00 = same speed, above 1 = the
   bot's step is that much slower, below 1 faster (noise, at a few %). Per step the bot also looks up the step's bucket batch, seeds
   a generator from (seed, step), samples the latents from their cached mean and std, tokenizes
   the captions (the bare loop once), records the loss and writes the progress note.
2. A checkpoint: the same run with checkpoint_every=1 and a hook writing to a LocalBlobStore
   (fsync included): `Run.state_bytes` (timed from the step's progress call to the hook) + the
   write, in ms and in steps; cross-checked by the step-time difference; and its size.
3. A drawing job's arrival to the run yielding: `should_yield` turns True at a recorded moment
   (at a step boundary, on the 10th progress call; then from a timer thread, mid-step) until
   `TrainingYielded` comes out of `trainer.train` (rest of the step, the checkpoint, removing the
   adapter). A real worker's heartbeat (`SDBOT_PROGRESS_SECONDS`, default 1 s) must first
   notice the waiting job: printed apart, not slept.

    .venv/bin/python bench/train_cost.py
    .venv/bin/python bench/train_cost.py --steps 60 --rounds 5 --threads 4
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from config import ModelEntry, ModelRegistry  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.models.loader import ModelCache  # noqa: E402
from generation.models.tiny import ensure_tiny  # noqa: E402
from generation.training import buckets, export, trainer  # noqa: E402
from generation.training.spec import TrainImage, TrainingSpec  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402


def picture_bytes(count: int = 4, seed: int = 5) -> list[bytes]:
    """tests/support/train_pictures.py's pictures: a gradient and noise, 64x64, 48x64, 64x48, 56x64."""
    rng, out = np.random.default_rng(seed), []
    for i, (width, height) in enumerate(((64, 64), (48, 64), (64, 48), (56, 64))[:count]):
        gradient = np.linspace(0, 255, width)[None, :, None] * np.array([1.0, 0.5, 0.2]) * (i + 1) / count
        buffer = io.BytesIO()
        Image.fromarray(np.clip(gradient + rng.normal(0, 30, (height, width, 3)), 0, 255).astype("uint8")).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def per_step(stamps: list[float]) -> float:
    """The median time between consecutive steps' ends (robust to a busy machine's hiccups)."""
    return statistics.median(np.diff(stamps))


def bare_loop(models: Path, pictures: list[Image.Image], captions: list[str], spec: TrainingSpec):  # type: ignore[no-untyped-def]
    """The diffusers recipe on a freshly loaded tiny pipeline; returns run(steps) -> timestamps."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig

    pipe = StableDiffusionPipeline.from_pretrained(str(ensure_tiny(models)), safety_checker=None)
    unet, text_encoder, vae, tokenizer = pipe.unet, pipe.text_encoder, pipe.vae, pipe.tokenizer
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    for module in (unet, text_encoder, vae):
        module.requires_grad_(False)
    torch.manual_seed(spec.seed)
    config = {"r": spec.rank, "lora_alpha": spec.alpha, "init_lora_weights": "gaussian"}
    unet.add_adapter(LoraConfig(target_modules=["to_k", "to_q", "to_v", "to_out.0"], **config))
    text_encoder.add_adapter(LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "out_proj"], **config))
    params = [p for module in (unet, text_encoder) for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=1e-2)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer)
    choices = buckets.buckets(spec.resolution)
    latents, ids = [], []
    with torch.no_grad():
        for picture, caption in zip(pictures, captions, strict=True):
            fitted = buckets.fit(picture, buckets.nearest_bucket(picture.width, picture.height, choices))
            pixels = torch.from_numpy(np.asarray(fitted, dtype="float32") / 127.5 - 1).permute(2, 0, 1)[None]
            latents.append(vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor)
            ids.append(
                tokenizer(
                    caption, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
                ).input_ids
            )
    for module in (unet, text_encoder):
        module.train()
    total = noise_scheduler.config.num_train_timesteps

    def run(steps: int) -> list[float]:
        stamps = []
        for step in range(steps):
            i = step % len(latents)
            noise = torch.randn_like(latents[i])
            timesteps = torch.randint(0, total, (1,))
            noisy = noise_scheduler.add_noise(latents[i], noise, timesteps)
            predicted = unet(noisy, timesteps, text_encoder(ids[i])[0]).sample
            loss = torch.nn.functional.mse_loss(predicted.float(), noise.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()
            stamps.append(time.perf_counter())
        return stamps

    return run, sum(p.numel() for p in params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--yield-trials", type=int, default=3, help="timer trials after the step-boundary one")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="sdbot-bench-"))
    models = work / "models"
    engine = Engine(
        ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models, torch.device("cpu"), torch.float32), LocalBlobStore(work / "blobs")
    )
    checkpoints: list[LocalBlobStore] = []  # a fresh store per run: runs repeat bit for bit, and equal blobs are not written again
    datas = picture_bytes(4)
    pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in datas]
    images = [
        TrainImage(blob=engine.blobs.put(data, "png"), width=picture.width, height=picture.height, filename=f"{i}.png")
        for i, (data, picture) in enumerate(zip(datas, pictures, strict=True))
    ]
    captions = ["foxy"] * 4

    def spec(steps: int, checkpoint_every: int) -> TrainingSpec:
        return TrainingSpec(
            method="lora",
            name="foxy",
            model="tiny",
            images=tuple(images),
            trigger="foxy",
            steps=steps,
            rank=4,
            alpha=4,
            lr=1e-4,
            resolution=64,
            batch=1,
            seed=3,
            text_encoder=True,
            sample_every=0,
            sample_steps=1,
            checkpoint_every=checkpoint_every,
        )

    puts: list[float] = []
    states: list[float] = []  # from the step's progress call to the hook: `Run.state_bytes`
    last: list[bytes] = []
    progress_at = [0.0]

    def write(step: int, data: bytes, losses: list[list[float]]) -> None:
        start = time.perf_counter()
        states.append(start - progress_at[0])
        checkpoints[0].put(data, "ckpt")
        puts.append(time.perf_counter() - start)
        last[:] = [data]

    def bot(steps: int, checkpoint_every: int, progress=None, **hooks) -> list[float]:  # type: ignore[no-untyped-def]
        run, stamps = spec(steps, checkpoint_every), []
        checkpoints[:] = [LocalBlobStore(Path(tempfile.mkdtemp(dir=work)))]

        def on_progress(step: int, total: int, note: str) -> None:
            stamps.append(time.perf_counter())
            progress_at[0] = stamps[-1]
            if progress:
                progress(step)

        def export_file(learned: trainer.Learned) -> bytes:
            metadata = export.training_metadata(
                run, architecture="sd1", captions=learned.captions, steps_done=learned.steps_done, loss=learned.loss, base_model_name="tiny"
            )
            return export.adapter_file(learned.components, trainer.ADAPTER, "lora", metadata, sdxl=False)

        hooks = trainer.Hooks(progress=on_progress, **{"checkpoint": write, **hooks})
        trainer.train(engine, run, hooks, captions=captions, export=export_file)
        return stamps

    bare, trained = bare_loop(models, pictures, captions, spec(args.steps, args.steps + 1))
    bot(3, 4)  # load the model, warm up
    bare(3)
    plain, checkpointed, baseline = [], [], []
    for _ in range(args.rounds):
        plain.append(per_step(bot(args.steps, args.steps + 1)))
        baseline.append(per_step(bare(args.steps)))
        puts.clear()
        states.clear()
        checkpointed.append(per_step(bot(args.steps, 1)))
    step_bot, step_bare, step_ckpt = (statistics.median(v) for v in (plain, baseline, checkpointed))
    checkpoint_ms, put_ms, state_ms = ((step_ckpt - step_bot) * 1000, *(statistics.median(v) * 1000 for v in (puts, states)))
    state = torch.load(io.BytesIO(last[0]), weights_only=True)
    size, bot_params = len(last[0]), sum(v.numel() for v in state["params"].values())

    def yield_trial(trial: int) -> dict[str, float]:
        # trial 0: the flag set on the 10th progress call (a step boundary); then by a timer, at spread phases of a step
        flag, moments = threading.Event(), {}

        def arrive() -> None:
            moments["set"] = time.perf_counter()
            flag.set()

        def progress(step: int) -> None:
            if trial == 0 and step == 10:
                arrive()
            elif trial and step == 1:
                threading.Timer(1.0 + step_bot * trial / (args.yield_trials + 1), arrive).start()

        def checkpoint(step: int, data: bytes, losses: list[list[float]]) -> None:
            moments["checkpoint"] = time.perf_counter()  # state_bytes done, the write starts
            write(step, data, losses)
            moments["written"] = time.perf_counter()

        try:
            bot(100_000, 100_001, progress, should_yield=flag.is_set, checkpoint=checkpoint)
            raise SystemExit("the run did not yield")
        except trainer.TrainingYielded:
            moments["out"] = time.perf_counter()
        return moments

    yields = [yield_trial(trial) for trial in range(args.yield_trials + 1)]
    shutil.rmtree(work, ignore_errors=True)  # about 25 MB of checkpoints per round

    print(
        f"tiny model, 64x64, LoRA rank 4 (+ text encoder), batch 1, 4 pictures, cpu float32, {args.threads} thread(s), "
        f"{args.steps} steps x {args.rounds} rounds (median)"
    )
    print(f"trainable parameters: bot {bot_params}, bare loop {trained}")
    print(f"bare diffusers+peft loop   {step_bare * 1000:8.1f} ms/step  {1 / step_bare:6.1f} steps/s")
    print(f"through the bot            {step_bot * 1000:8.1f} ms/step  {1 / step_bot:6.1f} steps/s   x{step_bot / step_bare:.2f} of bare")
    print(
        f"bot, checkpoint every step {step_ckpt * 1000:8.1f} ms/step  {1 / step_ckpt:6.1f} steps/s   x{step_ckpt / step_bot:.2f} of no checkpoint"
    )
    print(
        f"one checkpoint             {state_ms + put_ms:8.1f} ms = {(state_ms + put_ms) / 1000 / step_bot:.2f} steps  (state_bytes "
        f"{state_ms:.1f} ms + the write {put_ms:.1f} ms, medians); from the step times {checkpoint_ms:.1f} ms"
    )
    print(f"checkpoint size            {size} bytes ({size / 2**10:.0f} KiB: weights, AdamW's two moments, the loss history)")
    print("drawing job arrives -> TrainingYielded out of trainer.train (includes the checkpoint):")
    for trial, m in enumerate(yields):
        total = m["out"] - m["set"]
        where = "at a step boundary" if trial == 0 else f"timer, trial {trial}   "
        print(
            f"  {where}  {total * 1000:7.1f} ms = {total / step_bot:5.2f} steps   (step end + state_bytes "
            f"{(m['checkpoint'] - m['set']) * 1000:.1f} ms, write {(m['written'] - m['checkpoint']) * 1000:.1f} ms, "
            f"tear-down {(m['out'] - m['written']) * 1000:.1f} ms)"
        )
    print("  plus up to progress_seconds (SDBOT_PROGRESS_SECONDS, default 1 s) for the worker's heartbeat to notice the job")


if __name__ == "__main__":
    main()
