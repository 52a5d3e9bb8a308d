"""Does a file fit a model (generation.assets.fit), judged torch-free from its header and the
model's configs. The files are the ones the engine loads in tests/test_adapters.py (diffusers,
kohya, LoCon, LoHa, LoKr, SDXL's original block names, embeddings), so "fits" here means "the
engine loads it"; each is also checked against a model it does not fit, and the reply names the
layer and both shapes. The metadata's claims are read and weighed against the shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from config.models import ModelEntry
from generation.assets.files import AssetInfo, inspect_asset
from generation.assets.fit import Claim, claim_note, embedding_misfit, lora_misfit, metadata_claim
from generation.models.files import model_shapes
from generation.models.shapes import ModelShapes, shapes_of_folder
from generation.models.tiny import build_tiny_pipeline
from tests.support.tiny_xl import build_tiny_xl
from tests.test_adapters import make_lora, make_lycoris, to_kohya

LIMIT = 64 * 1024 * 1024


def lora(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> AssetInfo:
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    return inspect_asset(data, "fox.safetensors", kind="lora", max_bytes=LIMIT)


def embedding(tensors: dict[str, torch.Tensor]) -> AssetInfo:
    return inspect_asset(save(tensors), "emb.safetensors", kind="embedding", max_bytes=LIMIT)


@pytest.fixture(scope="module")
def tiny() -> ModelShapes:
    shapes = model_shapes(ModelEntry(source="tiny"))
    assert shapes is not None
    return shapes


@pytest.fixture(scope="module")
def xl(tmp_path_factory: pytest.TempPathFactory) -> ModelShapes:
    folder = tmp_path_factory.mktemp("xl") / "tiny-xl"
    build_tiny_xl().save_pretrained(folder)
    shapes = shapes_of_folder(folder)
    assert shapes is not None
    return shapes


def test_the_files_the_engine_loads_fit_their_model_and_not_the_other(tiny: ModelShapes, xl: ModelShapes) -> None:
    pipe, xl_pipe = build_tiny_pipeline(), build_tiny_xl()
    tiny_files = {
        "diffusers": make_lora(pipe, 1),
        "kohya": to_kohya(make_lora(build_tiny_pipeline(), 1)),
        "loha": make_lycoris(pipe, "loha", 2)[0],
        "lokr": make_lycoris(pipe, "lokr", 2)[0],
    }
    for fmt, tensors in tiny_files.items():
        info = lora(tensors)
        assert lora_misfit(info.layers, tiny, "tiny", info.made_for) is None, fmt
        assert len(info.layers) == info.modules, fmt
        reason = lora_misfit(info.layers, xl, "xl", info.made_for)
        made_for = "32-wide text features" if fmt in ("diffusers", "kohya") else "a 32-wide text encoder"  # LyCORIS: no attn2
        assert reason is not None and reason.startswith(f"it is made for a model with {made_for}") and "`xl`" in reason, (fmt, reason)
    xl_info = lora(to_kohya(make_lora(xl_pipe, 3, text_encoders=("text_encoder", "text_encoder_2")), sd1=False))
    assert lora_misfit(xl_info.layers, xl, "xl", xl_info.made_for) is None
    reason = lora_misfit(xl_info.layers, tiny, "tiny", xl_info.made_for)
    assert reason is not None and "`tiny`" in reason


def test_sdxl_original_names_and_conv_layers(tiny: ModelShapes, xl: ModelShapes) -> None:
    """kohya's SDXL block names (input_blocks_4_1 = down_blocks.1.attentions.0), a LoCon 3x3 conv
    with and without a Tucker middle, against the tiny SDXL; a wrong kernel does not fit."""
    key = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    conv = "lora_unet_input_blocks_1_0_in_layers_2"  # down_blocks.0.resnets.0.conv1: 32 -> 32, 3x3
    files = {
        "sgm loha": {
            f"{key}.hada_w1_a": torch.ones(64, 2),
            f"{key}.hada_w1_b": torch.ones(2, 64),
            f"{key}.hada_w2_a": torch.ones(64, 2),
            f"{key}.hada_w2_b": torch.ones(2, 64),
        },
        "locon": {f"{conv}.lora_down.weight": torch.ones(4, 32, 3, 3), f"{conv}.lora_up.weight": torch.ones(32, 4, 1, 1)},
        "locon tucker": {
            f"{conv}.lora_down.weight": torch.ones(4, 32, 1, 1),
            f"{conv}.lora_mid.weight": torch.ones(4, 4, 3, 3),
            f"{conv}.lora_up.weight": torch.ones(32, 4, 1, 1),
        },
    }
    for what, tensors in files.items():
        info = lora(tensors)
        assert lora_misfit(info.layers, xl, "xl", info.made_for) is None, what
    wrong_kernel = lora({f"{conv}.lora_down.weight": torch.ones(4, 32, 1, 1), f"{conv}.lora_up.weight": torch.ones(32, 4, 1, 1)})
    reason = lora_misfit(wrong_kernel.layers, xl, "xl", wrong_kernel.made_for)
    assert reason is not None and "`down_blocks.0.resnets.0.conv1`: 32 inputs → 32 outputs in the file" in reason
    assert "32 inputs → 32 outputs, 3×3 kernel in the model" in reason


def test_what_does_not_fit_is_said_with_both_shapes(tiny: ModelShapes, xl: ModelShapes) -> None:
    cross = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    sdxl_shaped = lora({f"{cross}.lora_down.weight": torch.ones(4, 2048), f"{cross}.lora_up.weight": torch.ones(640, 4)})
    assert lora_misfit(sdxl_shaped.layers, tiny, "tiny", sdxl_shaped.made_for) == (
        "it is made for SDXL (2048-wide text features); `tiny` uses 32-wide text features (layer "
        "`down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k`: 2048 inputs → 640 outputs in the file, "
        "32 inputs → 32 outputs in the model)."
    )
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    sd2_text = lora({f"{te}.lora_down.weight": torch.ones(4, 1024), f"{te}.lora_up.weight": torch.ones(1024, 4)})
    reason = lora_misfit(sd2_text.layers, tiny, "tiny", sd2_text.made_for)
    assert reason is not None and reason.startswith("it is made for SD 2.x (a 1024-wide text encoder); `tiny`'s text encoder is 32 wide")
    missing = "lora_unet_down_blocks_0_attentions_1_proj_in"  # tiny has one layer per block
    absent = lora({f"{missing}.lora_down.weight": torch.ones(2, 32), f"{missing}.lora_up.weight": torch.ones(32, 2)})
    assert "it changes the layer `down_blocks_0_attentions_1_proj_in`, which `tiny` does not have" in (
        lora_misfit(absent.layers, tiny, "tiny", absent.made_for) or ""
    )
    te2 = "lora_te2_text_model_encoder_layers_0_self_attn_q_proj"
    second = lora({f"{te2}.lora_down.weight": torch.ones(2, 32), f"{te2}.lora_up.weight": torch.ones(32, 2)})
    assert "it changes a second text encoder (`text_model_encoder_layers_0_self_attn_q_proj`), and `tiny` has 1 text encoder" in (
        lora_misfit(second.layers, tiny, "tiny", second.made_for) or ""
    )
    assert lora_misfit(second.layers, xl, "xl", second.made_for) is None


def test_embeddings_fit_by_their_vector_widths(tiny: ModelShapes, xl: ModelShapes) -> None:
    ours = embedding({"emb_params": torch.randn(2, 32)})
    assert embedding_misfit(ours.vector_widths, tiny, "tiny", ours.made_for) is None
    assert embedding_misfit(ours.vector_widths, xl, "xl", ours.made_for) == (
        "it is made for a model with 32-wide vectors: it holds vectors for 1 text encoder, and `xl` has 2 (32 and 32 wide)."
    )
    sd1 = embedding({"emb_params": torch.randn(2, 768)})
    assert embedding_misfit(sd1.vector_widths, tiny, "tiny", sd1.made_for) == (
        "it is made for SD 1.x (768-wide vectors); `tiny`'s text encoder takes 32-wide vectors (its `clip_l` vectors are 768 wide)."
    )
    both = {"clip_l": 32, "clip_g": 32}  # the tiny SDXL's widths, as a kohya SDXL embedding would hold them
    assert embedding_misfit(both, xl, "xl", None) is None and embedding_misfit({"clip_l": 32, "clip_g": 16}, xl, "xl", None)


@pytest.mark.parametrize(
    ("metadata", "architecture", "source"),
    [
        ({"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}, "sdxl", "modelspec.architecture"),
        ({"modelspec.architecture": "stable-diffusion-v2-768-v/lora", "ss_base_model_version": "sd_v1"}, "sd2", "modelspec.architecture"),
        ({"modelspec.architecture": "flux-1-dev/lora"}, "flux", "modelspec.architecture"),
        ({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl", "ss_base_model_version"),
        ({"ss_base_model_version": "sd_v1"}, "sd1", "ss_base_model_version"),
        ({"ss_v2": "True"}, "sd2", "ss_v2"),
        ({"ss_v2": "False", "ss_sd_model_name": "sd_xl_base_1.0.safetensors"}, "sd1", "ss_v2"),
        ({"ss_sd_model_name": "sd_xl_base_1.0.safetensors"}, "sdxl", "ss_sd_model_name"),
        ({"ss_sd_model_name": "v1-5-pruned-emaonly.safetensors"}, "sd1", "ss_sd_model_name"),
        ({"ss_sd_model_name": "v2-1_768-ema-pruned.ckpt"}, "sd2", "ss_sd_model_name"),
    ],
)
def test_metadata_claims(metadata: dict[str, str], architecture: str | None, source: str) -> None:
    claim = metadata_claim(metadata)
    assert claim is not None and claim.architecture == architecture and claim.source.startswith(f"`{source}: ")


def test_no_claim_and_claims_against_the_shapes() -> None:
    assert metadata_claim({}) is None and metadata_claim({"ss_sd_model_name": "dreamshaper_8.safetensors"}) is None
    sdxl = Claim("sdxl", "SDXL", "`ss_base_model_version: sdxl_base_v1-0`")
    assert claim_note(sdxl, "sd1", fits=True, model="tiny", model_words="SD 1.x", model_architecture="sd1") == (
        "Its metadata says it was made for SDXL (`ss_base_model_version: sdxl_base_v1-0`), but its layers are shaped "
        "for SD 1.x; I went by the layers."
    )
    assert "but its layers fit `tiny` (tiny's words)" in (
        claim_note(sdxl, None, fits=True, model="tiny", model_words="tiny's words", model_architecture=None) or ""
    )
    assert claim_note(sdxl, "sdxl", fits=True, model="xl", model_words="SDXL", model_architecture="sdxl") is None
    info = lora(
        {"lora_unet_x_attn2_to_k.lora_down.weight": torch.ones(2, 32), "lora_unet_x_attn2_to_k.lora_up.weight": torch.ones(32, 2)},
        {"ss_base_model_version": "sdxl_base_v1-0"},
    )
    assert info.claim == sdxl and info.made_for == "a model with 32-wide text features"


def test_a_stored_file_is_read_from_its_header_alone(tmp_path: Path) -> None:
    from generation.assets.files import inspect_stored

    tensors = to_kohya(make_lora(build_tiny_pipeline(), 1))
    data = save(tensors, metadata={"ss_v2": "False"})
    path = tmp_path / "blob.st"
    path.write_bytes(data)
    uploaded = inspect_asset(data, "fox.safetensors", kind="lora", max_bytes=LIMIT)
    stored = inspect_stored(path, kind="lora", sha256=uploaded.sha256)
    assert stored == uploaded and stored.layers == uploaded.layers and stored.claim == uploaded.claim
