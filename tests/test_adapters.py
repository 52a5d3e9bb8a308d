"""Users' LoRAs, LyCORIS (LoHa, LoKr) and textual-inversion embeddings in the engine
(generation.assets.adapters), on the tiny models. Every file is built here, in the test."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save, save_file

from config import ModelEntry, ModelRegistry
from generation.assets.adapters import adapter_name
from generation.engine import Engine
from generation.errors import EngineUserError
from generation.jobs import run_job
from generation.models.loader import ModelCache
from generation.models.tiny import build_tiny_pipeline, ensure_tiny
from generation.prompts.encoder import (
    CHUNK_LENGTH,
    PLACEHOLDER,
    TextualInversion,
    chunk_prompt,
    encode_prompts,
    textual_inversions,
)
from generation.prompts.lora_tags import parse_lora_tags, strip_lora_tags
from generation.spec import AssetRef, GenerationSpec
from storage.blobs import LocalBlobStore
from tests.support.tiny_xl import build_tiny_xl

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield  # tiny models: one intra-op thread is faster on a busy 2-core machine


# --- building the files ----------------------------------------------------------------------------


def make_lora(pipe, seed: int, *, text_encoders: tuple[str, ...] = ("text_encoder",)) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """A peft LoRA (rank 4, alpha 4) on UNet and text encoder(s) with random non-zero weights, as
    diffusers' `save_lora_weights` writes it (diffusers naming)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=UNET_TARGETS, init_lora_weights=False), adapter_name="made")
    layers = {"unet_lora_layers": get_peft_model_state_dict(pipe.unet, adapter_name="made")}
    for name in text_encoders:
        encoder = getattr(pipe, name)
        encoder.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=TE_TARGETS, init_lora_weights=False), adapter_name="made")
        layers[f"{name}_lora_layers"] = get_peft_model_state_dict(encoder, adapter_name="made")
    folder = Path(__import__("tempfile").mkdtemp())
    type(pipe).save_lora_weights(folder, **layers)
    from safetensors.torch import load_file

    return load_file(folder / "pytorch_lora_weights.safetensors")


def to_kohya(state_dict: dict[str, torch.Tensor], sd1: bool = True) -> dict[str, torch.Tensor]:
    from diffusers.utils import convert_state_dict_to_kohya

    kohya = convert_state_dict_to_kohya(state_dict)
    if sd1:  # kohya's SD 1.x files name their one text encoder `lora_te_`
        kohya = {key.replace("lora_te1_", "lora_te_"): value for key, value in kohya.items()}
    return {key: value.contiguous() for key, value in kohya.items()}


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("loras")
    files = {}
    for name, seed in (("one", 1), ("two", 2)):
        diffusers_format = make_lora(build_tiny_pipeline(), seed)
        save_file(diffusers_format, folder / f"{name}-diffusers.safetensors")
        save_file(to_kohya(diffusers_format), folder / f"{name}-kohya.safetensors")
        files[f"{name}-diffusers"] = folder / f"{name}-diffusers.safetensors"
        files[f"{name}-kohya"] = folder / f"{name}-kohya.safetensors"
    return files


# --- the engine ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source="tiny")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=1)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def asset(engine: Engine, data: dict[str, torch.Tensor] | Path, name: str, fmt: str, weight: float = 1.0) -> AssetRef:
    raw = data.read_bytes() if isinstance(data, Path) else save({k: v.contiguous() for k, v in data.items()})
    key = engine.blobs.put(raw, "st")  # (blob extensions are at most 8 characters)
    return AssetRef(name=name, blob=key, sha256=key.split(".")[0], format=fmt, weight=weight)


def spec(**changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(
        kind="txt2img", prompt="a red fox in the snow", model="tiny", width=64, height=64, steps=4, cfg=7.0, sampler="Euler", seed=11, n=1
    )
    base.update(changes)
    return GenerationSpec(**base)


def draw(engine: Engine, **changes) -> np.ndarray:  # type: ignore[no-untyped-def]
    [image] = run_job(engine, spec(**changes))
    return np.asarray(Image.open(io.BytesIO(image.png)).convert("RGB")).astype(int)


def save_kohya_lora(path: Path) -> Path:
    """The done-when lines' file: the tiny model's peft LoRA (seed 1) in kohya's naming, at `path`."""
    save_file(to_kohya(make_lora(build_tiny_pipeline(), 1)), path)
    return path


def bare(models_dir: Path, lora: Path | None = None, weight: float | None = None, prompt: str = "a red fox in the snow") -> np.ndarray:
    """Bare diffusers: the file loaded by `load_lora_weights(path)`, the same prompt and settings."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(ensure_tiny(models_dir))
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    if lora is not None:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="theirs")
        if weight is not None:
            pipe.set_adapters(["theirs"], adapter_weights=[weight])
    image = pipe(
        prompt, num_inference_steps=4, guidance_scale=7.0, height=64, width=64, generator=torch.Generator("cpu").manual_seed(11)
    ).images[0]
    return np.asarray(image).astype(int)


def differ(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


def test_kohya_lora_equals_bare_diffusers_at_any_weight(engine: Engine, loras: dict[str, Path], models_dir: Path) -> None:
    kohya = asset(engine, loras["one-kohya"], "one", "kohya")
    ours = draw(engine, loras=(kohya,))
    theirs = bare(models_dir, loras["one-kohya"])
    assert differ(ours, theirs) <= 2
    plain = bare(models_dir)
    assert differ(ours, plain) > 20  # the LoRA changes the picture
    # at 0.6: bare diffusers' set_adapters([...], adapter_weights=[0.6])
    ours_06 = draw(engine, loras=(kohya.model_copy(update={"weight": 0.6}),))
    assert differ(ours_06, bare(models_dir, loras["one-kohya"], weight=0.6)) <= 2
    assert differ(ours_06, ours) > 2
    # the diffusers-format file is the same LoRA: the same pixels
    diffusers_format = asset(engine, loras["one-diffusers"], "one-d", "diffusers")
    assert differ(draw(engine, loras=(diffusers_format,)), ours) <= 2


def test_no_lora_leaks_into_the_next_job_and_the_base_model_stays(
    engine: Engine, loras: dict[str, Path], models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import generation.models.loader

    plain_before = draw(engine)  # loads the model (if no test did)
    base = engine.models.get("tiny").txt2img
    loaded_models: list[str] = []
    real_load = generation.models.loader.load_pipeline
    monkeypatch.setattr(
        generation.models.loader, "load_pipeline", lambda entry, *a: loaded_models.append(entry.source) or real_load(entry, *a)
    )
    one = asset(engine, loras["one-kohya"], "one", "kohya")
    two = asset(engine, loras["two-kohya"], "two", "kohya")
    loads, hits = engine.adapters.loads, engine.adapters.hits
    new_files = sum(adapter_name(ref.sha256) not in engine.adapters.loaded(base) for ref in (one, two))
    with_one = draw(engine, loras=(one,))
    with_two = draw(engine, loras=(two,))
    again_one = draw(engine, loras=(one,))
    after = draw(engine)
    assert differ(after, plain_before) == 0  # a job without LoRA after LoRA jobs: nothing leaks
    assert differ(after, bare(models_dir)) <= 2  # ... and it equals a fresh no-LoRA run
    assert differ(with_one, again_one) == 0 and differ(with_one, with_two) > 20
    assert loaded_models == [] and engine.models.get("tiny").txt2img is base  # the base model was never reloaded
    assert engine.adapters.loads == loads + new_files  # each file loaded once
    assert engine.adapters.hits == hits + 3 - new_files  # ... then cache hits
    both = draw(engine, loras=(one, two.model_copy(update={"weight": 0.5})))  # two at once
    assert differ(both, with_one) > 2


def test_lru_by_bytes_evicts_the_least_recently_used(engine: Engine, loras: dict[str, Path]) -> None:
    one = asset(engine, loras["one-kohya"], "one", "kohya")
    two = asset(engine, loras["two-kohya"], "two", "kohya")
    pipe = engine.models.get("tiny").txt2img
    draw(engine, loras=(one,))
    size = engine.adapters.used_bytes // len(engine.adapters.loaded(pipe))
    budget = engine.adapters.budget_bytes
    engine.adapters.budget_bytes = int(size * 1.5)  # room for one
    try:
        evictions = engine.adapters.evictions
        draw(engine, loras=(two,))
        assert engine.adapters.loaded(pipe) == [adapter_name(two.sha256)]
        assert engine.adapters.evictions > evictions
        assert adapter_name(one.sha256) not in pipe.get_list_adapters().get("unet", [])  # deleted from the model
        loads = engine.adapters.loads
        draw(engine, loras=(one,))
        assert engine.adapters.loads == loads + 1  # evicted: loaded again
        # a job's own LoRAs are never evicted for each other, even over the budget
        draw(engine, loras=(one, two))
        assert sorted(engine.adapters.loaded(pipe)) == sorted([adapter_name(one.sha256), adapter_name(two.sha256)])
    finally:
        engine.adapters.budget_bytes = budget


def test_lora_tags_are_not_encoded(engine: Engine) -> None:
    assert strip_lora_tags("a fox <lora:film grain:0.8>, snow <lyco:x>") == "a fox , snow "
    assert parse_lora_tags("a <lora:one> <lora:two:0.6> <LyCo:three:0.5:0.2> <lora:four:unet=0.3:te=0.7>") == [
        ("one", 1.0),
        ("two", 0.6),
        ("three", 0.5),
        ("four", 0.7),
    ]
    with pytest.raises(ValueError, match="not a number"):
        parse_lora_tags("<lora:one:strong>")
    assert differ(draw(engine, prompt="a red fox in the snow<lora:one:0.7>"), draw(engine)) == 0


# --- LyCORIS: LoHa and LoKr ---------------------------------------------------------------------------

ATTN = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # a linear layer
CONV = "down_blocks.1.resnets.0.conv1"  # a 3x3 convolution
TE = "text_model.encoder.layers.0.self_attn.q_proj"


def kohya_name(prefix: str, path: str) -> str:
    return f"{prefix}_{path.replace('.', '_')}"


def make_lycoris(pipe, kind: str, seed: int) -> tuple[dict[str, torch.Tensor], dict[tuple[str, str], torch.Tensor]]:  # type: ignore[no-untyped-def]
    """A LyCORIS file on a linear and a conv layer of the UNet and one text-encoder layer, with
    the delta W computed by hand from LyCORIS's formulas, by (component, module path)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    state: dict[str, torch.Tensor] = {}
    deltas = {}
    for component, prefix, path in (("unet", "lora_unet", ATTN), ("unet", "lora_unet", CONV), ("text_encoder", "lora_te", TE)):
        weight = pipe.unet.get_submodule(path).weight if component == "unet" else pipe.text_encoder.get_submodule(path).weight
        out_dim, in_flat = weight.shape[0], weight[0].numel()
        key = kohya_name(prefix, path)
        if kind == "loha":
            rank, alpha = 4, 2.0
            w1a, w1b, w2a, w2b = rand(out_dim, rank), rand(rank, in_flat), rand(out_dim, rank), rand(rank, in_flat)
            state |= {
                f"{key}.hada_w1_a": w1a,
                f"{key}.hada_w1_b": w1b,
                f"{key}.hada_w2_a": w2a,
                f"{key}.hada_w2_b": w2b,
                f"{key}.alpha": torch.tensor(alpha),
            }
            delta = (w1a @ w1b) * (w2a @ w2b) * (alpha / rank)
        elif path == CONV:  # full w1 and (conv) w2: LyCORIS and A1111 use scale 1 whatever alpha says
            w1, w2 = rand(4, 4), rand(out_dim // 4, weight.shape[1] // 4, 3, 3)
            state |= {f"{key}.lokr_w1": w1, f"{key}.lokr_w2": w2, f"{key}.alpha": torch.tensor(3.0)}
            delta = torch.kron(w1[:, :, None, None], w2)
        else:  # w1 full, w2 factored: scale alpha / rank
            rank, alpha = 2, 1.0
            w1, w2a, w2b = rand(2, 2), rand(out_dim // 2, rank), rand(rank, in_flat // 2)
            state |= {f"{key}.lokr_w1": w1, f"{key}.lokr_w2_a": w2a, f"{key}.lokr_w2_b": w2b, f"{key}.alpha": torch.tensor(alpha)}
            delta = torch.kron(w1, w2a @ w2b) * (alpha / rank)
        deltas[(component, path)] = delta.reshape(weight.shape)
    return state, deltas


@pytest.mark.parametrize("kind", ["loha", "lokr"])
def test_lycoris_changes_the_image_and_means_what_lycoris_means(engine: Engine, kind: str) -> None:
    pipe = engine.models.get("tiny").txt2img
    state, deltas = make_lycoris(pipe, kind, seed=5)
    ref = asset(engine, state, f"my-{kind}", kind, weight=0.7)
    changed = draw(engine, loras=(ref,))
    assert differ(changed, draw(engine)) > 10
    # the patched layers' effective weights: W + 0.7 * delta W, from the formulas by hand
    x_linear, x_conv = torch.randn(2, 32), torch.randn(1, 32, 8, 8)
    with engine.adapters.applied(pipe, spec(loras=(ref,))), torch.no_grad():
        for (component, path), delta in deltas.items():
            layer = getattr(pipe, component).get_submodule(path)
            base = layer.get_base_layer()
            if path == CONV:
                x = x_conv[:, : base.in_channels]
                expected = torch.nn.functional.conv2d(x, base.weight + 0.7 * delta, base.bias, padding=base.padding)
            else:
                x = x_linear[:, : base.in_features]
                expected = torch.nn.functional.linear(x, base.weight + 0.7 * delta, base.bias)
            assert torch.allclose(layer(x), expected, atol=1e-4), path
    with torch.no_grad():  # outside the job: no adapter acts
        layer = pipe.unet.get_submodule(ATTN)
        x = x_linear[:, : layer.get_base_layer().in_features]
        assert torch.equal(layer(x), layer.get_base_layer()(x))
    assert differ(draw(engine, loras=(ref,)), changed) == 0  # cached, same image


# --- refusals -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xl_engine(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Engine:
    folder = tmp_path_factory.mktemp("xl") / "tiny-xl"
    build_tiny_xl(strong_cross_attention=True).save_pretrained(folder)
    registry = ModelRegistry([ModelEntry(source=str(folder), name="xl")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=1)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("xl-blobs")))


def test_a_lora_for_another_architecture_is_refused(engine: Engine, xl_engine: Engine) -> None:
    xl_pipe = build_tiny_xl(strong_cross_attention=True)
    xl_lora = to_kohya(make_lora(xl_pipe, 3, text_encoders=("text_encoder", "text_encoder_2")), sd1=False)
    ref = asset(engine, xl_lora, "xl-style", "kohya")
    with pytest.raises(EngineUserError, match=r"made for SDXL.*`tiny` is SD 1\.x"):
        draw(engine, loras=(ref,))
    assert adapter_name(ref.sha256) not in engine.adapters.loaded(engine.models.get("tiny").txt2img)
    draw(engine)  # and the engine goes on
    sd1_lora = to_kohya(make_lora(build_tiny_pipeline(), 4))
    ref = asset(xl_engine, sd1_lora, "sd1-style", "kohya")
    with pytest.raises(EngineUserError, match=r"made for SD 1\.x/2\.x.*`xl` is SDXL"):
        draw(xl_engine, model="xl", loras=(ref,))
    sd1_embedding = asset(xl_engine, {"emb_params": torch.randn(2, 32)}, "emb", "a1111-ti")
    with pytest.raises(EngineUserError, match=r"embedding `emb` is made for SD 1\.x/2\.x.*`xl` is SDXL"):
        draw(xl_engine, model="xl", prompt="a emb", embeddings=(sd1_embedding,))


# --- textual inversion --------------------------------------------------------------------------------


def token_vectors(encoder, tokenizer, words: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    return encoder.get_input_embeddings().weight[ids].detach().clone()


def test_an_embedding_stands_for_its_vectors_in_the_token_stream(engine: Engine) -> None:
    """An embedding whose vectors are the token embeddings of `red fox` encodes exactly as the
    words, weighted or not: the vectors sit where the name stands."""
    pipe = engine.models.get("tiny").txt2img
    fox = TextualInversion("my-thing", {"clip_l": token_vectors(pipe.text_encoder, pipe.tokenizer, "red fox")})
    with textual_inversions([fox]):
        ours = encode_prompts(pipe, "a my-thing in the snow", "(my-thing:1.3), blurry")
    words = encode_prompts(pipe, "a red fox in the snow", "(red fox:1.3), blurry")
    assert torch.allclose(ours.prompt_embeds, words.prompt_embeds, atol=1e-5)
    assert torch.allclose(ours.negative_prompt_embeds, words.negative_prompt_embeds, atol=1e-5)
    absent = encode_prompts(pipe, "a my-thing in the snow", "")
    assert (absent.prompt_embeds - ours.prompt_embeds).abs().max() > 1e-2  # outside the block, just words


def test_an_embedding_is_not_split_across_chunks(engine: Engine) -> None:
    tok = engine.models.get("tiny").txt2img.tokenizer
    vectors = torch.randn(3, 32)
    fox = tok("fox", add_special_tokens=False)["input_ids"][0]
    chunks = chunk_prompt(tok, " ".join(["fox"] * 74) + " (emb:1.2) fox", {"emb": vectors})
    assert len(chunks) == 2 and chunks[0].tokens[1:76] == [fox] * 74 + [tok.eos_token_id] and not chunks[0].fixes
    assert chunks[1].tokens[1:5] == [PLACEHOLDER] * 3 + [fox] and chunks[1].weights[1:5] == pytest.approx([1.2] * 3 + [1.0])
    [(offset, placed)] = chunks[1].fixes
    assert offset == 1 and torch.equal(placed, vectors)
    chunks = chunk_prompt(tok, " ".join(["fox"] * 72) + " emb", {"emb": vectors})  # fits exactly
    assert len(chunks) == 1 and chunks[0].fixes[0][0] == 73 and chunks[0].tokens[73:76] == [PLACEHOLDER] * 3
    assert len(chunk_prompt(tok, " ".join(["fox"] * 72) + " emb", {})[0].tokens) == CHUNK_LENGTH + 2


@pytest.mark.parametrize("layout", ["a1111", "diffusers-one", "diffusers-n"])
def test_embedding_files_change_the_image_where_named(engine: Engine, layout: str) -> None:
    scale = engine.models.get("tiny").txt2img.text_encoder.get_input_embeddings().weight.std()
    torch.manual_seed(7)
    vectors = torch.randn(3, 32) * scale
    data = {"a1111": {"emb_params": vectors}, "diffusers-one": {"<tok>": vectors[0]}, "diffusers-n": {"<tok>": vectors}}[layout]
    ref = asset(engine, data, "shiny", layout)
    named, prompt = "a shiny red fox in the snow", "a red fox in the snow"
    with_vectors = draw(engine, prompt=named, embeddings=(ref,))
    assert differ(with_vectors, draw(engine, prompt=named)) > 10
    other = {key: value.flip(0) if value.dim() == 2 and len(value) > 1 else -value for key, value in data.items()}
    assert differ(with_vectors, draw(engine, prompt=named, embeddings=(asset(engine, other, "shiny", layout),))) > 10  # its vectors
    assert differ(draw(engine, prompt=prompt, embeddings=(ref,)), draw(engine, prompt=prompt)) == 0  # absent: nothing
    assert differ(draw(engine, negative_prompt="shiny", embeddings=(ref,)), draw(engine, negative_prompt="shiny")) > 10


def test_kohya_sdxl_embedding_on_the_tiny_sdxl(xl_engine: Engine) -> None:
    pipe = xl_engine.models.get("xl").txt2img
    clip_l = token_vectors(pipe.text_encoder, pipe.tokenizer, "red fox")
    clip_g = token_vectors(pipe.text_encoder_2, pipe.tokenizer_2, "red fox")
    ref = asset(xl_engine, {"clip_l": clip_l, "clip_g": clip_g}, "thing", "kohya-ti")
    # clip_l to the first encoder, clip_g to the second: the same encoding as the words
    with xl_engine.adapters.applied(pipe, spec(model="xl", embeddings=(ref,))):
        ours = encode_prompts(pipe, "a (thing:1.2) in the snow", "thing")
    words = encode_prompts(pipe, "a (red fox:1.2) in the snow", "red fox")
    for mine, theirs in (
        (ours.prompt_embeds, words.prompt_embeds),
        (ours.pooled_prompt_embeds, words.pooled_prompt_embeds),
        (ours.negative_prompt_embeds, words.negative_prompt_embeds),
    ):
        assert mine is not None and theirs is not None and torch.allclose(mine, theirs, atol=1e-4)
    swapped = asset(xl_engine, {"clip_l": clip_g, "clip_g": clip_l * 0.5}, "thing", "kohya-ti")
    with xl_engine.adapters.applied(pipe, spec(model="xl", embeddings=(swapped,))):
        assert (encode_prompts(pipe, "a thing", "").prompt_embeds - encode_prompts(pipe, "a red fox", "").prompt_embeds).abs().max() > 1e-2
    # through the engine: changes the image where named, not elsewhere
    torch.manual_seed(8)
    random_ref = asset(xl_engine, {"clip_l": torch.randn(2, 32) * 20, "clip_g": torch.randn(2, 32) * 20}, "thing", "kohya-ti")
    named = dict(model="xl", prompt="a thing in the snow")
    assert differ(draw(xl_engine, **named, embeddings=(random_ref,)), draw(xl_engine, **named)) > 10
    plain = dict(model="xl", prompt="a fox in the snow")
    assert differ(draw(xl_engine, **plain, embeddings=(random_ref,)), draw(xl_engine, **plain)) == 0


def test_sdxl_kohya_lora_loads_on_the_tiny_sdxl(xl_engine: Engine) -> None:
    xl_pipe = build_tiny_xl(strong_cross_attention=True)
    xl_lora = to_kohya(make_lora(xl_pipe, 3, text_encoders=("text_encoder", "text_encoder_2")), sd1=False)
    ref = asset(xl_engine, xl_lora, "xl-style", "kohya")
    assert differ(draw(xl_engine, model="xl", loras=(ref,)), draw(xl_engine, model="xl")) > 10


def test_sdxl_loha_with_original_block_names(xl_engine: Engine) -> None:
    """kohya's SDXL names (`input_blocks_4_1` = down_blocks.1.attentions.0) and `lora_te2_`."""
    pipe = xl_engine.models.get("xl").txt2img
    torch.manual_seed(9)
    state = {}
    for key, (out_dim, in_dim) in (
        ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", (64, 64)),
        ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", (32, 32)),
    ):
        state |= {
            f"{key}.hada_w1_a": torch.randn(out_dim, 2),
            f"{key}.hada_w1_b": torch.randn(2, in_dim),
            f"{key}.hada_w2_a": torch.randn(out_dim, 2),
            f"{key}.hada_w2_b": torch.randn(2, in_dim),
        }
    ref = asset(xl_engine, state, "xl-loha", "loha")
    named = dict(model="xl", loras=(ref,))
    assert differ(draw(xl_engine, **named), draw(xl_engine, model="xl")) > 10
    for component, path in (
        ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"),
        ("text_encoder_2", "text_model.encoder.layers.0.self_attn.q_proj"),
    ):
        layer = getattr(pipe, component).get_submodule(path)
        assert adapter_name(ref.sha256) in layer.hada_w1_a
