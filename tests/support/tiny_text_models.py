"""Tiny random-weight text models saved like real ones, for tests of `generation.text_models.enhance` and
`generation.text_models.interrogate`. Each has the real architecture and file layout, shrunk (hidden size 32,
two layers), saved with `save_pretrained` as safetensors, and is built offline in a second or two:

- `build_tiny_gpt2`: GPT2LMHeadModel as MagicPrompt ships it, with a byte-level BPE tokenizer
  (GPT-2's scheme: every byte is a token, "Ġ" marks a leading space, newlines are tokens) trained
  here on a few hundred words of art vocabulary.
- `build_tiny_blip`: BlipForConditionalGeneration + BlipProcessor (BlipImageProcessor at 32 px with
  CLIP's normalisation, as Salesforce's checkpoints use, and a BERT WordPiece tokenizer over a small
  vocabulary with BLIP's `[DEC]` start token).
- `build_tiny_clip`: CLIPModel + CLIPProcessor with CLIP's real tokenizer (`generation.models.tiny.clip_vocab`).

Fresh weights have tiny logits, so GPT-2's next-token distribution is almost flat and a seed
decides everything, which is what the enhance tests need. For CLIP ranking, the tests check the
ranking against similarities they compute themselves; fresh CLIP text embeddings of different
terms are nearly parallel (the pooled end-of-text state is dominated by its own embedding), so the
text attention is strengthened, as in tests/support/tiny_clipseg.py, to spread them apart.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from tests.support.tiny_clipseg import TINY_CLIP_TEXT

SEED = 20261128
IMAGE = 32  # side of the tiny vision towers' input
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=IMAGE, patch_size=8)

ART_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "with",
    "by",
    "and",
    "at",
    "from",
    "under",
    "over",
    "near",
    "portrait",
    "landscape",
    "castle",
    "city",
    "street",
    "forest",
    "mountain",
    "river",
    "lake",
    "ocean",
    "beach",
    "desert",
    "island",
    "village",
    "tower",
    "bridge",
    "garden",
    "temple",
    "cathedral",
    "ruins",
    "cave",
    "sky",
    "clouds",
    "sunset",
    "sunrise",
    "night",
    "moon",
    "stars",
    "storm",
    "rain",
    "snow",
    "fog",
    "mist",
    "fire",
    "smoke",
    "light",
    "shadow",
    "dragon",
    "knight",
    "wizard",
    "witch",
    "princess",
    "robot",
    "astronaut",
    "cat",
    "dog",
    "fox",
    "owl",
    "wolf",
    "horse",
    "deer",
    "bird",
    "fish",
    "whale",
    "butterfly",
    "flower",
    "rose",
    "tree",
    "leaves",
    "grass",
    "stone",
    "crystal",
    "gold",
    "silver",
    "glass",
    "metal",
    "wood",
    "paper",
    "woman",
    "man",
    "girl",
    "boy",
    "child",
    "elder",
    "warrior",
    "queen",
    "king",
    "monk",
    "pilot",
    "sailor",
    "painter",
    "dancer",
    "musician",
    "highly",
    "detailed",
    "intricate",
    "elegant",
    "ornate",
    "sharp",
    "focus",
    "smooth",
    "soft",
    "dramatic",
    "cinematic",
    "epic",
    "moody",
    "vibrant",
    "colorful",
    "pastel",
    "muted",
    "dark",
    "bright",
    "glowing",
    "neon",
    "golden",
    "hour",
    "volumetric",
    "lighting",
    "rim",
    "light",
    "digital",
    "painting",
    "oil",
    "painting",
    "watercolor",
    "illustration",
    "concept",
    "art",
    "matte",
    "painting",
    "sketch",
    "ink",
    "charcoal",
    "photograph",
    "photo",
    "render",
    "octane",
    "unreal",
    "engine",
    "artstation",
    "trending",
    "award",
    "winning",
    "masterpiece",
    "fantasy",
    "science",
    "fiction",
    "cyberpunk",
    "steampunk",
    "surreal",
    "dreamlike",
    "whimsical",
    "gothic",
    "baroque",
    "renaissance",
    "impressionist",
    "art",
    "nouveau",
    "art",
    "deco",
    "ukiyo",
    "minimalist",
    "abstract",
    "realistic",
    "hyperrealistic",
    "studio",
    "ghibli",
    "anime",
    "manga",
    "comic",
    "poster",
    "wallpaper",
    "4k",
    "8k",
    "hdr",
    "bokeh",
    "depth",
    "field",
    "wide",
    "angle",
    "close",
    "up",
    "full",
    "body",
    "centered",
    "symmetrical",
    "composition",
    "background",
    "foreground",
    "colors",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "white",
    "black",
    "teal",
    "beautiful",
    "stunning",
    "atmospheric",
]


def build_tiny_gpt2(folder: Path) -> Path:
    """A MagicPrompt-shaped GPT-2 (model + byte-level BPE tokenizer) in `folder`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    rng = random.Random(SEED)
    corpus = [", ".join(" ".join(rng.choices(ART_WORDS, k=rng.randint(1, 4))) for _ in range(rng.randint(3, 9))) for _ in range(400)]
    bpe = ByteLevelBPETokenizer()  # GPT-2's pre-tokenizer, decoder and byte alphabet
    bpe.train_from_iterator(corpus, vocab_size=700, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=128,
    )
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=4, bos_token_id=eos, eos_token_id=eos)
    model = _seeded(lambda: GPT2LMHeadModel(config).eval())
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_blip(folder: Path) -> Path:
    """A BLIP captioner shaped like Salesforce/blip-image-captioning-* in `folder`."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = list(dict.fromkeys(ART_WORDS))
    vocab = {token: index for index, token in enumerate([*specials, *words, ",", ".", "[DEC]"])}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]", model_max_length=64)
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            bos_token_id=vocab["[DEC]"],
            eos_token_id=vocab["[SEP]"],
            sep_token_id=vocab["[SEP]"],
            pad_token_id=vocab["[PAD]"],
        ),
        vision_config=dict(TINY_VISION),
        projection_dim=32,
    )

    def make() -> BlipForConditionalGeneration:
        model = BlipForConditionalGeneration(config).eval()
        with torch.no_grad():
            # Make [SEP] (BLIP's end of caption) the likeliest token, so captions stop after the
            # captioner's minimum of 5 words, as short as real ones, instead of running to the
            # 30-token cap: faster tests, and a caption leaves room for terms in 77 CLIP tokens.
            model.text_decoder.cls.predictions.bias[vocab["[SEP]"]] = 5.0
        return model

    model = _seeded(make)
    image_processor = BlipImageProcessor(
        size={"height": IMAGE, "width": IMAGE},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_tiny_clip(folder: Path) -> Path:
    """A CLIP (ViT, real tokenizer) shaped like openai/clip-vit-large-patch14 in `folder`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from generation.models.tiny import clip_vocab

    config = CLIPConfig(
        text_config=dict(TINY_CLIP_TEXT),
        vision_config=dict(TINY_VISION),
        projection_dim=32,
    )

    def make() -> CLIPModel:
        model = CLIPModel(config).eval()
        with torch.no_grad():
            for layer in model.text_model.encoder.layers:
                layer.self_attn.v_proj.weight.mul_(4)
                layer.self_attn.out_proj.weight.mul_(4)
        return model

    model = _seeded(make)
    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _seeded(make):  # type: ignore[no-untyped-def]
    """`make()` under a fixed seed, leaving torch's global RNG as it was."""
    state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        return make()
    finally:
        torch.random.set_rng_state(state)
