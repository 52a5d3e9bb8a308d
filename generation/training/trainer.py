"""The training loop: diffusers' recipes (train_text_to_image_lora.py, train_dreambooth_lora.py,
textual_inversion.py) on the engine's loaded model, with peft adapters, in the engine thread.

One step, as the recipes do it: a batch of one bucket's latents (cached once per run: the VAE's
mean and std per picture, sampled each step), Gaussian noise, uniform timesteps over the
scheduler's training range, `add_noise`; the UNet predicts the noise (or the velocity, for
v-prediction models) and the loss is their MSE, optionally min-SNR weighted (Hang et al.,
`--snr-gamma`), plus the class pictures' loss times `--prior-weight` for DreamBooth. AdamW
(8-bit from bitsandbytes on a GPU when installed), gradient clipping at 1.0, a constant rate.

Exact resumption (a worker killed mid-run, or a run that yields to drawing jobs): everything
random in step k comes from a CPU generator seeded with (seed, k), and the pictures of step k
are a pure function of (seed, k) (`buckets.batch_at`); the checkpoint holds the trainable
weights, the optimizer's and the rate scheduler's state, the step and the loss history. So a
run resumed from its checkpoint at step k computes exactly what the uninterrupted run computes
after step k (bit for bit on CPU, where torch is deterministic).

The run owns the model while it trains: users' LoRAs loaded on it are unloaded first (they load
again on their next job), and the run's own adapter ("sdbot_train") is deleted when it ends,
yields or fails, so no picture job ever sees it.

A hypernetwork is trained as A1111 trains one (`modules/hypernetworks/hypernetwork.py`): a pair of
modules (keys, values) of A1111's default structure for each width the UNet's attention takes
its keys and values from, initialised as its "Normal", applied at multiplier 1 through the same
pre-hooks that apply users' hypernetworks to a job (`generation.assets.hypernetworks.attach`),
with the UNet and the text encoder frozen and the loss of the other methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from generation.assets.hypernetwork_files import A1111_CREATED, A1111_INIT_STD
from generation.assets.hypernetworks import Loaded, attach, attention_widths, build_module
from generation.engine import Engine
from generation.errors import EngineUserError, JobCancelled, TrainingYielded
from generation.training import buckets
from generation.training.conditioning import TextConditioning
from generation.training.dataset import SAMPLE_CFG, class_pictures, images_of, sampling_scheduler
from generation.training.hooks import Hooks
from generation.training.spec import TrainingSpec

ADAPTER = "sdbot_train"
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # diffusers' LoRA recipes
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 1e-2  # diffusers' --adam_weight_decay; embeddings use 0, as A1111
LOSS_POINTS = 50  # about this many points of loss history per run


@dataclass
class Resume:
    step: int
    state: bytes  # a checkpoint from `Run.state_bytes`


@dataclass
class Learned:
    """What a run learned, ready to be exported (generation.training.export)."""

    components: dict[str, torch.nn.Module]  # unet, text_encoder(, text_encoder_2) holding ADAPTER
    vectors: dict[str, torch.Tensor]  # an embedding's vectors per encoder ("clip_l", "clip_g")
    steps_done: int
    loss: float | None
    captions: list[str]
    stopped_early: bool
    losses: list[list[float]] = field(default_factory=list)
    held_out: tuple[float, float] | None = None  # `Run.evaluate` before the first step and after the last
    # a hypernetwork's modules: `<width>.<0 keys|1 values>.<Sequential index>.<weight|bias>` (the
    # stored form's names, generation.assets.hypernetwork_files), float32 on the CPU
    hypernetwork: dict[str, torch.Tensor] = field(default_factory=dict)


def step_generator(seed: int, step: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{step}".encode()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


# --- the run -----------------------------------------------------------------------------------


class Run:
    """One attempt at a run: set up on the loaded model, stepped, checkpointed, torn down."""

    def __init__(self, engine: Engine, spec: TrainingSpec, captions: list[str], class_pictures: list[Image.Image]):
        self.engine, self.spec, self.captions = engine, spec, captions
        self.loaded = engine.models.get(spec.model)
        self.pipe = self.loaded.txt2img
        self.device, self.dtype = engine.models.device, engine.models.dtype
        self.text = TextConditioning(self.pipe, spec, self.device, self.dtype)
        self.xl, self.encoders = self.text.xl, self.text.encoders
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(self.loaded.scheduler_config)
        self.prediction = self.noise_scheduler.config.get("prediction_type", "epsilon")
        pictures = images_of(engine.blobs, spec)
        choices = buckets.buckets(spec.resolution)
        self.bucket_of = [buckets.nearest_bucket(p.width, p.height, choices) for p in pictures]
        self.latents = [self._encode_picture(buckets.fit(p, b)) for p, b in zip(pictures, self.bucket_of, strict=True)]
        square = (spec.resolution, spec.resolution)
        self.class_latents = [self._encode_picture(buckets.fit(p, square)) for p in class_pictures]
        self.losses: list[list[float]] = []
        self._loss_sum, self._loss_count = 0.0, 0
        self.held_out_before = 0.0
        self.params: dict[str, torch.nn.Parameter] = {}
        self.hypernetwork: dict[int, tuple[torch.nn.Sequential, torch.nn.Sequential]] = {}
        self._hypernetwork_hooks: list[Any] = []

    # --- set-up and tear-down --------------------------------------------------------------

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """The run's adapter (or embedding vectors) on the model for the block; the model as it
        was afterwards, whatever happens."""
        self.engine.adapters.unload_all()
        modules = [self.pipe.unet, *self.encoders, self.pipe.vae]
        for module in modules:
            module.requires_grad_(False)
        try:
            with torch.random.fork_rng(devices=[]):  # peft initialises from the global generator
                torch.manual_seed(self.spec.seed)
                self._add_trainables()
            if self.device.type == "cuda":  # memory for speed, as the recipes' --gradient_checkpointing
                self.pipe.unet.enable_gradient_checkpointing()
                for encoder in self.encoders if self.spec.text_encoder else ():
                    encoder.gradient_checkpointing_enable()
            self.pipe.unet.train()
            for encoder in self.encoders:
                encoder.train(self.spec.text_encoder)
            yield
        finally:
            self.text.remove_hooks()
            for handle in self._hypernetwork_hooks:
                handle.remove()
            self._hypernetwork_hooks.clear()
            if self.device.type == "cuda":
                self.pipe.unet.disable_gradient_checkpointing()
                for encoder in self.encoders:
                    if getattr(encoder, "is_gradient_checkpointing", False):
                        encoder.gradient_checkpointing_disable()
            for module in modules:
                module.eval()
            self.remove_adapter()

    def remove_adapter(self) -> None:
        """Delete ADAPTER from every layer that holds it (LoRA, LoHa and LoKr alike) and from the
        modules' peft configs. The emptied peft wrappers stay, as after the LoRA cache evicts."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        for module in (self.pipe.unet, *self.encoders):
            for layer in module.modules():
                if isinstance(layer, BaseTunerLayer) and ADAPTER in layer.scaling:
                    layer.delete_adapter(ADAPTER)
            getattr(module, "peft_config", {}).pop(ADAPTER, None)

    def _add_trainables(self) -> None:
        spec = self.spec
        if spec.method == "embedding":
            self.params = self.text.add_vectors()
            return
        if spec.method == "hypernetwork":
            self.params = self._add_hypernetwork()
            return
        targets = [(self.pipe.unet, "unet", UNET_TARGETS)]
        if spec.text_encoder:
            targets += [
                (encoder, name, TEXT_TARGETS) for encoder, name in zip(self.encoders, ("text_encoder", "text_encoder_2"), strict=False)
            ]
        for module, name, target_modules in targets:
            inject(module, spec.method, spec.rank, spec.alpha, target_modules)
            activate(module)
            for path, parameter in module.named_parameters():
                if ADAPTER in path.split("."):
                    parameter.data = parameter.data.float()  # trainable weights in fp32 (the recipes' cast_training_params)
                    parameter.requires_grad_(True)
                    self.params[f"{name}.{path}"] = parameter
        if not self.params:
            raise EngineUserError(f"the model `{spec.model}` has no layers a {spec.method} can train.")

    def _add_hypernetwork(self) -> dict[str, torch.nn.Parameter]:
        """A1111's new hypernetwork for this UNet (its "Normal" init from the seeded global
        generator), hooked into every attention at multiplier 1, in float32 as A1111 trains it."""
        widths = attention_widths(self.pipe.unet)
        if not widths:
            raise EngineUserError(f"the model `{self.spec.model}` has no attention layers a hypernetwork can change.")
        for width in widths:
            pair = []
            for _ in (0, 1):
                module = build_module(width, A1111_CREATED)
                for layer in module:
                    if isinstance(layer, torch.nn.Linear):
                        torch.nn.init.normal_(layer.weight, mean=0.0, std=A1111_INIT_STD)
                        torch.nn.init.zeros_(layer.bias)
                pair.append(module.to(self.device, torch.float32).train())
            self.hypernetwork[width] = (pair[0], pair[1])
        self._hypernetwork_hooks = attach(self.pipe.unet, [(Loaded(self.hypernetwork), 1.0)])
        params = {}
        for width, pair in self.hypernetwork.items():
            for which, module in enumerate(pair):
                for path, parameter in module.named_parameters():
                    parameter.requires_grad_(True)
                    params[f"hypernetwork.{width}.{which}.{path}"] = parameter
        return params

    def hypernetwork_tensors(self) -> dict[str, torch.Tensor]:
        """The hypernetwork's weights as `Learned.hypernetwork` names them."""
        return {
            f"{width}.{which}.{path}": value.detach().to("cpu", torch.float32).clone()
            for width, pair in self.hypernetwork.items()
            for which, module in enumerate(pair)
            for path, value in module.state_dict().items()
        }

    # --- pictures ---------------------------------------------------------------------------

    def _encode_picture(self, picture: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE's latent distribution of a picture (mean, std), kept for the run (kohya's
        cache_latents): each step samples from it with the step's generator."""
        vae = self.pipe.vae
        pixels = torch.from_numpy(np.asarray(picture, dtype="float32") / 127.5 - 1).permute(2, 0, 1)[None]
        upcast = self.dtype == torch.float16 and vae.config.get("force_upcast", False)
        with torch.no_grad(), _vae_in_float32(vae, upcast):
            dist = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
        return dist.mean.float().cpu(), dist.std.float().cpu()

    def _latents(self, cached: list[tuple[torch.Tensor, torch.Tensor]], indices: list[int], generator: torch.Generator) -> torch.Tensor:
        factor = self.pipe.vae.config.scaling_factor
        samples = [cached[i][0] + cached[i][1] * torch.randn(cached[i][0].shape, generator=generator) for i in indices]
        return torch.cat(samples) * factor

    # --- one step ---------------------------------------------------------------------------

    def _loss(self, latents: torch.Tensor, captions: list[str], generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        target = noise if self.prediction == "epsilon" else self.noise_scheduler.get_velocity(latents, noise, timesteps)
        size = (latents.shape[-1] * 8, latents.shape[-2] * 8)
        with self._autocast():
            conditioning = self.text.encode(captions, size)
            predicted = self.pipe.unet(noisy.to(self.device, self.dtype), timesteps.to(self.device), **conditioning).sample
        error = torch.nn.functional.mse_loss(predicted.float(), target.to(self.device), reduction="none")
        error = error.mean(dim=list(range(1, error.ndim)))
        if self.spec.snr_gamma:
            from diffusers.training_utils import compute_snr

            snr = compute_snr(self.noise_scheduler, timesteps).to(self.device)
            weights = torch.stack([snr, self.spec.snr_gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
            error = error * (weights / snr if self.prediction == "epsilon" else weights / (snr + 1))
        return error.mean()

    def _autocast(self) -> Any:
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)  # mixed precision: fp16/bf16 weights, fp32 adapters
        return contextlib.nullcontext()

    def step_loss(self, step: int) -> torch.Tensor:
        generator = step_generator(self.spec.seed, step)
        indices = buckets.batch_at(self.bucket_of, self.spec.batch, self.spec.seed, step)
        loss = self._loss(self._latents(self.latents, indices, generator), [self.captions[i] for i in indices], generator)
        if self.class_latents:  # DreamBooth's prior preservation: the class pictures' loss beside
            count = len(self.class_latents)
            chosen = [(step * len(indices) + j) % count for j in range(len(indices))]
            prior = self._loss(
                self._latents(self.class_latents, chosen, generator), [self.spec.class_prompt or ""] * len(chosen), generator
            )
            loss = loss + self.spec.prior_weight * prior
        return loss

    def evaluate(self) -> float:
        """The loss on held-out noise: every picture at fixed, evenly spread timesteps, from fixed
        generators, without gradients. The same number before and after a run shows what it
        learned, free of the step-to-step noise of the training loss."""
        total = self.noise_scheduler.config.num_train_timesteps
        losses = []
        with torch.no_grad():
            for index, caption in enumerate(self.captions):
                generator = step_generator(self.spec.seed, -1 - index)
                latents = self._latents(self.latents, [index], generator)
                noise = torch.randn(latents.shape, generator=generator)
                for timestep in (total // 4, total // 2, 3 * total // 4):
                    t = torch.tensor([timestep])
                    noisy = self.noise_scheduler.add_noise(latents, noise, t)
                    target = noise if self.prediction == "epsilon" else self.noise_scheduler.get_velocity(latents, noise, t)
                    with self._autocast():
                        conditioning = self.text.encode([caption], (latents.shape[-1] * 8, latents.shape[-2] * 8))
                        predicted = self.pipe.unet(noisy.to(self.device, self.dtype), t.to(self.device), **conditioning).sample
                    losses.append(float(torch.nn.functional.mse_loss(predicted.float(), target.to(self.device))))
        return sum(losses) / len(losses)

    def record_loss(self, step: int, loss: float) -> None:
        self._loss_sum += loss
        self._loss_count += 1
        every = max(1, self.spec.steps // LOSS_POINTS)
        if (step + 1) % every == 0 or step + 1 == self.spec.steps:
            self.losses.append([step + 1, self._loss_sum / self._loss_count])
            self._loss_sum, self._loss_count = 0.0, 0

    # --- checkpoints --------------------------------------------------------------------------

    def state_bytes(self, step: int, optimizer: Any, scheduler: Any) -> bytes:
        buffer = io.BytesIO()
        torch.save(
            {
                "step": step,
                "params": {k: v.detach().cpu() for k, v in self.params.items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "losses": self.losses,
                "partial": [self._loss_sum, self._loss_count],
                "held_out_before": self.held_out_before,
            },
            buffer,
        )
        return buffer.getvalue()

    def load_state(self, data: bytes, optimizer: Any, scheduler: Any) -> int:
        state = torch.load(io.BytesIO(data), map_location=self.device, weights_only=True)  # our own file: still no pickle
        with torch.no_grad():
            for key, value in state["params"].items():
                self.params[key].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.losses = [list(point) for point in state["losses"]]
        self._loss_sum, self._loss_count = float(state["partial"][0]), int(state["partial"][1])
        self.held_out_before = float(state["held_out_before"])
        return int(state["step"])

    # --- samples ----------------------------------------------------------------------------

    def sample(self, prompt: str) -> Image.Image:
        """A picture with what was learned so far: the sample prompt, the run's seed, square
        (`run.sample_parameters` writes these settings into its PNG)."""
        spec, pipe = self.spec, self.pipe
        with sampling_scheduler(self.loaded), torch.no_grad(), _eval(pipe.unet, *self.encoders):
            arguments: dict[str, Any] = {}
            if spec.method == "embedding":
                conditioning = self.text.encode([prompt], (spec.resolution, spec.resolution))
                arguments["prompt_embeds"] = conditioning["encoder_hidden_states"]
                if self.xl:
                    arguments["pooled_prompt_embeds"] = conditioning["added_cond_kwargs"]["text_embeds"]
                negative = self.text.encode([""], (spec.resolution, spec.resolution))
                arguments["negative_prompt_embeds"] = negative["encoder_hidden_states"]
                if self.xl:
                    arguments["negative_pooled_prompt_embeds"] = negative["added_cond_kwargs"]["text_embeds"]
            else:
                arguments["prompt"] = prompt
            result = pipe(
                **arguments,
                width=spec.resolution,
                height=spec.resolution,
                num_inference_steps=spec.sample_steps,
                guidance_scale=SAMPLE_CFG,
                generator=torch.Generator("cpu").manual_seed(spec.seed),
            )
        return result.images[0]


def inject(module: torch.nn.Module, method: str, rank: int, alpha: float, targets: list[str]) -> None:
    """A new peft adapter ADAPTER of the method's kind on `module`: LoRA through diffusers' /
    transformers' `add_adapter` (the recipes' way), LoHa and LoKr through peft's injection."""
    from peft import LoHaConfig, LoKrConfig, LoraConfig, inject_adapter_in_model

    if method in ("lora", "dreambooth"):
        module.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets), adapter_name=ADAPTER)
        return
    config = (LoHaConfig if method == "loha" else LoKrConfig)(r=rank, alpha=alpha, target_modules=targets)
    with warnings.catch_warnings():  # peft warns that a model holds several adapters: emptied ones may stay
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    module._hf_peft_config_loaded = True  # diffusers / transformers then manage it like their own


def activate(module: torch.nn.Module) -> None:
    """Make ADAPTER the one active adapter of `module`, with its layers enabled: a picture job
    leaves every adapter layer disabled (generation.assets.adapters), and a new adapter on layers
    that held an earlier one inherits that switch."""
    from diffusers.utils.peft_utils import set_adapter_layers
    from peft.tuners.tuners_utils import BaseTunerLayer

    set_adapter_layers(module, enabled=True)
    for layer in module.modules():
        if isinstance(layer, BaseTunerLayer):
            layer.set_adapter(ADAPTER)


@contextlib.contextmanager
def _eval(*modules: torch.nn.Module) -> Iterator[None]:
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)


@contextlib.contextmanager
def _vae_in_float32(vae: Any, upcast: bool) -> Iterator[None]:
    if not upcast:
        yield
        return
    dtype = vae.dtype
    vae.to(torch.float32)
    try:
        yield
    finally:
        vae.to(dtype)


def make_optimizer(run: Run) -> tuple[Any, Any]:
    params = list(run.params.values())
    decay = 0.0 if run.spec.method == "embedding" else WEIGHT_DECAY
    optimizer: Any = None
    if run.device.type == "cuda":
        with contextlib.suppress(ImportError):
            import bitsandbytes  # type: ignore[import-not-found]

            optimizer = bitsandbytes.optim.AdamW8bit(params, lr=run.spec.lr, weight_decay=decay)
    if optimizer is None:
        optimizer = torch.optim.AdamW(params, lr=run.spec.lr, weight_decay=decay)
    from diffusers.optimization import get_scheduler

    return optimizer, get_scheduler("constant", optimizer=optimizer)


# --- the whole run -------------------------------------------------------------------------------


def train(
    engine: Engine,
    spec: TrainingSpec,
    hooks: Hooks,
    *,
    captions: list[str],
    resume: Resume | None = None,
    export: Callable[[Learned], bytes],
) -> tuple[bytes, Learned]:
    """Run (or resume) the training; the exported file and what was learned. Raises
    TrainingYielded after a checkpoint when drawing jobs wait, JobCancelled on shutdown (after a
    checkpoint) or a lost lease. A person's /cancel ends the run early with what it learned."""
    run = Run(engine, spec, captions, class_pictures(engine, spec, hooks))
    samples = set(spec.sample_steps_at())
    with run.attached():
        optimizer, scheduler = make_optimizer(run)
        if resume:
            step = run.load_state(resume.state, optimizer, scheduler)
        else:
            step, run.held_out_before = 0, run.evaluate()
        started, first = time.perf_counter(), step
        stopped_early = False
        saved = step  # the step of the last checkpoint (or the one resumed from): not saved twice

        def save() -> None:
            nonlocal saved
            if step != saved:
                hooks.checkpoint(step, run.state_bytes(step, optimizer, scheduler), run.losses)
                saved = step

        while step < spec.steps:
            stop = hooks.stopping()
            if stop == "cancel":
                stopped_early = True
                break
            if stop == "shutdown":
                save()
                raise JobCancelled()
            if stop == "lost":
                raise JobCancelled()
            if step > first and hooks.should_yield():
                save()
                raise TrainingYielded()
            loss = run.step_loss(step)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(run.params.values()), MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise EngineUserError(f"the loss became {value} at step {step + 1}; try a lower --lr.")
            run.record_loss(step, value)
            step += 1
            hooks.progress(step, spec.steps, _note(run, step, first, started))
            if step in samples and step < spec.steps:
                hooks.sample(step, run.sample(spec.sample_prompt), False)
            if step % spec.checkpoint_every == 0 and step < spec.steps:
                save()
        learned = Learned(
            components={
                "unet": run.pipe.unet,
                "text_encoder": run.pipe.text_encoder,
                **({"text_encoder_2": run.pipe.text_encoder_2} if run.xl else {}),
            },
            vectors={key: value.detach().to(torch.float32).cpu().clone() for key, value in run.text.vectors.items()},
            hypernetwork=run.hypernetwork_tensors(),
            steps_done=step,
            loss=run.losses[-1][1] if run.losses else None,
            captions=captions,
            stopped_early=stopped_early,
            losses=run.losses,
            held_out=(run.held_out_before, run.evaluate()),
        )
        data = export(learned)
        if step > 0:
            hooks.sample(step, run.sample(spec.sample_prompt), True)
    return data, learned


def _note(run: Run, step: int, first: int, started: float) -> str:
    loss = f"loss {run.losses[-1][1]:.4f}" if run.losses else ""
    rate = (step - first) / max(time.perf_counter() - started, 1e-6)
    left = (run.spec.steps - step) / rate if rate > 0 else 0
    eta = f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"
    return " · ".join(part for part in (loss, eta) if part)
