"""Uploaded LoRA / LyCORIS / embedding files, inspected from their bytes before anything loads
them (generation.assets.files): every format from files written the way their tools write them,
architectures from shapes, and every kind of bad file refused with a message, without a pickle
ever being opened."""

from __future__ import annotations

import ast
import hashlib
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save

from generation.assets import files as asset_files
from generation.assets.files import (
    AssetError,
    AssetInfo,
    check_architecture,
    inspect_asset,
    inspect_asset_file,
    metadata_hints,
    safe_name_from_filename,
    valid_asset_name,
)
from generation.assets.safetensors_header import MAX_HEADER_BYTES

LIMIT = 256 * 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def as_lora(data: bytes, filename: str = "fox.safetensors", **kwargs) -> AssetInfo:  # type: ignore[no-untyped-def]
    return inspect_asset(data, filename, kind="lora", max_bytes=LIMIT, **kwargs)


def as_embedding(data: bytes, filename: str = "fox.safetensors") -> AssetInfo:
    return inspect_asset(data, filename, kind="embedding", max_bytes=LIMIT)


def refused(data: bytes, *words: str, filename: str = "fox.safetensors", kind: str = "lora", **kwargs) -> str:  # type: ignore[no-untyped-def]
    """The message of the AssetError the file gets; it names the file and holds every word."""
    with pytest.raises(AssetError) as caught:
        inspect_asset(data, filename, kind=kind, max_bytes=kwargs.pop("max_bytes", LIMIT), **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"`{filename}`" in message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def raw_file(header: object, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file written by hand (for the malformed ones)."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def zeros(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.float16)


# --- small models with the real architectures' widths at the boundaries ---------------------------


def unet_of(context: int, *, two_blocks: bool = False):  # type: ignore[no-untyped-def]
    """A UNet with small channels but a real model's cross-attention context width."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=context,
        attention_head_dim=4,
        norm_num_groups=8,
        transformer_layers_per_block=2 if two_blocks else 1,
    )


def text_encoder_of(hidden: int):  # type: ignore[no-untyped-def]
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
    )
    return CLIPTextModel(config)


ATTENTION = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"]  # a plain kohya SD 1.x LoRA's layers
TEXT = ["q_proj", "k_proj", "v_proj", "out_proj"]


def peft_lora(model, targets: list[str], rank: int):  # type: ignore[no-untyped-def]
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights="gaussian"))
    return get_peft_model_state_dict(model)


def saved_lora(tmp: Path, pipeline_class: str, **layers) -> bytes:  # type: ignore[no-untyped-def]
    """Saved by diffusers' own `save_lora_weights`, as training scripts do."""
    import diffusers

    getattr(diffusers, pipeline_class).save_lora_weights(tmp, **layers)
    return (tmp / "pytorch_lora_weights.safetensors").read_bytes()


def to_kohya(data: bytes) -> bytes:
    from diffusers.utils import convert_state_dict_to_kohya

    return save(convert_state_dict_to_kohya(load_safetensors(data)))


@pytest.fixture(scope="module")
def sd1_lora(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """peft LoRA on an SD 1.x-shaped UNet (context 768) and text encoder (768), diffusers format."""
    unet = peft_lora(unet_of(768), ATTENTION, rank=8)
    text = peft_lora(text_encoder_of(768), TEXT, rank=4)
    return saved_lora(tmp_path_factory.mktemp("sd1"), "StableDiffusionPipeline", unet_lora_layers=unet, text_encoder_lora_layers=text)


@pytest.fixture(scope="module")
def sd1_locon(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    unet = peft_lora(unet_of(768), [*ATTENTION, "conv1", "conv2", "conv_shortcut"], rank=4)
    return to_kohya(saved_lora(tmp_path_factory.mktemp("locon"), "StableDiffusionPipeline", unet_lora_layers=unet))


@pytest.fixture(scope="module")
def sdxl_lora(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An SDXL-shaped LoRA: context 2048, two transformer blocks, text encoders of 768 and 1280."""
    unet = peft_lora(unet_of(2048, two_blocks=True), ["to_k", "to_v"], rank=4)
    te1 = peft_lora(text_encoder_of(768), TEXT, rank=4)
    te2 = peft_lora(text_encoder_of(1280), TEXT, rank=4)
    return saved_lora(
        tmp_path_factory.mktemp("sdxl"),
        "StableDiffusionXLPipeline",
        unet_lora_layers=unet,
        text_encoder_lora_layers=te1,
        text_encoder_2_lora_layers=te2,
    )


# --- LoRAs --------------------------------------------------------------------------------------------


def test_diffusers_lora_from_peft(sd1_lora: bytes) -> None:
    header = load_safetensors(sd1_lora)
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight" in header
    assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight" in header
    info = as_lora(sd1_lora)
    assert (info.kind, info.format, info.architecture, info.rank) == ("lora", "diffusers", "sd1", 8)
    assert info.tensors == len(header) and info.modules == len(header) // 2
    assert info.components == ("unet", "te1")
    assert info.size == len(sd1_lora) and info.sha256 == hashlib.sha256(sd1_lora).hexdigest()
    assert info.vectors is None and info.token is None
    assert "diffusers/peft LoRA for SD 1.x, rank 8" in info.summary()
    assert check_architecture(info, "sd1") is None


def test_kohya_lora_converted_by_diffusers(sd1_lora: bytes) -> None:
    kohya = to_kohya(sd1_lora)
    keys = load_safetensors(kohya)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight" in keys
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha" in keys
    assert keys["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"].ndim == 4  # a 1x1 conv in SD 1.x
    assert keys["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha"].dtype == torch.int64
    info = as_lora(kohya)
    # the 1x1 proj_in/proj_out convs every SD 1.x LoRA has do not make it a LoCon
    assert (info.format, info.architecture, info.rank, info.components) == ("kohya", "sd1", 8, ("unet", "te1"))
    assert info.modules == sum(k.endswith(".lora_down.weight") for k in keys)


def test_locon_has_conv_layers(sd1_locon: bytes) -> None:
    keys = load_safetensors(sd1_locon)
    assert keys["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape[2:] == (3, 3)
    info = as_lora(sd1_locon)
    assert (info.format, info.architecture, info.rank, info.components) == ("locon", "sd1", 4, ("unet",))


def test_sdxl_lora_is_refused_for_an_sd1_model(sdxl_lora: bytes) -> None:
    info = as_lora(sdxl_lora)
    assert (info.format, info.architecture, info.components) == ("diffusers", "sdxl", ("unet", "te1", "te2"))
    message = check_architecture(info, "sd1", model="tiny")
    assert message == "it is made for SDXL (2048-wide text features); `tiny` is SD 1.x."
    assert check_architecture(info, "sdxl", model="xl") is None
    assert "SDXL" in (check_architecture(info, "sd2") or "")
    kohya = as_lora(to_kohya(sdxl_lora))
    assert (kohya.format, kohya.architecture) == ("kohya", "sdxl")


def test_the_tiny_model_lora_has_no_known_architecture(tmp_path: Path) -> None:
    """The bot's own tiny model (context 32) is no real architecture: such a LoRA's architecture
    is unknown, so the architecture check refuses it nowhere, and it is described by its widths
    (whether it fits a model is generation.assets.fit's, against the model's layers)."""
    from generation.models.tiny import build_tiny_pipeline

    tiny = build_tiny_pipeline()
    unet = peft_lora(tiny.unet, ATTENTION, rank=2)
    text = peft_lora(tiny.text_encoder, TEXT, rank=2)
    data = saved_lora(tmp_path, "StableDiffusionPipeline", unet_lora_layers=unet, text_encoder_lora_layers=text)
    for blob in (data, to_kohya(data)):
        info = as_lora(blob)
        assert info.architecture is None and info.rank == 2
        assert check_architecture(info, "sd1") is None and check_architecture(info, "sdxl") is None
        assert "LoRA for a model with 32-wide text features, rank 2" in info.summary()
        assert (info.context_width, info.text_width) == (32, 32) and len(info.layers) == info.modules


def kohya_module(name: str, in_dim: int, out_dim: int, rank: int, prefix: str = "lora_unet_") -> dict[str, torch.Tensor]:
    return {
        f"{prefix}{name}.lora_down.weight": zeros(rank, in_dim),
        f"{prefix}{name}.lora_up.weight": zeros(out_dim, rank),
        f"{prefix}{name}.alpha": torch.tensor(float(rank)),
    }


CROSS = "down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_"
SELF = "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
TE_Q = "text_model_encoder_layers_0_self_attn_q_proj"


@pytest.mark.parametrize(
    ("tensors", "architecture"),
    [
        ({**kohya_module(CROSS + "k", 768, 640, 4), **kohya_module(CROSS + "v", 768, 640, 4)}, "sd1"),
        ({**kohya_module(CROSS + "k", 1024, 640, 4), **kohya_module(SELF, 640, 640, 4)}, "sd2"),
        (kohya_module("input_blocks_4_1_transformer_blocks_1_attn2_to_k", 2048, 640, 4), "sdxl"),
        (kohya_module(TE_Q, 768, 768, 4, "lora_te_"), "sd1"),  # text encoder only: by its width
        (kohya_module(TE_Q, 1024, 1024, 4, "lora_te_"), "sd2"),
        ({**kohya_module(TE_Q, 768, 768, 4, "lora_te1_"), **kohya_module(TE_Q, 1280, 1280, 4, "lora_te2_")}, "sdxl"),
        (kohya_module("input_blocks_4_1_transformer_blocks_1_attn1_to_q", 640, 640, 4), "sdxl"),  # names only
        (kohya_module(SELF, 640, 640, 4), None),  # self-attention only: nothing says
        (kohya_module(CROSS + "k", 512, 640, 4), None),  # no SD model has a 512 context
        (
            {**kohya_module(CROSS + "k", 768, 640, 4), **kohya_module(CROSS.replace("down_blocks_1", "up_blocks_1") + "k", 1024, 640, 4)},
            None,
        ),
    ],
)
def test_architecture_from_shapes(tensors: dict[str, torch.Tensor], architecture: str | None) -> None:
    info = as_lora(save(tensors))
    assert (info.format, info.architecture, info.rank) == ("kohya", architecture, 4)


def loha_module(name: str, in_dim: int, out_dim: int, rank: int) -> dict[str, torch.Tensor]:
    base = f"lora_unet_{name}."
    return {
        base + "hada_w1_a": zeros(out_dim, rank),
        base + "hada_w1_b": zeros(rank, in_dim),
        base + "hada_w2_a": zeros(out_dim, rank),
        base + "hada_w2_b": zeros(rank, in_dim),
        base + "alpha": torch.tensor(float(rank)),
    }


def test_loha() -> None:
    tensors = {**loha_module(CROSS + "k", 768, 640, 8), **loha_module(CROSS + "v", 768, 640, 8), **loha_module(SELF, 640, 640, 8)}
    # a conv layer in Tucker form, as LyCORIS writes it: t [r, r, k, k], w_a [r, out], w_b [r, in]
    conv = "lora_unet_down_blocks_1_resnets_0_conv1."
    tensors |= {
        conv + "hada_t1": zeros(8, 8, 3, 3),
        conv + "hada_w1_a": zeros(8, 640),
        conv + "hada_w1_b": zeros(8, 320),
        conv + "hada_t2": zeros(8, 8, 3, 3),
        conv + "hada_w2_a": zeros(8, 640),
        conv + "hada_w2_b": zeros(8, 320),
        conv + "alpha": torch.tensor(8.0),
    }
    info = as_lora(save(tensors))
    assert (info.format, info.architecture, info.rank, info.modules, info.tensors) == ("loha", "sd1", 8, 4, 22)
    del tensors[f"lora_unet_{SELF}.hada_w2_b"]
    refused(save(tensors), "incomplete", "hada_w2_b")


def test_lokr() -> None:
    # kron(w1 [8, 8], w2 [80, 256]) is to_k's [640, 2048]: w2 decomposed at rank 6
    base = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k."
    tensors = {
        base + "lokr_w1": zeros(8, 8),
        base + "lokr_w2_a": zeros(80, 6),
        base + "lokr_w2_b": zeros(6, 256),
        base + "alpha": torch.tensor(6.0),
    }
    q = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q."
    tensors |= {q + "lokr_w1_a": zeros(8, 3), q + "lokr_w1_b": zeros(3, 8), q + "lokr_w2": zeros(80, 80)}
    info = as_lora(save(tensors))
    assert (info.format, info.architecture, info.rank, info.modules) == ("lokr", "sdxl", 6, 2)
    full = as_lora(save({base + "lokr_w1": zeros(4, 4), base + "lokr_w2": zeros(160, 192)}))  # 4*192 = 768
    assert (full.format, full.architecture, full.rank) == ("lokr", "sd1", None)
    assert "full rank" in full.summary()
    refused(save({base + "lokr_w1": zeros(4, 4), base + "lokr_w2_a": zeros(160, 2)}), "lokr_w2")


def test_older_diffusers_naming() -> None:
    proc = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora."
    te = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer."
    tensors = {
        proc + "down.weight": zeros(4, 1024),
        proc + "up.weight": zeros(640, 4),
        te + "down.weight": zeros(4, 1024),
        te + "up.weight": zeros(1024, 4),
    }
    info = as_lora(save(tensors))
    assert (info.format, info.architecture, info.rank, info.components) == ("diffusers", "sd2", 4, ("unet", "te1"))
    peft_keys = {
        "base_model.model.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.lora_A.weight": zeros(2, 768),
        "base_model.model.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.lora_B.weight": zeros(640, 2),
    }
    assert as_lora(save(peft_keys)).architecture == "sd1"


def test_broken_loras() -> None:
    down = f"lora_unet_{SELF}.lora_down.weight"
    refused(save({down: zeros(4, 640)}), "incomplete", "up")
    refused(save({down: zeros(4, 640), f"lora_unet_{SELF}.lora_up.weight": zeros(640, 8)}), "do not fit")
    module = kohya_module(SELF, 640, 640, 4)
    module[f"lora_unet_{SELF}.alpha"] = zeros(4)
    refused(save(module), "alpha")
    refused(save({**kohya_module(SELF, 640, 640, 4), "something_else": zeros(2)}), "does not know", "something_else")
    mixed = {
        **kohya_module(SELF, 640, 640, 4),
        "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": zeros(4, 768),
        "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": zeros(640, 4),
    }
    refused(save(mixed), "mixes")


# --- embeddings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensors", "fmt", "architecture", "vectors", "token"),
    [
        ({"emb_params": torch.randn(2, 768)}, "a1111-ti", "sd1", 2, None),
        ({"emb_params": torch.randn(3, 1024)}, "a1111-ti", "sd2", 3, None),
        ({"string_to_param.*": torch.randn(1, 768)}, "a1111-ti", "sd1", 1, None),
        ({"clip_l": torch.randn(4, 768), "clip_g": torch.randn(4, 1280)}, "kohya-sdxl-ti", "sdxl", 4, None),
        ({"<cat-toy>": torch.randn(768)}, "diffusers-ti", "sd1", 1, "<cat-toy>"),
        ({"<sks>": torch.randn(2, 1024).half()}, "diffusers-ti", "sd2", 2, "<sks>"),
        ({"emb_params": torch.randn(2, 32)}, "a1111-ti", None, 2, None),  # the tiny model's width
    ],
)
def test_embeddings(tensors: dict[str, torch.Tensor], fmt: str, architecture: str | None, vectors: int, token: str | None) -> None:
    info = as_embedding(save(tensors))
    assert (info.kind, info.format, info.architecture, info.vectors, info.token) == ("embedding", fmt, architecture, vectors, token)
    assert info.rank is None and info.modules == 0 and info.tensors == len(tensors)
    if architecture == "sdxl":
        assert check_architecture(info, "sd1", model="tiny") == "it is made for SDXL (768 and 1280-wide vectors); `tiny` is SD 1.x."
    elif architecture == "sd1":
        assert "for SD 1.x" in (check_architecture(info, "sdxl") or "")


def test_bad_embeddings() -> None:
    refused(save({"clip_g": torch.randn(2, 1280)}), "half of an SDXL embedding", kind="embedding")
    refused(save({"clip_l": torch.randn(2, 768), "clip_g": torch.randn(3, 1280)}), "2 vectors", kind="embedding")
    refused(save({"clip_l": torch.randn(2, 1024), "clip_g": torch.randn(2, 1280)}), "not an SDXL", kind="embedding")
    refused(save({"emb_params": torch.randn(100, 768)}), "100 vectors", kind="embedding")
    refused(save({"emb_params": torch.randn(1, 2, 768)}), "not a list of embedding vectors", kind="embedding")
    refused(save({"a": torch.randn(768), "b": torch.randn(768)}), "not a lora", kind="embedding")


def test_an_embedding_uploaded_as_a_lora_and_back(sd1_lora: bytes) -> None:
    refused(save({"emb_params": torch.randn(2, 768)}), "embedding, not a LoRA", "upload it as an embedding")
    refused(sd1_lora, "diffusers/peft LoRA, not an embedding", "upload it as a LoRA", kind="embedding")


# --- full checkpoints -----------------------------------------------------------------------------


def test_full_unet_posing_as_a_lora() -> None:
    unet = save({k: v.contiguous() for k, v in unet_of(768).state_dict().items()})
    assert "down_blocks.0.resnets.0.conv1.weight" in load_safetensors(unet)
    refused(unet, "full model checkpoint", "not a LoRA")
    refused(unet, "full model checkpoint", kind="embedding")
    text = save({k: v.contiguous() for k, v in text_encoder_of(768).state_dict().items()})
    refused(text, "full model checkpoint")


@pytest.mark.parametrize(
    "prefix",
    [
        "model.diffusion_model.input_blocks.0.0.",
        "first_stage_model.encoder.conv_in.",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.",
    ],
)
def test_original_checkpoint_keys(prefix: str) -> None:
    tensors = {prefix + "weight": zeros(4, 4), prefix + "bias": zeros(4), "model.diffusion_model.out.2.weight": zeros(4)}
    refused(save(tensors), "full model checkpoint")
    # a LoRA with a checkpoint's weights baked in is no plain LoRA either
    refused(save({**kohya_module(SELF, 640, 640, 4), prefix + "weight": zeros(4, 4)}), "full model checkpoint")


# --- names and pickles ------------------------------------------------------------------------------


class Payload:
    """Unpickling this opens (creates) the marker file: the code a malicious checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Any unpickling during the test fails it, whatever module does it."""

    def forbidden(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("something tried to unpickle an uploaded file")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


def test_pickles_are_never_opened(tmp_path: Path, no_unpickling: None) -> None:
    marker = tmp_path / "pwned"
    dumped = pickle.dumps(Payload(marker))
    zipped_path = tmp_path / "zipped.pt"
    torch.save({"state_dict": Payload(marker)}, zipped_path)
    zipped = zipped_path.read_bytes()
    assert dumped[:1] == b"\x80" and zipped[:2] == b"PK"
    for name in ("fox.ckpt", "fox.pt", "fox.pth", "fox.bin", "FOX.CKPT"):
        refused(dumped, "pickle", "run", "safetensors.torch.save_file", filename=name)
    refused(dumped, "pickle", "renamed", "save_file", filename="fox.safetensors")
    refused(zipped, "zip", "torch.save", "save_file", filename="fox.safetensors")
    refused(zipped, "pickle", filename="fox.safetensors", kind="embedding")
    refused(pickle.dumps({"a": 1}, protocol=2), "pickle")
    assert not marker.exists()


def test_the_payload_is_live(tmp_path: Path) -> None:
    """The control for the test above: the same payload, unpickled, does create its marker."""
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control))).close()
    assert control.exists()


@pytest.mark.parametrize("filename", ["fox.zip", "fox", "fox.safetensor", "fox.safetensors.txt", "fox.gguf", "877d4110.st"])
def test_a_file_is_judged_by_its_content_not_its_name(filename: str) -> None:
    """A safetensors file under another name (the blob store's `.st`, a browser's renaming) is read
    for what it is; anything else under such a name is refused as not a .safetensors file."""
    info = inspect_asset(save({"emb_params": torch.randn(1, 768)}), filename, kind="embedding", max_bytes=LIMIT)
    assert info.kind == "embedding"
    refused(b"PK\x03\x04" + bytes(64), ".safetensors", filename=filename, kind="embedding")


# --- the safetensors layout ---------------------------------------------------------------------------


def entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_empty_and_short_files() -> None:
    refused(b"", "too short", "0 bytes")
    refused(b"\x01\x00\x00\x00\x00\x00\x00", "too short", "7 bytes")
    refused(struct.pack("<Q", 0), "header")


def test_header_lengths() -> None:
    refused(raw_file({}, length=2**40), "header", f"{2**40:,}", "MiB")
    refused(raw_file({}, length=MAX_HEADER_BYTES + 1), "header", "MiB")
    refused(raw_file({"a": entry("F32", [1], 0, 4)}, b"\0" * 4, length=500), "claims 500 bytes", "cut off")
    refused(raw_file(b"  {}"), "not a JSON object")  # safetensors headers start with `{`


@pytest.mark.parametrize(
    ("header", "data", "words"),
    [
        ([1, 2, 3], b"", ["JSON"]),
        (b'{"a": ', b"", ["not valid JSON"]),
        (b'{"a": 1}\xff', b"", ["not valid JSON"]),
        (b"{" + b'"a":' * 5 + b"[" * 100_000 + b"}", b"", ["JSON"]),
        pytest.param(
            b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
            b"\0" * 4,
            ["twice"],
            id="stricter-duplicate-key",
        ),
        ({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, ["lacks"]),
        ({"a": entry("F32", [True], 0, 4)}, b"\0" * 4, ["shape"]),
        ({"a": entry("F32", [-1], 0, 4)}, b"\0" * 4, ["shape"]),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 4, ["data_offsets"]),
        ({"a": entry("F32", [1], 4, 0)}, b"\0" * 4, ["data_offsets"]),
        ({"a": entry("Q4", [2], 0, 2)}, b"\0" * 2, ["dtype", "Q4"]),
        # valid safetensors, but no LoRA weights sdbot loads; integers only as a scalar alpha
        pytest.param({"a": entry("BOOL", [2], 0, 2)}, b"\0" * 2, ["dtype", "BOOL"], id="stricter-bool"),
        pytest.param({"a": entry("F8_E4M3", [2], 0, 2)}, b"\0" * 2, ["dtype", "F8_E4M3", "F16"], id="stricter-f8"),
        pytest.param({"a": entry("I64", [2], 0, 16)}, b"\0" * 16, ["dtype", "I64"], id="stricter-int-array"),
        ({"a": entry("F32", [4], 0, 1000)}, b"\0" * 16, ["ends at byte 1,000", "only 16"]),  # past the end
        ({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, b"\0" * 12, ["overlaps"]),
        ({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 0, 8)}, b"\0" * 8, ["overlaps"]),
        ({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 12, 20)}, b"\0" * 20, ["stray bytes"]),
        ({"a": entry("F32", [2], 4, 12)}, b"\0" * 12, ["stray bytes"]),
        ({"a": entry("F32", [2], 0, 8)}, b"\0" * 12, ["4 bytes after"]),
        ({"a": entry("F32", [3], 0, 8)}, b"\0" * 8, ["needs 12 bytes", "span 8"]),
        ({"a": entry("F16", [2, 2], 0, 16)}, b"\0" * 16, ["needs 8 bytes"]),
        ({"__metadata__": {"ss_output_name": 3}, "a": entry("F32", [1], 0, 4)}, b"\0" * 4, ["metadata"]),
        ({"__metadata__": ["x"], "a": entry("F32", [1], 0, 4)}, b"\0" * 4, ["metadata"]),
        pytest.param({"__metadata__": {}}, b"", ["no tensors"], id="stricter-no-tensors"),
    ],
)
def test_malformed_files(header: object, data: bytes, words: list[str], request: pytest.FixtureRequest) -> None:
    blob = raw_file(header, data)
    refused(blob, *words)
    if not request.node.callspec.id.startswith("stricter"):  # ids of files the safetensors library would load
        with pytest.raises(Exception):  # noqa: B017 - the safetensors library refuses these too
            load_safetensors(blob)


def test_too_many_tensors() -> None:
    tensors = {f"t{i}": zeros(1) for i in range(6)}
    refused(save(tensors), "6 tensors", "more than the 4", max_tensors=4)
    assert asset_files.MAX_TENSORS >= 5_000  # a fully decomposed SDXL LoKr must fit


def test_size_limit(sd1_lora: bytes) -> None:
    refused(sd1_lora, "over the", "limit", max_bytes=len(sd1_lora) - 1)
    assert as_lora(sd1_lora).size == len(sd1_lora)  # exactly at the limit passes


def test_inspect_a_file(tmp_path: Path, sd1_lora: bytes) -> None:
    path = tmp_path / "upload.bin"  # a blob name: the user's filename is given apart
    path.write_bytes(sd1_lora)
    info = inspect_asset_file(path, kind="lora", max_bytes=LIMIT, filename="fox.safetensors")
    assert info.sha256 == hashlib.sha256(sd1_lora).hexdigest()
    with pytest.raises(AssetError, match="over the"):
        inspect_asset_file(path, kind="lora", max_bytes=100, filename="fox.safetensors")


# --- metadata hints ------------------------------------------------------------------------------------


def test_trigger_words_and_title() -> None:
    frequency = {
        "10_fox": {"red fox": 10, "snow": 3, "forest": 2, "1girl": 1},
        "5_style": {"snow": 9, "  painterly   style ": 4, "red fox": 1, "forest": 2, "bad": "x", "neg": -3},
    }
    metadata = {"ss_output_name": "foxy_v2", "ss_tag_frequency": json.dumps(frequency), "modelspec.title": "Foxy\x00 the\nfox"}
    info = as_lora(save(kohya_module(CROSS + "k", 768, 640, 4), metadata=metadata))
    # summed over datasets: snow 12, red fox 11, forest 4, painterly style 4 (seen later), 1girl 1
    assert info.triggers == ("foxy_v2", "snow", "red fox", "forest", "painterly style", "1girl")
    assert info.title == "Foxy the fox"
    assert "trigger words: foxy_v2, snow" in info.summary()


@pytest.mark.parametrize(
    "frequency",
    [
        "not json",
        "[1, 2]",
        '{"a": [1]}',
        "[" * 100_000,
        json.dumps({"a": {"x" * 1000: 5}}),
        json.dumps({"a": {f"t{i}": 1 for i in range(200_000)}}),
    ],
)
def test_malformed_or_huge_metadata_is_ignored(frequency: str) -> None:
    triggers, title = metadata_hints({"ss_tag_frequency": frequency, "ss_output_name": " \n "})
    assert triggers == () and title is None
    assert as_lora(save(kohya_module(SELF, 640, 640, 4), metadata={"ss_tag_frequency": frequency})).triggers == ()


def test_trigger_words_are_bounded() -> None:
    triggers, title = metadata_hints(
        {
            "ss_output_name": "x" * 10_000,
            "modelspec.title": "t" * 10_000,
            "ss_tag_frequency": json.dumps({"a": {f"tag{i}": i for i in range(1000)}}),
        }
    )
    assert triggers == ("x" * 64, "tag999", "tag998", "tag997", "tag996", "tag995")
    assert title == "t" * 100


# --- names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("fox", True),
        ("Fox_v2.1-final", True),
        ("a" * 64, True),
        ("9lives", True),
        ("", False),
        ("a" * 65, False),
        (".hidden", False),
        ("fox bar", False),
        ("fox:1", False),
        ("fox/../x", False),
        ("<fox>", False),
        ("renard·", False),
        ("fox\n", False),
    ],
)
def test_valid_asset_name(name: str, valid: bool) -> None:
    assert valid_asset_name(name) is valid


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("fox.safetensors", "fox"),
        ("My Fox (v2).SAFETENSORS", "My_Fox_v2"),
        ("../../etc/passwd", "passwd"),
        ("C:\\loras\\renard é.safetensors", "renard_e"),
        (".hidden.safetensors", "hidden"),
        ("???.safetensors", "asset"),
        ("", "asset"),
        ("x" * 100 + ".safetensors", "x" * 64),
        ("fox.ckpt", "fox"),
        ("a..b.safetensors", "a..b"),
    ],
)
def test_safe_name_from_filename(filename: str, name: str) -> None:
    made = safe_name_from_filename(filename)
    assert made == name and valid_asset_name(made)


# --- torch-free -----------------------------------------------------------------------------------------


def test_the_module_is_torch_free() -> None:
    """They import only the standard library (and numpy, for a hypernetwork's tensors), each other,
    generation.errors and the registry's config.models (for architecture names), and load without torch."""
    allowed = {
        "__future__",
        "hashlib",
        "math",
        "json",
        "re",
        "struct",
        "unicodedata",
        "collections.abc",
        "dataclasses",
        "functools",
        "pathlib",
        "typing",
        "config.models",
        "generation.errors",
        "generation.assets.safetensors_header",
        "generation.assets.fit",
        "generation.assets.dit_loras",
        "generation.assets.family_loras",
        "generation.models",  # its tiny_config (from generation.models import tiny_config)
        "generation.models.shapes",
        "generation.models.dit_shapes",
        "generation.models.dit_layers",
        "generation.models.tiny_config",
        "generation.assets.hypernetwork_files",
        # the hypernetwork reader: a restricted pickle reader over the .pt zip, tensors as numpy arrays
        "io",
        "pickle",
        "zipfile",
        "collections",
        "numpy",
        "safetensors.numpy",  # imported when an upload is stored, not at import (checked below)
    }
    modules = (
        "assets/files.py",
        "assets/safetensors_header.py",
        "assets/fit.py",
        "assets/dit_loras.py",
        "assets/family_loras.py",
        "assets/hypernetwork_files.py",
        "models/shapes.py",
        "models/dit_shapes.py",
        "models/dit_layers.py",
    )
    for module in modules:
        tree = ast.parse((ROOT / "generation" / module).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert imported <= allowed, (module, imported - allowed)
    code = (
        "import sys, generation.assets.files, generation.models.shapes, generation.models.dit_shapes; "
        "[generation.models.dit_shapes.tiny_shapes(m) for m in ('tiny-flux', 'tiny-sd3', 'tiny-qwen', 'tiny-zimage', 'tiny-flux2', 'tiny-wan', 'tiny-ltx')]; sys.exit('torch' in sys.modules or 'safetensors' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0
