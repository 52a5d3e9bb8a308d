"""What training learned, exported (generation.training.export): peft adapters as kohya LoRA and
LyCORIS LoHa / LoKr files, embeddings as A1111 / kohya files, with kohya's metadata; on the tiny
models. Each adapter is injected the way the trainer injects it, given random non-zero weights,
and drawn with bare diffusers; its file must pass the upload check, fit the model, and draw the
same picture through our engine (and, for a LoRA, through diffusers' `load_lora_weights`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from commands.jobs.model_fit import fit_problem
from config import ModelEntry, ModelRegistry
from generation.assets.adapters import model_architecture
from generation.assets.files import inspect_asset, metadata_hints
from generation.assets.fit import claim_note, metadata_claim
from generation.assets.safetensors_header import read_header
from generation.engine import Engine
from generation.models.loader import ModelCache
from generation.models.tiny import ensure_tiny
from generation.spec import AssetRef
from generation.training.export import adapter_file, embedding_file, tag_frequency, training_metadata
from generation.training.spec import FILE_FORMAT, TrainImage, TrainingSpec
from storage.blobs import LocalBlobStore
from tests.support.tiny_xl import build_tiny_xl
from tests.test_adapters import differ, draw

UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # the trainer's targets
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
ADAPTER = "learned"  # (peft cannot name an adapter "train": the layers' ModuleDicts would shadow Module.train)
PROMPT = "a red fox in the snow"  # tests.test_adapters.draw's prompt, size, steps, sampler and seed
MAX_BYTES = 64 * 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source="tiny")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=1)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


# --- helpers -------------------------------------------------------------------------------------------


def fresh_pipe(folder: Path, xl: bool = False):  # type: ignore[no-untyped-def]
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    pipe = (StableDiffusionXLPipeline if xl else StableDiffusionPipeline).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return pipe


def picture(pipe, prompt: str = PROMPT) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Bare diffusers with what tests.test_adapters.draw asks of the engine."""
    image = pipe(
        prompt, num_inference_steps=4, guidance_scale=7.0, height=64, width=64, generator=torch.Generator("cpu").manual_seed(11)
    ).images[0]
    return np.asarray(image).astype(int)


def encoders(pipe) -> dict[str, torch.nn.Module]:  # type: ignore[no-untyped-def]
    found = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    if getattr(pipe, "text_encoder_2", None) is not None:
        found["text_encoder_2"] = pipe.text_encoder_2
    return found


def inject(pipe, method: str, rank: int, alpha: float, seed: int, **options: Any) -> int:  # type: ignore[no-untyped-def]
    """The trainer's adapter on the UNet and the text encoder(s), its zero-initialised parts
    (LoRA's lora_B, LoHa's hada_w2_b, LoKr's lokr_w1) made random, so that it changes the
    picture; the number of layers it holds."""
    from peft import LoHaConfig, LoKrConfig, LoraConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    torch.manual_seed(seed)  # peft's own initialisation draws from torch's global generator
    for name, model in encoders(pipe).items():
        targets = UNET_TARGETS if name == "unet" else TE_TARGETS
        if method == "lora":
            model.add_adapter(
                LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets, **options), adapter_name=ADAPTER
            )
        else:
            config = (LoHaConfig if method == "loha" else LoKrConfig)(r=rank, alpha=alpha, target_modules=targets, **options)
            inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    generator = torch.Generator().manual_seed(seed)
    layers = 0
    with torch.no_grad():
        for model in encoders(pipe).values():
            for module in model.modules():
                if not isinstance(module, BaseTunerLayer):
                    continue
                layers += 1
                for param_name, param in module.named_parameters():
                    if f".{ADAPTER}" in f".{param_name}" and not param.any():
                        param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return layers


def stored(engine: Engine, data: bytes, name: str, fmt: str, weight: float = 1.0) -> AssetRef:
    key = engine.blobs.put(data, "st")
    return AssetRef(name=name, blob=key, sha256=key.split(".")[0], format=fmt, weight=weight)


def make_spec(method: str = "lora", **changes: Any) -> TrainingSpec:
    base: dict[str, Any] = dict(
        method=method,
        name="my-fox",
        model="tiny",
        trigger="zxfox",
        steps=30,
        rank=4,
        alpha=2.0,
        lr=1e-4,
        resolution=64,
        batch=2,
        seed=5,
        text_encoder=True,
        images=tuple(TrainImage(blob=f"b{i}.png", width=64, height=64, filename=f"{i}.png") for i in range(3)),
    )
    if method == "embedding":
        base |= dict(rank=0, alpha=0, vectors=3, init_word="fox", text_encoder=False, lr=5e-3)
    if method == "dreambooth":
        base |= dict(class_prompt="a fox", class_images=4, prior_weight=1.0)
    base.update(changes)
    return TrainingSpec(**base)


CAPTIONS = ["zxfox, a red fox, snow", "zxfox, a red fox , forest", "ZXFOX,, grass"]


def rescaled(data: bytes, factor: float) -> bytes:
    """The file with every module's change times `factor` (one factor of each module scaled): what
    a wrong scale would load, to show that the comparisons can fail."""
    tensors = load(data)
    first = ("lora_up.weight", "hada_w1_a", "lokr_w1", "lokr_w1_a")
    for key in tensors:
        if key.split(".", 1)[1] in first:
            tensors[key] = tensors[key] * factor
    return save(tensors)


# --- LoRA, LoHa and LoKr on the tiny model ---------------------------------------------------------------

CASES = {
    "lora": ("lora", 4, 2.0, {}),
    "lora-rslora": ("lora", 4, 3.0, {"use_rslora": True}),  # peft's scale alpha / sqrt(r): the file's alpha is alpha * sqrt(r)
    "loha": ("loha", 4, 8.0, {}),
    # rank 8 on 32/64-wide layers: peft keeps w1 and w2 whole (8 >= 8 / 2), A1111 ignores alpha: peft's alpha / r is baked
    "lokr-whole": ("lokr", 8, 2.0, {}),
    "lokr-factored": ("lokr", 2, 1.0, {}),  # w2 = w2_a @ w2_b (rank 2 < 8 / 2): alpha / 2, as peft applies it
    "lokr-both-factored": ("lokr", 1, 3.0, {"decompose_both": True}),  # w1 = w1_a @ w1_b too
}


@pytest.fixture(scope="module")
def plain(models_dir: Path) -> np.ndarray:
    return picture(fresh_pipe(ensure_tiny(models_dir)))


@pytest.mark.parametrize("case", list(CASES))
def test_a_trained_adapter_exports_to_a_file_that_draws_the_same_picture(
    case: str, engine: Engine, models_dir: Path, plain: np.ndarray, tmp_path: Path
) -> None:
    method, rank, alpha, options = CASES[case]
    pipe = fresh_pipe(ensure_tiny(models_dir))
    layers = inject(pipe, method, rank, alpha, seed=3, **options)
    trained = picture(pipe)
    assert differ(trained, plain) > 10  # the adapter changes the picture

    spec = make_spec(method, rank=rank, alpha=alpha)
    meta = training_metadata(
        spec, architecture=model_architecture(pipe), captions=CAPTIONS, steps_done=30, loss=0.125, base_model_name="tiny"
    )
    started = time.perf_counter()
    data = adapter_file(encoders(pipe), ADAPTER, method, meta, sdxl=False)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 5

    # (a) the upload check takes it, as the format it is, and it fits the tiny model layer for layer
    info = inspect_asset(data, "my-fox.safetensors", kind="lora", max_bytes=MAX_BYTES)
    assert info.format == FILE_FORMAT[method] and info.components == ("unet", "te1") and info.modules == layers
    assert info.rank == (None if case == "lokr-whole" else rank)
    assert fit_problem(info, ModelEntry(source="tiny")) is None
    tensors, header_meta = read_header(data)
    assert all(key.startswith(("lora_unet_", "lora_te_")) for key in tensors)
    assert {e.dtype for k, e in tensors.items() if not k.endswith(".alpha")} == {"F16"}
    assert {e.dtype for k, e in tensors.items() if k.endswith(".alpha")} == {"F32"}
    # the metadata comes back as written, and what it claims agrees with the shapes
    assert {k: v for k, v in header_meta.items() if k != "sshs_model_hash"} == meta
    assert header_meta["ss_network_dim"] == str(rank) and header_meta["ss_network_alpha"] == str(alpha)
    assert header_meta["ss_network_module"] == ("networks.lora" if method == "lora" else "lycoris.kohya")
    if method != "lora":
        assert json.loads(header_meta["ss_network_args"]) == {"algo": method}
    claim = info.claim
    assert claim is not None and claim.architecture == "sd1" and not claim.contradicts(info.architecture)
    assert claim_note(claim, info.architecture, fits=True, model="tiny", model_words="SD 1.x", model_architecture="sd1") is None
    assert info.triggers[:2] == ("my-fox", "zxfox") and info.title == "my-fox"

    # (b) through our engine at weight 1: the trained picture
    ours = draw(engine, loras=(stored(engine, data, "my-fox", info.format),))
    assert differ(ours, trained) <= 2, case
    wrong = draw(engine, loras=(stored(engine, rescaled(data, 1.25), "my-fox", info.format),))
    assert differ(wrong, trained) > 2  # a scale off by a quarter is seen
    # (c) a LoRA: bare diffusers' load_lora_weights of the file draws it too
    if method == "lora":
        path = tmp_path / "my-fox.safetensors"
        path.write_bytes(data)
        theirs = fresh_pipe(ensure_tiny(models_dir))
        theirs.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="file")
        assert differ(picture(theirs), trained) <= 2


def test_the_text_encoders_layers_are_in_the_file(models_dir: Path, engine: Engine) -> None:
    """Only the text encoder's adapter: its file alone draws what it drew (the `lora_te_` names
    are found), and a file without it does not."""
    pipe = fresh_pipe(ensure_tiny(models_dir))
    inject(pipe, "lora", 4, 4.0, seed=4)
    data = adapter_file({"text_encoder": pipe.text_encoder}, ADAPTER, "lora", {}, sdxl=False)
    assert all(key.startswith("lora_te_text_model_encoder_layers_") for key in load(data))
    pipe.unet.disable_adapters()
    trained = picture(pipe)
    assert differ(trained, picture(fresh_pipe(ensure_tiny(models_dir)))) > 10
    assert differ(draw(engine, loras=(stored(engine, data, "te-only", "kohya"),)), trained) <= 2


def test_what_kohya_cannot_hold_is_refused(models_dir: Path) -> None:
    from peft import LoraConfig

    pipe = fresh_pipe(ensure_tiny(models_dir))
    with pytest.raises(ValueError, match="no layer"):
        adapter_file(encoders(pipe), ADAPTER, "lora", {}, sdxl=False)
    inject(pipe, "loha", 2, 1.0, seed=1)
    with pytest.raises(ValueError, match="is a loha adapter, not lora"):
        adapter_file(encoders(pipe), ADAPTER, "lora", {}, sdxl=False)
    with pytest.raises(ValueError, match="sdxl=True"):
        adapter_file({"unet": pipe.unet, "text_encoder_2": pipe.text_encoder}, ADAPTER, "loha", {}, sdxl=False)
    with pytest.raises(TypeError, match="strings to strings"):
        adapter_file(encoders(pipe), ADAPTER, "loha", {"ss_steps": 3}, sdxl=False)  # type: ignore[dict-item]
    pipe = fresh_pipe(ensure_tiny(models_dir))
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=UNET_TARGETS, use_dora=True), adapter_name="dora")
    with pytest.raises(ValueError, match="DoRA"):
        adapter_file({"unet": pipe.unet}, "dora", "lora", {}, sdxl=False)


# --- SDXL ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("xl") / "tiny-xl"
    build_tiny_xl(strong_cross_attention=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def xl_engine(xl_folder: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source=str(xl_folder), name="xl")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=1)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("xl-blobs")))


@pytest.mark.parametrize("method", ["lora", "lokr"])
def test_an_sdxl_adapter_exports_with_kohya_sdxl_names(method: str, xl_folder: Path, xl_engine: Engine, tmp_path: Path) -> None:
    pipe = fresh_pipe(xl_folder, xl=True)
    plain = picture(pipe)
    layers = inject(pipe, method, 4 if method == "lora" else 2, 2.0, seed=6)
    trained = picture(pipe)
    assert differ(trained, plain) > 10
    spec = make_spec(method, model="xl")
    meta = training_metadata(
        spec, architecture=model_architecture(pipe), captions=CAPTIONS, steps_done=30, loss=None, base_model_name="tiny-xl"
    )
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    data = adapter_file(encoders(pipe), ADAPTER, method, meta, sdxl=True)  # type: ignore[arg-type]
    keys = set(load(data))
    assert {k.split("_")[1] for k in keys} == {"unet", "te1", "te2"}
    # kohya's SDXL UNet names: the original (SGM) blocks
    assert any(k.startswith("lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k.") for k in keys)
    assert any(k.startswith("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q.") for k in keys)
    assert any(k.startswith("lora_unet_output_blocks_0_1_transformer_blocks_1_attn2_to_out_0.") for k in keys)
    assert not any(k.startswith(("lora_unet_down_blocks", "lora_unet_up_blocks")) for k in keys)
    info = inspect_asset(data, "xl.safetensors", kind="lora", max_bytes=MAX_BYTES)
    assert info.modules == layers and info.components == ("unet", "te1", "te2") and info.format == FILE_FORMAT[method]
    assert fit_problem(info, ModelEntry(source=str(xl_folder), name="xl")) is None
    assert info.claim is not None and info.claim.architecture == "sdxl" and not info.claim.contradicts(info.architecture)

    ours = draw(xl_engine, model="xl", loras=(stored(xl_engine, data, "xl-fox", info.format),))
    assert differ(ours, trained) <= 2
    if method == "lora":
        path = tmp_path / "xl-fox.safetensors"
        path.write_bytes(data)
        theirs = fresh_pipe(xl_folder, xl=True)
        theirs.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="file")
        assert differ(picture(theirs), trained) <= 2


# --- embeddings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3])
def test_an_embedding_exports_to_what_a1111_and_diffusers_read(n: int, engine: Engine, models_dir: Path, tmp_path: Path) -> None:
    """Our engine puts the n vectors where the name's tokens stand (A1111's way); diffusers'
    `load_textual_inversion(path, token=name)` adds the tokens `name`, `name_1` ... `name_{n-1}`
    to the tokenizer and, in `maybe_convert_prompt`, replaces the text `name` by all n. Those are
    the same prompt when the name stands as its own word, in lower case, as here. They differ
    (checked with diffusers 0.42 / transformers 5.5): inside a longer word diffusers still
    replaces it (`shinythings` -> `shinything shinything_1 shinything_2s`; A1111 leaves the word
    alone), and written in another case (`ShinyThing`) the tokenizer still finds the added token
    but the case-sensitive text replacement does not, so diffusers uses only the first of the n
    vectors (A1111, matching lower-cased tokens, uses all n)."""
    name = "shinything"
    pipe = fresh_pipe(ensure_tiny(models_dir))
    scale = pipe.text_encoder.get_input_embeddings().weight.std()
    vectors = torch.randn(n, 32, generator=torch.Generator().manual_seed(n)) * scale
    spec = make_spec("embedding", name=name, vectors=n)
    meta = training_metadata(spec, architecture="sd1", captions=CAPTIONS, steps_done=30, loss=0.2, base_model_name="tiny")
    data = embedding_file({"clip_l": vectors}, meta)

    info = inspect_asset(data, f"{name}.safetensors", kind="embedding", max_bytes=MAX_BYTES)
    assert info.format == "a1111-ti" and info.vectors == n and info.vector_widths == {"clip_l": 32}
    assert fit_problem(info, ModelEntry(source="tiny")) is None
    tensors, header_meta = read_header(data)
    assert set(tensors) == {"emb_params"} and tensors["emb_params"].dtype == "F32" and header_meta == meta
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/textual-inversion" and "ss_network_module" not in meta
    assert torch.equal(load(data)["emb_params"], vectors)

    prompt = f"a photo of {name} in the snow"
    ours = draw(engine, prompt=prompt, embeddings=(stored(engine, data, name, info.format),))
    assert differ(ours, draw(engine, prompt=prompt)) > 10  # the vectors change the picture
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(data)
    pipe.load_textual_inversion(str(path), token=name)
    assert differ(picture(pipe, prompt), ours) <= 2
    flipped = embedding_file({"clip_l": -vectors}, {})
    assert differ(draw(engine, prompt=prompt, embeddings=(stored(engine, flipped, name, "a1111-ti"),)), ours) > 10


def test_an_sdxl_embedding_is_kohyas_clip_l_and_clip_g(xl_engine: Engine) -> None:
    pipe = xl_engine.models.get("xl").txt2img
    torch.manual_seed(2)
    clip_l, clip_g = torch.randn(2, 32) * 20, torch.randn(2, 32) * 20
    data = embedding_file({"clip_l": clip_l, "clip_g": clip_g}, {"modelspec.title": "thing"})
    loaded = load(data)
    assert set(loaded) == {"clip_l", "clip_g"} and torch.equal(loaded["clip_g"], clip_g)
    assert read_header(data)[1] == {"modelspec.title": "thing"}
    ref = stored(xl_engine, data, "thing", "kohya-sdxl-ti")
    named = dict(model="xl", prompt="a thing in the snow")
    assert differ(draw(xl_engine, **named, embeddings=(ref,)), draw(xl_engine, **named)) > 10
    assert pipe is xl_engine.models.get("xl").txt2img
    with pytest.raises(ValueError, match="as many vectors"):
        embedding_file({"clip_l": clip_l, "clip_g": clip_g[:1]}, {})
    with pytest.raises(ValueError, match="clip_l"):
        embedding_file({"emb_params": clip_l}, {})
    with pytest.raises(ValueError, match=r"\[n, width\]"):
        embedding_file({"clip_l": clip_l[0]}, {})


# --- metadata ------------------------------------------------------------------------------------------------


def test_training_metadata_is_kohyas() -> None:
    spec = make_spec("lokr", rank=8, alpha=4.0)
    meta = training_metadata(
        spec,
        architecture="sd1",
        captions=CAPTIONS,
        steps_done=12,
        loss=0.0831,
        base_model_name="v1-5-pruned-emaonly.safetensors",
        started_at=1_700_000_000.0,
    )
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["ss_network_module"] == "lycoris.kohya" and json.loads(meta["ss_network_args"]) == {"algo": "lokr"}
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("8", "4.0")
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_v2"] == "False"
    assert meta["ss_sd_model_name"] == "v1-5-pruned-emaonly.safetensors" and meta["ss_output_name"] == "my-fox"
    assert meta["ss_resolution"] == "(64, 64)" and meta["modelspec.resolution"] == "64x64"
    counts = ("ss_num_train_images", "ss_num_batches_per_epoch", "ss_num_epochs", "ss_epoch", "ss_max_train_steps", "ss_steps")
    assert [meta[key] for key in counts] == ["3", "2", "15", "6", "30", "12"]  # 3 pictures in batches of 2: 2 a epoch
    assert (meta["ss_seed"], meta["ss_learning_rate"], meta["ss_batch_size_per_device"]) == ("5", "0.0001", "2")
    assert meta["ss_training_started_at"] == "1700000000.0" and meta["modelspec.date"] == "2023-11-14T22:13:20+00:00"
    assert float(meta["ss_training_finished_at"]) >= time.time() - 60
    assert json.loads(meta["ss_tag_frequency"]) == {"dataset": {"zxfox": 3, "a red fox": 2, "snow": 1, "forest": 1, "grass": 1}}
    assert "0.0831" in meta["ss_training_comment"] and meta["sdbot.loss"] == "0.0831"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora" and meta["modelspec.implementation"] == "diffusers"
    assert meta["modelspec.trigger_phrase"] == "zxfox" and meta["modelspec.title"] == "my-fox"
    assert metadata_hints(meta) == (("my-fox", "zxfox", "a red fox", "snow", "forest", "grass"), "my-fox")
    # the same run keeps its session id (kohya: which run a file came from); another run has another
    again = training_metadata(spec, architecture="sd1", captions=CAPTIONS, steps_done=30, loss=None, base_model_name="x")
    assert again["ss_session_id"] == meta["ss_session_id"] and "sdbot.loss" not in again
    assert (
        training_metadata(make_spec("lokr", seed=6), architecture="sd1", captions=[], steps_done=1, loss=None, base_model_name="x")[
            "ss_session_id"
        ]
        != meta["ss_session_id"]
    )
    # each architecture's names, as kohya writes them, and as our claim check reads them
    for architecture, version, spec_id in (
        ("sd1", "sd_v1", "stable-diffusion-v1"),
        ("sd2", "sd_v2", "stable-diffusion-v2-512"),
        ("sdxl", "sdxl_base_v1-0", "stable-diffusion-xl-v1-base"),
    ):
        written = training_metadata(make_spec(), architecture=architecture, captions=CAPTIONS, steps_done=1, loss=None, base_model_name="x")
        assert written["ss_base_model_version"] == version and written["modelspec.architecture"] == f"{spec_id}/lora"
        assert written["ss_network_module"] == "networks.lora" and "ss_network_args" not in written
        assert written["ss_v2"] == str(architecture == "sd2")
        claim = metadata_claim(written)
        assert claim is not None and claim.architecture == architecture
    v = training_metadata(make_spec(), architecture="sd2", captions=[], steps_done=1, loss=None, base_model_name="x", v_prediction=True)
    assert v["ss_base_model_version"] == "sd_v2_v" and v["modelspec.architecture"] == "stable-diffusion-v2-768-v/lora"
    assert v["modelspec.prediction_type"] == "v"
    dreambooth = training_metadata(make_spec("dreambooth"), architecture="sd1", captions=[], steps_done=1, loss=None, base_model_name="x")
    assert dreambooth["ss_network_module"] == "networks.lora" and dreambooth["ss_num_reg_images"] == "4"
    assert dreambooth["ss_prior_loss_weight"] == "1.0"
    with pytest.raises(ValueError, match="architecture"):
        training_metadata(make_spec(), architecture="flux", captions=[], steps_done=1, loss=None, base_model_name="x")
    assert tag_frequency(["A, b,, a ", " "]) == {"a": 2, "b": 1}
