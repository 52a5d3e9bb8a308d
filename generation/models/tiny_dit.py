"""Tiny random-weight models of the DiT families (FLUX.1, Chroma), built the way `tiny.py` builds
the tiny SD 1.x model: the real diffusers/transformers classes at toy sizes, built in-process with
a fixed seed, saved with `save_pretrained` and then loaded with `from_pretrained` like any real
model. So the flow-matching paths (packed latents, T5 prompts, 16-channel VAE) run and are tested
on a CPU in seconds, with no GPU and no network. They draw noise, on purpose.

As in `tiny.py`, fresh random weights make a picture nearly blind to its prompt, so a test of
prompt handling would pass even when the handling were wrong. Each builder therefore makes its
model text-sensitive (`_make_text_sensitive`): T5 padding that carries the prompt, strong text keys
and values in the joint attention, a strong velocity output, random affine parameters on the norms.
The T5 tokenizer is a small Unigram model trained here, offline, on a few English sentences, with
T5's special tokens (`<pad>`=0, `</s>`=1, `<unk>`=2) and `</s>` appended; FLUX's CLIP tokenizer is
CLIP's real one (`tiny.clip_vocab`). Builds are deterministic, byte for byte, and take well under a
second once diffusers is imported.

Adding a family (Qwen-Image, Z-Image, SD3, FLUX.2): write `_build_<family>()` returning the
pipeline, from the shared parts below, and add a row to `FAMILIES`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from generation.models import tiny_config
from generation.models.tiny import pipeline_folder

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from transformers import T5TokenizerFast


SEED = 20261127
_WORDS = (
    "a red fox in the snow",
    "the blue city at night",
    "a black cat on a red sofa",
    "a white dog running in a green park",
    "a forest of tall pine trees in the fog",
    "a portrait of an old man with a grey beard",
    "a small house by the lake at sunset",
    "the mountains under a starry sky",
    "a yellow car on a wet street in the rain",
    "a bowl of fruit: apples, oranges and grapes",
    "an astronaut riding a horse on the moon",
    "a castle on a hill, oil painting",
    "a girl with a blue umbrella in the city",
    "a bird sitting on a branch in spring",
    "the ocean waves crashing on the rocks",
    "a cup of coffee on a wooden table",
    "a robot reading a book in a library",
    "a field of sunflowers under a bright sun",
    "A photo of a cat and a dog, high quality",
    "An anime drawing of a dragon breathing fire",
    "a snowy village with warm lights in the windows",
    "a person walking a dog through the forest",
    "a purple flower in a glass vase",
    "an empty road through the desert at noon",
    "a city skyline with tall towers and neon signs",
    "a boat on a calm river, watercolor",
    "a close-up of a tiger's face, detailed fur",
    "children playing in the snow with a sled",
    "a red apple and a blue ball on the grass",
    "the night sky over a quiet forest, 4k",
    "a fox, a cat, a dog and a bird",
    "masterpiece, best quality, sharp focus, 8k",
)


def ensure_tiny_flux(models_dir: Path) -> Path:
    """The tiny FLUX.1 (dev-like, guidance-distilled) diffusers folder under `models_dir`."""
    return ensure_tiny_dit("flux", models_dir)


def ensure_tiny_chroma(models_dir: Path) -> Path:
    """The tiny Chroma diffusers folder under `models_dir`."""
    return ensure_tiny_dit("chroma", models_dir)


def ensure_tiny_kontext(models_dir: Path) -> Path:
    """The tiny FLUX.1 Kontext diffusers folder under `models_dir` (/edit on a FLUX.1 model)."""
    return ensure_tiny_dit("kontext", models_dir)


def ensure_tiny_dit(family: str, models_dir: Path) -> Path:
    """The tiny `family` model's diffusers folder under `models_dir`, built on first use."""
    version, build = FAMILIES[family]
    return pipeline_folder(models_dir, version, build)


@contextmanager
def _seeded(seed: int = SEED) -> Iterator[None]:
    """A fixed seed for the build, and the caller's global RNG state back afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def _build_flux() -> DiffusionPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from generation.models.tiny import clip_vocab

    with _seeded():
        transformer = FluxTransformer2DModel(**tiny_config.FLUX_TRANSFORMER)
        vae = _vae()
        text_encoder = CLIPTextModel(CLIPTextConfig(**tiny_config.TEXT_ENCODER))
        text_encoder_2, tokenizer_2 = _t5()
        _make_text_sensitive(transformer, [text_encoder, text_encoder_2])
        vocab, merges = clip_vocab()
        return FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(tiny_config.FLOW_SCHEDULER),
            vae=vae,
            text_encoder=text_encoder.eval(),
            tokenizer=CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77),
            text_encoder_2=text_encoder_2.eval(),
            tokenizer_2=tokenizer_2,
            transformer=transformer,
        )


def _build_chroma() -> DiffusionPipeline:
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    with _seeded():
        transformer = ChromaTransformer2DModel(**tiny_config.CHROMA_TRANSFORMER)
        vae = _vae()
        text_encoder, tokenizer = _t5()
        _make_text_sensitive(transformer, [text_encoder])
        return ChromaPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(tiny_config.FLOW_SCHEDULER),
            vae=vae,
            text_encoder=text_encoder.eval(),
            tokenizer=tokenizer,
            transformer=transformer,
        )


def _build_kontext() -> DiffusionPipeline:
    """The tiny FLUX.1 Kontext: tiny FLUX.1's very weights saved as a `FluxKontextPipeline`, as
    Kontext [dev] is FLUX.1-dev's architecture (its folder says what it is in model_index.json)."""
    from diffusers import FluxKontextPipeline

    return FluxKontextPipeline(**_build_flux().components)


FAMILIES: dict[
    str, tuple[str, Callable[[], DiffusionPipeline]]
] = {  # family: (folder name, builder); bump the version when a recipe changes
    "flux": ("tiny-flux-v1", _build_flux),
    "chroma": ("tiny-chroma-v1", _build_chroma),
    "kontext": ("tiny-kontext-v1", _build_kontext),
}


def _vae():  # type: ignore[no-untyped-def]
    from diffusers import AutoencoderKL

    return AutoencoderKL(**tiny_config.DIT_VAE)


def _t5():  # type: ignore[no-untyped-def]
    """A tiny T5 v1.1 encoder and its tokenizer (vocab sized to the tokenizer)."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_tokenizer()
    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), **tiny_config.T5_ENCODER)), tokenizer


def t5_tokenizer() -> T5TokenizerFast:
    """A `T5TokenizerFast` over a small Unigram vocabulary trained offline on `_WORDS`."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram
    from transformers import T5TokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]  # T5's ids 0, 1, 2
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>", show_progress=False)
    trained = Tokenizer(Unigram())
    trained.normalizer = normalizers.NFKC()
    trained.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)]
    )
    trained.train_from_iterator(_WORDS, trainer)
    # The trainer's scores vary in their last bits from run to run, and so does its ranking of rare
    # characters: round the scores, give every single character (all of printable ASCII, so that
    # little of an English prompt is <unk>) one low score, and sort, so that builds are identical.
    trained_vocab = json.loads(trained.to_str())["model"]["vocab"]
    scores = {piece: round(score, 4) for piece, score in trained_vocab if len(piece) > 1 and piece not in specials}
    single = sorted({piece for piece, _ in trained_vocab if len(piece) == 1} | {chr(c) for c in range(ord("!"), ord("~") + 1)})
    scores.update(dict.fromkeys(single, round(min(scores.values())) - 2.0))
    vocab = [(piece, 0.0) for piece in specials] + sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    backend = Tokenizer(Unigram(vocab, unk_id=specials.index("<unk>"), byte_fallback=False))
    backend.normalizer = trained.normalizer
    backend.pre_tokenizer = trained.pre_tokenizer
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        backend.save(str(path))
        return T5TokenizerFast(tokenizer_file=str(path), extra_ids=0, model_max_length=512)


@torch.no_grad()
def _make_text_sensitive(transformer: torch.nn.Module, text_encoders: list[torch.nn.Module]) -> None:
    """Let the prompt reach the picture through random weights (module docstring; tiny.py). Measured
    on 64x64 pictures: "a red fox" vs "a blue city at night" differ by ~1 (FLUX) and ~10 (Chroma,
    whose CFG amplifies) in 255ths without this, ~34 and ~42 with it (tests/test_tiny_dit.py)."""
    for encoder in text_encoders:
        if encoder.config.model_type == "t5":
            # Padding is most of T5's 512 positions and the transformer reads all of it: a zero pad
            # embedding leaves those positions only what attention mixes in from the prompt, and
            # strong attention outputs make that mixture dominate.
            encoder.get_input_embeddings().weight[encoder.config.pad_token_id].zero_()
            for name, module in encoder.named_modules():
                if name.endswith("SelfAttention"):
                    module.o.weight.mul_(5)
        else:  # CLIP: token embeddings at CLIP's scale, as in tiny.py
            encoder.get_input_embeddings().weight.mul_(20)
    for name, module in transformer.named_modules():
        if name.endswith("attn") and getattr(module, "add_k_proj", None) is not None:  # the double blocks' text keys and values
            module.add_k_proj.weight.mul_(6)
            module.add_v_proj.weight.mul_(6)
    transformer.x_embedder.weight.mul_(0.3)  # the latents' own share of the image stream, against the text's
    transformer.proj_out.weight.mul_(3)  # a velocity of the noise's size, so the prompt moves the latents
    text_embedder = getattr(transformer.time_text_embed, "text_embedder", None)
    if text_embedder is not None:  # FLUX's pooled CLIP vector, which modulates every block
        text_embedder.linear_1.weight.mul_(4)
    random_norm_affines([transformer, *text_encoders])


@torch.no_grad()
def random_norm_affines(models: list[torch.nn.Module]) -> None:
    """Random affine parameters on every LayerNorm, GroupNorm and RMSNorm of `models`, in module
    order (weights 1 + N(0, 0.5²), biases N(0, 0.2²)): a tiny model's norms, fresh at 1 and 0, would
    otherwise let no token stand out. Shared by the tiny DiT builders."""
    for model in models:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if type(module).__name__.endswith(("LayerNorm", "GroupNorm", "RMSNorm")) and isinstance(weight, torch.nn.Parameter):
                weight.copy_(1 + 0.5 * torch.randn_like(weight))
                bias = getattr(module, "bias", None)
                if isinstance(bias, torch.nn.Parameter):
                    bias.copy_(0.2 * torch.randn_like(bias))
