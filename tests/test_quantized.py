"""generation.models.quantized: GGUF transformer files (header facts, refusals, loading with diffusers)
and fp8 weight storage, on a tiny random FLUX.1 / Chroma transformer built here (seconds, offline)."""

from __future__ import annotations

import pickle
import struct
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("gguf")

from diffusers import ChromaTransformer2DModel, FluxTransformer2DModel  # noqa: E402

from generation.models.quantized import load_gguf_transformer, parameter_bytes, read_gguf, store_in_fp8  # noqa: E402
from tests.support.gguf_files import tiny_bfl_widths, write_gguf  # noqa: E402

TINY = dict(
    patch_size=1,
    in_channels=64,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    axes_dims_rope=(4, 6, 6),
)
# Measured (seed 0, float32 compute): Q8_0 0.6% and fp8 e4m3 storage 2.7% of the output's largest magnitude.
Q8_TOLERANCE = 0.02
FP8_TOLERANCE = 0.06


def _pipeline_folder(model: torch.nn.Module, root: Path) -> Path:
    model.save_config(root / "transformer")  # a diffusers pipeline folder, weights left out
    return root


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> tuple[FluxTransformer2DModel, Path]:
    torch.manual_seed(0)
    model = FluxTransformer2DModel(**TINY, pooled_projection_dim=32, guidance_embeds=True).eval()
    return model, _pipeline_folder(model, tmp_path_factory.mktemp("flux"))


def _run(model: torch.nn.Module, dtype: torch.dtype = torch.float32, chroma: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    kwargs = dict(
        hidden_states=torch.randn(1, 16, 64, generator=g).to(dtype), encoder_hidden_states=torch.randn(1, 8, 32, generator=g).to(dtype)
    )
    kwargs.update(timestep=torch.tensor([0.5]), img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3), return_dict=False)
    if not chroma:
        kwargs.update(pooled_projections=torch.randn(1, 32, generator=g).to(dtype), guidance=torch.tensor([3.5]))
    with torch.no_grad():
        return model(**kwargs)[0].float()


def _relative_error(out: torch.Tensor, ref: torch.Tensor, what: str) -> float:
    diff, scale = (out - ref).abs().max().item(), ref.abs().max().item()
    print(f"{what}: max abs diff {diff:.4g}, output max abs {scale:.4g}, relative {diff / scale:.3%}")
    return diff / scale


@pytest.fixture
def width_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_bfl_widths(monkeypatch)


def test_read_gguf_facts(flux, tmp_path: Path) -> None:
    model, _ = flux
    n_params = sum(p.numel() for p in model.parameters())
    for layout, block_key in (("diffusers", "transformer_blocks.0.attn.to_q.weight"), ("bfl", "double_blocks.0.img_attn.qkv.weight")):
        facts = read_gguf(write_gguf(model.state_dict(), tmp_path / f"{layout}.gguf", key_layout=layout))
        assert (facts.key_layout, facts.family, facts.guidance, facts.in_channels) == (layout, "flux", True, 64)
        assert facts.quant_types == {"Q8_0", "F32"} and not facts.unsupported_quant_types
        assert facts.parameters == n_params and facts.architecture == "flux"
        assert facts.model_class == "FluxTransformer2DModel"
        assert facts.tensors[block_key][1] == "Q8_0"
    assert facts.tensors["double_blocks.0.img_attn.qkv.weight"][0] == (96, 32)
    # schnell: no guidance embedding
    schnell = {k: v for k, v in model.state_dict().items() if "guidance_embedder" not in k}
    facts = read_gguf(write_gguf(schnell, tmp_path / "schnell.gguf", key_layout="bfl"))
    assert facts.family == "flux" and not facts.guidance


def test_read_gguf_reads_only_the_header(flux, tmp_path: Path) -> None:
    """A 32 GiB file (sparse: its tensor data is never written) is read in well under a second."""
    import gguf

    path = tmp_path / "big.gguf"
    writer = gguf.GGUFWriter(str(path), arch="flux")
    shape, qtype = (65536, 131072), gguf.GGMLQuantizationType.Q8_0  # 8.6G parameters, 9.1 GB as Q8_0
    nbytes = shape[0] * shape[1] // 32 * 34
    writer.add_tensor_info("x_embedder.weight", gguf.quant_shape_to_byte_shape(shape, qtype), gguf.np.uint8, nbytes, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    with path.open("r+b") as f:
        f.truncate(32 * 1024**3)
    start = time.perf_counter()
    facts = read_gguf(path)
    assert time.perf_counter() - start < 1.0
    assert facts.parameters == shape[0] * shape[1] and facts.tensors["x_embedder.weight"] == (shape, "Q8_0")
    assert facts.family is None


def test_read_gguf_refuses_what_is_not_a_gguf_file(flux, tmp_path: Path) -> None:
    model, _ = flux
    cases = {
        "notes.gguf": (b"just some text\n", "not a GGUF file: it does not start with the GGUF signature"),
        "empty.gguf": (b"", "it is empty"),
        "raw-pickle.gguf": (pickle.dumps({"a": 1}), "Python pickle"),
        "model.gguf": (None, "PyTorch checkpoint (torch.save) renamed .gguf"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        if data is None:
            torch.save(model.state_dict(), path)
        else:
            path.write_bytes(data)
        with pytest.raises(ValueError, match=r"\.gguf file .* instead") as info:
            read_gguf(path)
        assert message in str(info.value) and name in str(info.value)

    good = write_gguf(model.state_dict(), tmp_path / "good.gguf").read_bytes()
    for cut in (20, 200, len(good) // 2, len(good) - 1):
        (tmp_path / "cut.gguf").write_bytes(good[:cut])
        with pytest.raises(ValueError, match="truncated"):
            read_gguf(tmp_path / "cut.gguf")
    huge_count = good[:8] + struct.pack("<Q", 10**12) + good[16:]  # the tensor count
    (tmp_path / "huge.gguf").write_bytes(huge_count)
    with pytest.raises(ValueError, match="too large a header"):
        read_gguf(tmp_path / "huge.gguf")
    # a metadata array claiming 2**60 strings (gguf's own reader would loop over them)
    key = b"general.huge"
    array = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 2**60)
    (tmp_path / "array.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + array + b"\0" * 64)
    with pytest.raises(ValueError, match="truncated GGUF file, or its header is too large"):
        read_gguf(tmp_path / "array.gguf")


def test_gguf_transformer_matches_the_float_model(flux, tmp_path: Path) -> None:
    model, folder = flux
    ref = _run(model)
    path = write_gguf(model.state_dict(), tmp_path / "flux-Q8_0.gguf")
    loaded = load_gguf_transformer(path, FluxTransformer2DModel, folder, torch.float32)
    weight = loaded.transformer_blocks[0].attn.to_q.weight
    assert type(weight).__name__ == "GGUFParameter" and weight.dtype == torch.uint8 and weight.quant_shape == (32, 32)
    quantized = [n for n, p in loaded.named_parameters() if type(p).__name__ == "GGUFParameter"]
    assert len(quantized) == 30  # every Linear weight; biases and norms stay unquantized, in compute_dtype
    assert all(p.dtype == torch.float32 for p in loaded.parameters() if type(p).__name__ != "GGUFParameter")
    assert parameter_bytes(loaded) < 0.3 * parameter_bytes(model)
    assert _relative_error(_run(loaded), ref, "Q8_0 GGUF") < Q8_TOLERANCE
    assert type(loaded.to("cpu").transformer_blocks[0].attn.to_q.weight).__name__ == "GGUFParameter"


def test_bfl_key_names_load_like_diffusers_names(flux, tmp_path: Path, width_shim: None) -> None:
    model, folder = flux
    diffusers_layout = load_gguf_transformer(
        write_gguf(model.state_dict(), tmp_path / "d.gguf"), FluxTransformer2DModel, folder, torch.float32
    )
    bfl = load_gguf_transformer(
        write_gguf(model.state_dict(), tmp_path / "b.gguf", key_layout="bfl"), FluxTransformer2DModel, folder, torch.float32
    )
    assert type(bfl.single_transformer_blocks[0].attn.to_k.weight).__name__ == "GGUFParameter"
    torch.testing.assert_close(_run(bfl), _run(diffusers_layout), rtol=0, atol=1e-6)


def test_load_refuses_a_mismatched_config_or_class(flux, tmp_path: Path) -> None:
    model, folder = flux
    schnell = {k: v for k, v in model.state_dict().items() if "guidance_embedder" not in k}
    path = write_gguf(schnell, tmp_path / "schnell.gguf")
    with pytest.raises(ValueError, match="lacks a guidance embedding .* FLUX.1-schnell"):
        load_gguf_transformer(path, FluxTransformer2DModel, folder, torch.float32)
    with pytest.raises(ValueError, match="load it with FluxTransformer2DModel"):
        load_gguf_transformer(path, ChromaTransformer2DModel, folder, torch.float32)
    with pytest.raises(ValueError, match="no transformer/config.json"):
        load_gguf_transformer(path, FluxTransformer2DModel, tmp_path, torch.float32)


@pytest.mark.parametrize("layout", ["diffusers", "bfl"])
def test_chroma_gguf(tmp_path: Path, layout: str, width_shim: None) -> None:
    torch.manual_seed(0)
    model = ChromaTransformer2DModel(**TINY, approximator_num_channels=64, approximator_hidden_dim=32, approximator_layers=1).eval()
    folder = _pipeline_folder(model, tmp_path / "chroma")
    path = write_gguf(model.state_dict(), tmp_path / "chroma.gguf", key_layout=layout)
    facts = read_gguf(path)
    assert (facts.key_layout, facts.family, facts.guidance, facts.model_class) == (layout, "chroma", False, "ChromaTransformer2DModel")
    loaded = load_gguf_transformer(path, ChromaTransformer2DModel, folder, torch.float32)
    assert type(loaded.distilled_guidance_layer.in_proj.weight).__name__ == "GGUFParameter"
    assert _relative_error(_run(loaded, chroma=True), _run(model, chroma=True), f"Chroma Q8_0 GGUF ({layout})") < Q8_TOLERANCE


def test_lora_on_a_gguf_transformer(flux, tmp_path: Path) -> None:
    """PEFT wraps GGUFLinear like any Linear: the LoRA runs on the dequantized weights (not fusable)."""
    model, folder = flux
    g = torch.Generator().manual_seed(5)
    lora = {}
    for name in ("transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k"):
        lora[f"{name}.lora_A.weight"] = torch.randn(4, 32, generator=g) * 0.3
        lora[f"{name}.lora_B.weight"] = torch.randn(32, 4, generator=g) * 0.3
    loaded = load_gguf_transformer(write_gguf(model.state_dict(), tmp_path / "m.gguf"), FluxTransformer2DModel, folder, torch.float32)
    loaded.load_lora_adapter(dict(lora), adapter_name="style", prefix=None)
    assert type(loaded.transformer_blocks[0].attn.to_q.base_layer).__name__ == "GGUFLinear"
    float_model = FluxTransformer2DModel.from_config(model.config).eval()
    float_model.load_state_dict(model.state_dict())
    float_model.load_lora_adapter(dict(lora), adapter_name="style", prefix=None)
    assert _relative_error(_run(float_model), _run(model), "the LoRA's own effect") > 0.01
    assert _relative_error(_run(loaded), _run(float_model), "Q8_0 GGUF + LoRA") < Q8_TOLERANCE


def test_store_in_fp8_on_cpu(flux) -> None:
    model, _ = flux
    ref = _run(model)
    fp8 = FluxTransformer2DModel.from_config(model.config).eval()
    fp8.load_state_dict(model.state_dict())
    before = parameter_bytes(fp8)
    store_in_fp8(fp8, torch.float32)
    after = parameter_bytes(fp8)
    print(f"fp8 storage: {before} -> {after} parameter bytes")
    assert fp8.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert fp8.transformer_blocks[0].norm1.linear.weight.dtype == torch.float32  # diffusers skips "norm" modules (AdaLN too)
    assert after < 0.5 * before
    assert _relative_error(_run(fp8), ref, "fp8 e4m3 storage") < FP8_TOLERANCE


def test_store_in_fp8_refuses_a_gguf_model(flux, tmp_path: Path) -> None:
    model, folder = flux
    loaded = load_gguf_transformer(write_gguf(model.state_dict(), tmp_path / "m.gguf"), FluxTransformer2DModel, folder, torch.float32)
    with pytest.raises(ValueError, match="already GGUF-quantized"):
        store_in_fp8(loaded, torch.float32)
