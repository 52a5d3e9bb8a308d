"""Users' LoRAs on FLUX.1 and Chroma: recognised from the header (diffusers/peft, kohya and
ComfyUI/BFL names), checked against the model's transformer from its config
(generation.models.dit_shapes, itself checked against diffusers' classes on the meta device),
uploaded and used through the command layer and the engine, hot-swapped between jobs, at any
weight; every picture compared with bare diffusers (`load_lora_weights` + `set_adapters`).
Every file is built here, on the tiny FLUX.1 and Chroma (seconds on a CPU)."""

from __future__ import annotations

import io
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save, save_file

from commands.frame.types import Attachment
from config import ModelEntry, ModelRegistry
from generation.assets.adapters import adapter_bytes, adapter_name
from generation.assets.dit_adapters import flux_state_dict
from generation.assets.files import inspect_asset
from generation.assets.fit import left_out, lora_misfit
from generation.assets.safetensors_header import AssetError
from generation.engine import Engine
from generation.errors import EngineUserError
from generation.jobs import run_job
from generation.models.dit_shapes import dit_shapes, transformer_layers
from generation.models.files import model_shapes
from generation.models.loader import ModelCache
from generation.models.tiny import build_tiny_pipeline
from generation.models.tiny_dit import ensure_tiny_chroma, ensure_tiny_flux
from generation.spec import AssetRef, GenerationSpec
from storage.blobs import LocalBlobStore
from tests.support.flux_loras import DOUBLE_FUSED, SINGLE_FUSED, make_flux_lora, to_comfyui_flux, to_kohya_flux, widened
from tests.test_adapters import make_lora, to_kohya

PROMPT = "a red fox in the snow"
SETTINGS = dict(width=64, height=64, steps=4, cfg=3.5, seed=11)
# A single block's fused q/k/v/MLP input: kohya/BFL files name it `linear1`, which diffusers splits
# only at FLUX.1's full width, so the kohya and ComfyUI files for the tiny models leave it out.
FUSED_LINEAR1 = r"single_transformer_blocks\.\d+\.(?:attn\.to_[qkv]|proj_mlp)"
FLUX_DEV = {"num_layers": 19, "num_single_layers": 38, "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "architectures": ["CLIPTextModel"]}


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield


@pytest.fixture(scope="module")
def folders(models_dir: Path) -> dict[str, Path]:
    return {"tiny-flux": ensure_tiny_flux(models_dir), "tiny-chroma": ensure_tiny_chroma(models_dir)}


def pipeline(folders: dict[str, Path], model: str):  # type: ignore[no-untyped-def]
    from diffusers import ChromaPipeline, FluxPipeline

    pipe = (FluxPipeline if model == "tiny-flux" else ChromaPipeline).from_pretrained(folders[model])
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def files(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The LoRA files of these tests, by name."""
    folder = tmp_path_factory.mktemp("flux-loras")
    flux, chroma = pipeline(folders, "tiny-flux"), pipeline(folders, "tiny-chroma")
    made = {
        "fox": make_flux_lora(flux.transformer, 1, text_encoder=flux.text_encoder),  # every layer, and CLIP
        "owl": make_flux_lora(flux.transformer, 2, exclude=FUSED_LINEAR1),
        "cat": make_flux_lora(flux.transformer, 3, text_encoder=flux.text_encoder, exclude=FUSED_LINEAR1),
        "clip": make_flux_lora(flux.transformer, 4, text_encoder=flux.text_encoder, include=r"(?!)"),  # CLIP alone
        "chroma": make_flux_lora(chroma.transformer, 5),
        "blocks": make_flux_lora(
            flux.transformer, 6, text_encoder=flux.text_encoder, include=r"(?:single_)?transformer_blocks\..*", exclude=FUSED_LINEAR1
        ),
    }
    made["cat-kohya"] = to_kohya_flux(made["cat"], flux.transformer)
    made["cat-comfyui"] = to_comfyui_flux(made["cat"], flux.transformer)
    made["blocks-kohya"] = to_kohya_flux(made["blocks"], flux.transformer)
    made["fox-kohya"] = to_kohya_flux(made["fox"], flux.transformer)  # with single blocks' linear1
    made["wide"] = widened(made["fox"])
    made["sd"] = to_kohya(make_lora(build_tiny_pipeline(), 1))
    paths = {}
    for name, tensors in made.items():
        paths[name] = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, paths[name])
    return paths


def info_of(path: Path):  # type: ignore[no-untyped-def]
    return inspect_asset(path.read_bytes(), path.name, kind="lora", max_bytes=2**30)


def differ(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


def bare(folders: dict[str, Path], model: str, lora: Path | dict[str, torch.Tensor] | None = None, weight: float = 1.0) -> np.ndarray:
    """Bare diffusers: the model's pipeline, the file loaded with `load_lora_weights`, its weight set
    with `set_adapters`, the same prompt, seed (CPU generator), steps and guidance."""
    pipe = pipeline(folders, model)
    if lora is not None:
        pipe.load_lora_weights(dict(lora) if isinstance(lora, dict) else str(lora), adapter_name="theirs")
        pipe.set_adapters(["theirs"], adapter_weights=[weight])
    image = pipe(
        PROMPT,
        num_inference_steps=SETTINGS["steps"],
        guidance_scale=SETTINGS["cfg"],
        height=SETTINGS["height"],
        width=SETTINGS["width"],
        generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]),
    ).images[0]
    return np.asarray(image).astype(int)


# --- the transformer's shapes, from its config ----------------------------------------------------


@pytest.mark.parametrize(
    ("family", "config"),
    [
        ("flux", {"num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 32}),
        ("flux", FLUX_DEV),
        ("flux", {"guidance_embeds": False, "patch_size": 2, "in_channels": 32, "out_channels": 16, "pooled_projection_dim": 512}),
        ("chroma", {}),
        (
            "chroma",
            {
                "num_layers": 2,
                "num_single_layers": 3,
                "approximator_num_channels": 16,
                "approximator_hidden_dim": 48,
                "approximator_layers": 2,
            },
        ),
    ],
)
def test_dit_shapes_are_the_real_classes_layers(family: str, config: dict) -> None:
    from diffusers import ChromaTransformer2DModel, FluxTransformer2DModel

    with torch.device("meta"):
        model = (FluxTransformer2DModel if family == "flux" else ChromaTransformer2DModel)(**config)
    real = {path: (m.in_features, m.out_features) for path, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    layers, fused = transformer_layers(family, dict(model.config))
    assert {path: (layer.inputs, layer.outputs) for path, layer in layers.items()} == real
    # The fused BFL layers are their parts side by side: kohya's down weight reads their input,
    # its up weight writes all their outputs.
    assert len(fused) == 2 * model.config.num_layers + model.config.num_single_layers
    for path, layer in fused.values():
        kind, index, part = path.split(".", 2)
        block = (model.transformer_blocks if kind == "double_blocks" else model.single_transformer_blocks)[int(index)]
        parts = {**DOUBLE_FUSED, **SINGLE_FUSED}[part]
        assert layer.inputs == model.inner_dim and layer.outputs == sum(block.get_submodule(p).out_features for p in parts)


def test_model_shapes_of_the_tiny_dit_models_and_of_a_folder(folders: dict[str, Path]) -> None:
    flux = model_shapes(ModelEntry(source="tiny-flux"))
    chroma = model_shapes(ModelEntry(source="tiny-chroma"))
    assert flux is not None and chroma is not None
    assert (flux.architecture, flux.width, flux.context_width, flux.text_widths) == ("flux", 32, 32, (32, 32))
    assert "text_encoder" in flux.layers and "text_encoder" not in chroma.layers  # FLUX.1's CLIP; Chroma reads T5 alone
    assert flux.describe() == (
        "FLUX.1 layout at a non-standard size (a 32-wide transformer with 1 double and 1 single blocks, 32-wide text features)"
    )
    from_folder = model_shapes(ModelEntry(source=str(folders["tiny-flux"]), architecture="flux"))
    assert from_folder is not None and from_folder.layers == flux.layers
    assert model_shapes(ModelEntry(source=str(folders["tiny-chroma"]), architecture="chroma")).layers == chroma.layers  # type: ignore[union-attr]
    dev = dit_shapes("flux", FLUX_DEV, CLIP_L)
    assert dev.describe() == "FLUX.1" and dev.width == 3072 and dev.find("transformer", "single_blocks_37_linear1")[1].outputs == 21504  # type: ignore[index]


# --- recognition and the fit, from the header alone -----------------------------------------------


def test_flux_loras_are_recognised_in_every_format(files: dict[str, Path]) -> None:
    for name, fmt, components in (
        ("fox", "diffusers", ("transformer", "te1")),
        ("cat-kohya", "kohya", ("transformer", "te1")),
        ("cat-comfyui", "comfyui", ("transformer", "te1")),
        ("owl", "diffusers", ("transformer",)),
    ):
        info = info_of(files[name])
        assert (info.format, info.architecture, info.components, info.transformer_width) == (fmt, "flux", components, 32), name
        assert info.made_for == "FLUX.1 (a 32-wide transformer)"
    assert info_of(files["fox"]).summary().startswith("diffusers/peft LoRA for FLUX.1, rank 4, 42 layers (transformer, text encoder)")
    assert info_of(files["cat-kohya"]).rank == 12  # q, k and v fused: three rank-4 layers in one

    def refused(tensors: dict[str, torch.Tensor]) -> str:
        with pytest.raises(AssetError) as error:
            inspect_asset(save(tensors), "x.safetensors", kind="lora", max_bytes=2**30)
        return str(error.value)

    pair = {
        "lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": torch.ones(2, 32),
        "lora_unet_double_blocks_0_img_attn_proj.lora_up.weight": torch.ones(32, 2),
    }
    assert "DoRA" in refused({**pair, "lora_unet_double_blocks_0_img_attn_proj.dora_scale": torch.ones(1, 32)})
    assert "LyCORIS" in refused(
        {
            "lora_unet_double_blocks_0_img_attn_proj.lokr_w1": torch.ones(4, 4),
            "lora_unet_double_blocks_0_img_attn_proj.lokr_w2": torch.ones(8, 8),
        }
    )
    assert "mixes" in refused(
        {
            **pair,
            "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.ones(2, 32),
            "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.ones(32, 2),
        }
    )
    assert "down (A) and up (B)" in refused({"diffusion_model.double_blocks.0.img_attn.proj.lora_A.weight": torch.ones(2, 32)})
    with_t5 = inspect_asset(
        save(
            {
                **pair,
                "lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight": torch.ones(2, 8),
                "lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_up.weight": torch.ones(8, 2),
            }
        ),
        "t5.safetensors",
        kind="lora",
        max_bytes=2**30,
    )
    assert with_t5.left_out == 1 and with_t5.modules == 1 and "1 T5 layers left out" in with_t5.summary()


def test_the_fit_against_the_transformer(files: dict[str, Path]) -> None:
    flux, chroma, tiny = (model_shapes(ModelEntry(source=name)) for name in ("tiny-flux", "tiny-chroma", "tiny"))
    fox = info_of(files["fox"])
    assert lora_misfit(fox.layers, flux, "tiny-flux", fox.made_for) is None and left_out(fox.layers, flux) == []  # type: ignore[arg-type]
    for name in ("cat-kohya", "cat-comfyui"):
        assert lora_misfit(info_of(files[name]).layers, flux, "tiny-flux", None) is None, name  # type: ignore[arg-type]
    # On Chroma: what FLUX.1 has and Chroma doesn't (modulation, pooled text, guidance, CLIP) is left out.
    dropped = left_out(fox.layers, chroma)  # type: ignore[arg-type]
    assert lora_misfit(fox.layers, chroma, "tiny-chroma", fox.made_for) is None  # type: ignore[arg-type]
    assert len(dropped) == 22 and "transformer_blocks_0_norm1_linear" in dropped and "time_text_embed_guidance_embedder_linear_1" in dropped
    assert any(name.startswith("text_model_") for name in dropped)
    # A FLUX.1 LoRA for a wider transformer; kohya's fused linear1 at a width diffusers doesn't split.
    wide = info_of(files["wide"])
    assert lora_misfit(wide.layers, flux, "tiny-flux", wide.made_for) == (  # type: ignore[arg-type]
        "it is made for FLUX.1 (a 64-wide transformer); `tiny-flux`'s transformer is 32 wide (layer `context_embedder`: "
        "64 inputs → 64 outputs in the file, 32 inputs → 32 outputs in the model)."
    )
    assert "only for FLUX.1's full width (3072), and `tiny-flux` is 32 wide" in (
        lora_misfit(info_of(files["fox-kohya"]).layers, flux, "tiny-flux", None) or ""  # type: ignore[arg-type]
    )
    # SD on FLUX.1 and FLUX.1 on SD name both kinds of model.
    sd = info_of(files["sd"])
    assert "it changes UNet layers (such as `down_blocks_0_" in (lora_misfit(sd.layers, flux, "tiny-flux", sd.made_for) or "")  # type: ignore[arg-type]
    assert "a transformer model without a UNet" in (lora_misfit(sd.layers, flux, "tiny-flux", sd.made_for) or "")  # type: ignore[arg-type]
    assert "it is made for FLUX.1 (a 32-wide transformer); it changes transformer layers" in (
        lora_misfit(fox.layers, tiny, "tiny", fox.made_for) or ""  # type: ignore[arg-type]
    )


def test_a_full_size_kohya_flux_lora_fits_flux_and_converts_to_its_layers() -> None:
    """A kohya file of FLUX.1-dev's size (rank 1: small), every layer kind kohya trains: it fits
    FLUX.1-dev's shapes from its config, FLUX.1-schnell's and Chroma's with their missing layers
    left out, and diffusers' conversion (with dit_adapters' checks) lands on exactly those layers
    of the real classes (on the meta device)."""
    from diffusers import ChromaTransformer2DModel, FluxPipeline, FluxTransformer2DModel

    dev = dit_shapes("flux", FLUX_DEV, CLIP_L)
    kohya: dict[str, torch.Tensor] = {}
    for layer in [*dev.layers["transformer"].values(), *(fused for _, fused in dev.fused.values())]:
        if layer.sgm:  # the BFL name of a layer or of a fused group
            name = "lora_unet_" + layer.sgm.replace(".", "_")
            kohya[f"{name}.lora_down.weight"] = torch.zeros(1, layer.inputs)
            kohya[f"{name}.lora_up.weight"] = torch.zeros(layer.outputs, 1)
            kohya[f"{name}.alpha"] = torch.tensor(1.0)
    for path, layer in dev.layers["text_encoder"].items():
        name = "lora_te1_" + path.replace(".", "_")
        kohya[f"{name}.lora_down.weight"], kohya[f"{name}.lora_up.weight"] = torch.zeros(1, layer.inputs), torch.zeros(layer.outputs, 1)
    info = inspect_asset(save(kohya), "big.safetensors", kind="lora", max_bytes=2**30)
    assert (info.format, info.transformer_width, info.made_for) == ("kohya", 3072, "FLUX.1 (a 3072-wide transformer)")
    assert lora_misfit(info.layers, dev, "flux-dev", info.made_for) is None and left_out(info.layers, dev) == []
    schnell = dit_shapes("flux", {**FLUX_DEV, "guidance_embeds": False}, CLIP_L)
    assert lora_misfit(info.layers, schnell, "schnell", None) is None and len(left_out(info.layers, schnell)) == 2
    chroma = dit_shapes("chroma", {})
    assert (
        lora_misfit(info.layers, chroma, "chroma", None) is None and len(left_out(info.layers, chroma)) == 2 + 2 + 2 + 19 * 2 + 38 + 1 + 72
    )

    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        transformers = {"flux": FluxTransformer2DModel(**FLUX_DEV), "chroma": ChromaTransformer2DModel()}
        clip = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in CLIP_L.items() if k != "architectures"}))
    ref = AssetRef(name="big", blob="b", sha256="0" * 64, format="kohya", weight=1.0)
    for family, transformer in transformers.items():
        pipe = types.SimpleNamespace(transformer=transformer, text_encoder=clip if family == "flux" else None)
        pipe.lora_state_dict = FluxPipeline.lora_state_dict
        layers, dropped = flux_state_dict(pipe, dict(kohya), ref, family)
        assert dropped == (0 if family == "flux" else 2 + 2 + 2 + 19 * 2 + 38 + 1 + 72)
        shapes = dev if family == "flux" else chroma
        for key, tensor in layers.items():
            component, _, rest = key.partition(".")
            path, _, suffix = rest.rpartition(".lora_")
            target = shapes.layers[component][path]
            assert tuple(tensor.shape) == ((1, target.inputs) if suffix == "A.weight" else (target.outputs, 1)), key
        wanted = (
            {p for p in dev.layers["transformer"]}
            if family == "flux"
            else set(chroma.layers["transformer"]) - {p for p in chroma.layers["transformer"] if p.startswith("distilled_guidance_layer")}
        )
        assert {k.split(".", 1)[1].rpartition(".lora_")[0] for k in layers if k.startswith("transformer.")} == wanted


# --- the engine -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(models_dir: Path, folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source="tiny-flux"), ModelEntry(source="tiny-chroma"), ModelEntry(source="tiny")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=3)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def asset(engine: Engine, path: Path, weight: float = 1.0) -> AssetRef:
    key = engine.blobs.put(path.read_bytes(), "st")
    return AssetRef(name=path.stem, blob=key, sha256=key.split(".")[0], format="x", weight=weight)


def draw(engine: Engine, model: str = "tiny-flux", *loras: AssetRef) -> np.ndarray:
    spec = GenerationSpec(kind="txt2img", prompt=PROMPT, model=model, sampler="Euler", n=1, loras=loras, **SETTINGS)
    [image] = run_job(engine, spec)
    return np.asarray(Image.open(io.BytesIO(image.png)).convert("RGB")).astype(int)


def test_every_format_equals_bare_diffusers_at_any_weight(engine: Engine, files: dict[str, Path], folders: dict[str, Path]) -> None:
    plain = draw(engine)
    assert differ(plain, bare(folders, "tiny-flux")) == 0
    fox = asset(engine, files["fox"])
    with_fox = draw(engine, "tiny-flux", fox)
    assert differ(with_fox, bare(folders, "tiny-flux", files["fox"])) <= 2 and differ(with_fox, plain) > 40
    for weight in (0.3, 1.6):
        ours = draw(engine, "tiny-flux", fox.model_copy(update={"weight": weight}))
        assert differ(ours, bare(folders, "tiny-flux", files["fox"], weight)) <= 2 and differ(ours, with_fox) > 2
    # kohya and ComfyUI files: the same LoRA as the diffusers one, the same pixels. (Bare diffusers
    # 0.42.1 loads neither whole: its kohya conversion leaves x_embedder, context_embedder,
    # time_text_embed, norm_out and proj_out without their prefix, and its loader drops them.)
    cat = draw(engine, "tiny-flux", asset(engine, files["cat"], 0.8))
    assert differ(cat, bare(folders, "tiny-flux", files["cat"], 0.8)) <= 2 and differ(cat, plain) > 40
    for name in ("cat-kohya", "cat-comfyui"):
        assert differ(draw(engine, "tiny-flux", asset(engine, files[name], 0.8)), cat) <= 2, name
    # A kohya file of block layers only: bare diffusers reads it whole, and agrees.
    blocks = draw(engine, "tiny-flux", asset(engine, files["blocks-kohya"]))
    assert differ(blocks, bare(folders, "tiny-flux", files["blocks-kohya"])) <= 2 and differ(blocks, plain) > 20
    # A LoRA of CLIP's layers alone reaches the picture through FLUX.1's pooled CLIP vector.
    clip = draw(engine, "tiny-flux", asset(engine, files["clip"]))
    assert differ(clip, bare(folders, "tiny-flux", files["clip"])) <= 2 and differ(clip, plain) > 2


@pytest.mark.filterwarnings("ignore:Already found a `peft_config`")  # bare diffusers with two adapters
def test_hot_swap_loads_each_file_once_and_nothing_leaks(engine: Engine, files: dict[str, Path], folders: dict[str, Path]) -> None:
    plain = draw(engine)
    pipe = engine.models.get("tiny-flux").txt2img
    transformer = pipe.transformer
    fox, owl = asset(engine, files["fox"]), asset(engine, files["owl"])
    loads, hits = engine.adapters.loads, engine.adapters.hits
    new = sum(adapter_name(ref.sha256) not in engine.adapters.loaded(pipe) for ref in (fox, owl))
    with_fox, with_owl, again = draw(engine, "tiny-flux", fox), draw(engine, "tiny-flux", owl), draw(engine, "tiny-flux", fox)
    after = draw(engine)
    assert differ(after, plain) == 0 and differ(with_fox, again) == 0 and differ(with_fox, with_owl) > 20
    assert engine.adapters.loads == loads + new and engine.adapters.hits == hits + 3 - new
    assert engine.models.get("tiny-flux").txt2img.transformer is transformer  # never reloaded
    both = draw(engine, "tiny-flux", fox, owl.model_copy(update={"weight": 0.5}))  # fox has CLIP layers, owl none
    pipe_b = pipeline(folders, "tiny-flux")
    pipe_b.load_lora_weights(str(files["fox"]), adapter_name="fox")
    pipe_b.load_lora_weights(str(files["owl"]), adapter_name="owl")
    pipe_b.set_adapters(["fox", "owl"], adapter_weights=[1.0, 0.5])
    theirs = pipe_b(
        PROMPT, num_inference_steps=4, guidance_scale=3.5, height=64, width=64, generator=torch.Generator("cpu").manual_seed(11)
    )
    assert differ(both, np.asarray(theirs.images[0]).astype(int)) <= 2
    assert differ(draw(engine), plain) == 0
    # The LRU by bytes: room for one file; the other is deleted from the transformer.
    budget = engine.adapters.budget_bytes
    engine.adapters.budget_bytes = int(max(adapter_bytes(pipe, adapter_name(ref.sha256)) for ref in (fox, owl)) * 1.2)
    try:
        draw(engine, "tiny-flux", owl)
        assert engine.adapters.loaded(pipe) == [adapter_name(owl.sha256)]
        assert adapter_name(fox.sha256) not in pipe.get_list_adapters().get("transformer", [])
        assert differ(draw(engine, "tiny-flux", fox), with_fox) == 0  # loaded again, the same picture
    finally:
        engine.adapters.budget_bytes = budget


def test_chroma_takes_chroma_loras_and_flux_loras_without_flux_only_layers(
    engine: Engine, files: dict[str, Path], folders: dict[str, Path]
) -> None:
    plain = draw(engine, "tiny-chroma")
    ours = draw(engine, "tiny-chroma", asset(engine, files["chroma"], 0.8))
    assert differ(ours, bare(folders, "tiny-chroma", files["chroma"], 0.8)) <= 2 and differ(ours, plain) > 40
    # FLUX.1's LoRA: its modulation, embedder and CLIP layers are left out, the rest applies.
    from safetensors.torch import load_file

    fox = load_file(files["fox"])
    chroma_part = {
        k: v
        for k, v in fox.items()
        if k.startswith("transformer.")
        and not any(p in k for p in ("norm1.linear", "norm1_context.linear", "norm.linear", "norm_out.linear", "time_text_embed."))
    }
    on_chroma = draw(engine, "tiny-chroma", asset(engine, files["fox"], 0.8))
    assert differ(on_chroma, bare(folders, "tiny-chroma", chroma_part, 0.8)) <= 2 and differ(on_chroma, plain) > 20
    assert differ(draw(engine, "tiny-chroma"), plain) == 0


def test_misfits_are_refused_by_the_engine_and_leave_nothing_behind(engine: Engine, files: dict[str, Path]) -> None:
    plain = draw(engine)
    pipe = engine.models.get("tiny-flux").txt2img
    before = pipe.get_list_adapters()
    for name, words in (
        ("sd", "is made for SD 1.x/2.x, and the model `tiny-flux` is FLUX.1"),
        ("wide", "its layer `"),
        ("fox-kohya", "only for FLUX.1's full width (3072)"),
    ):
        with pytest.raises(EngineUserError) as error:
            draw(engine, "tiny-flux", asset(engine, files[name]))
        assert words in str(error.value), (name, str(error.value))
    with pytest.raises(EngineUserError) as error:
        draw(engine, "tiny", asset(engine, files["fox"]))
    assert "made for FLUX.1, and the model `tiny` is SD 1.x" in str(error.value)
    assert pipe.get_list_adapters() == before and differ(draw(engine), plain) == 0


# --- through the command layer --------------------------------------------------------------------


@pytest.fixture
async def flux_bot(settings, folders):  # type: ignore[no-untyped-def]
    from tests.test_service import make_bot

    models = {"tiny-flux": ModelEntry(source="tiny-flux"), "tiny-chroma": ModelEntry(source="tiny-chroma")}
    made = await make_bot(settings.model_copy(update={"models": models}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def upload(bot, path: Path, name: str):  # type: ignore[no-untyped-def]
    [(_, reply)] = await bot.send(f"/lora upload {name}", attachments=(Attachment(path.name, path.read_bytes()),))
    return reply


async def test_upload_list_and_use_on_flux_and_chroma(flux_bot, files: dict[str, Path], folders: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    from tests.test_service import pixels

    bot = flux_bot
    refused = await upload(bot, files["fox"], "fox")  # the person's model is still the SD tiny
    assert refused.kind == "error" and "doesn't fit your model `tiny`" in refused.text and "made for FLUX.1" in refused.text
    await bot.send("/model tiny-flux")
    saved = await upload(bot, files["fox"], "fox")
    assert "Saved the LoRA `fox`" in saved.text and "diffusers · for FLUX.1" in saved.text, saved.text
    assert "It fits your model `tiny-flux`" in saved.text and "every layer it changes is there" in saved.text
    wide = await upload(bot, files["wide"], "wide")
    assert wide.kind == "error" and "it is made for FLUX.1 (a 64-wide transformer); `tiny-flux`'s transformer is 32 wide" in wide.text
    sd_refused = await upload(bot, files["sd"], "sdfox")
    assert sd_refused.kind == "error" and "doesn't fit your model `tiny-flux`" in sd_refused.text and "UNet" in sd_refused.text
    [(_, listing)] = await bot.send("/loras")
    assert "• fox — diffusers · for FLUX.1 · rank 4" in listing.text and "doesn't fit" not in listing.text, listing.text

    options = "--seed 11 --steps 4 --cfg 3.5 --size 64x64"
    [(_, queued)] = await bot.send(f"/imagine {PROMPT} --lora fox:0.8 --model tiny-flux {options}")
    assert queued.kind == "status" and "Skipped" not in queued.text, queued.text
    [(_, with_fox)] = await bot.finish()
    assert differ(pixels(with_fox.reply), bare(folders, "tiny-flux", files["fox"], 0.8)) <= 2
    assert 'Lora hashes: "fox: ' in Image.open(with_fox.reply.images[0].path).text["parameters"]
    await bot.send(f"/imagine {PROMPT} --model tiny-flux {options}")
    [(_, plain)] = await bot.finish()  # the next job, without it: nothing leaks
    assert differ(pixels(plain.reply), bare(folders, "tiny-flux")) <= 2 and differ(pixels(plain.reply), pixels(with_fox.reply)) > 40

    # On Chroma the FLUX.1 LoRA fits without FLUX.1's own layers, and the upload says so.
    await bot.send("/model tiny-chroma")
    on_chroma = await upload(bot, files["cat-kohya"], "cat")
    assert "22 of its 34 layers are FLUX.1 layers this model doesn't have" in on_chroma.text, on_chroma.text

    # An SD LoRA on FLUX.1 and a FLUX.1 LoRA on SD: skipped, one line naming both.
    await bot.send("/model tiny")
    assert "Saved the LoRA `sdfox`" in (await upload(bot, files["sd"], "sdfox")).text
    [(_, skipped)] = await bot.send(f"/imagine {PROMPT} --lora sdfox:1 --model tiny-flux {options}")
    assert "Skipped the LoRA `sdfox`, which doesn't fit the model `tiny-flux`: " in skipped.text, skipped.text
    assert "it changes UNet layers" in skipped.text and "a transformer model without a UNet" in skipped.text
    [(_, skipped_sd)] = await bot.send(f"/imagine {PROMPT} --lora fox:1 --model tiny --seed 11 --steps 2 --size 64x64")
    assert "Skipped the LoRA `fox`, which doesn't fit the model `tiny`: it is made for FLUX.1 (a 32-wide transformer)" in skipped_sd.text
    done = await bot.finish()
    assert [item.reply.kind for _, item in done] == ["result", "result"]
    assert differ(pixels(done[0][1].reply), pixels(plain.reply)) <= 2  # the FLUX.1 job drew without the SD LoRA
