"""Live previews in the engine (generation.imaging.previews): latents unpacked from the layout each
pipeline keeps them in (packed by diffusers' own packers here, so a wrong order fails), the linear
projection, the throttle, and previews of real jobs on the tiny model (stills, batches, clips;
linear and a tiny random AutoencoderTiny; none when off)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.imaging.previews import MAX_SIDE, Previewer, linear_rgb, unpack
from generation.jobs import run_job
from generation.models import families
from generation.models.families.latent_rgb import SD1_RGB
from generation.models.loader import ModelCache
from generation.spec import GenerationSpec
from storage.blobs import LocalBlobStore


def latents(batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Every value different, so any misplaced one shows."""
    return torch.arange(batch * channels * height * width, dtype=torch.float32).reshape(batch, channels, height, width)


# --- layouts --------------------------------------------------------------------------------------


def test_flux_qwen_and_flux2_tokens_are_laid_back_on_their_grid() -> None:
    from diffusers import FluxPipeline, QwenImagePipeline
    from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline

    grid = latents(2, 16, 6, 10)  # a 80x48 picture at 1/8: 3x5 tokens of 2x2
    packed = FluxPipeline._pack_latents(grid, 2, 16, 6, 10)
    assert packed.shape == (2, 15, 64)
    assert torch.equal(unpack(packed, families.FLUX.preview, (80, 48)), grid)
    qwen = QwenImagePipeline._pack_latents(grid.unsqueeze(2), 2, 16, 6, 10)  # Qwen-Image packs (b, c, 1, h, w)
    assert torch.equal(unpack(qwen, families.QWEN_IMAGE.preview, (80, 48)), grid)

    wide = latents(1, 32, 6, 10)
    flux2 = Flux2KleinPipeline._pack_latents(Flux2KleinPipeline._patchify_latents(wide))  # 128 features a token
    assert flux2.shape == (1, 15, 128)
    assert torch.equal(unpack(flux2, families.FLUX2_KLEIN.preview, (80, 48)), wide)


def test_a_wrong_patch_order_is_caught() -> None:
    """The check of the check: had unpacking read a token's features as (dy, dx, channel), the
    FLUX test above would fail."""
    from diffusers import FluxPipeline

    grid = latents(1, 16, 4, 4)
    packed = FluxPipeline._pack_latents(grid, 1, 16, 4, 4)
    wrong = packed.reshape(1, 2, 2, 2, 2, 16).permute(0, 5, 1, 3, 2, 4).reshape(1, 16, 4, 4)  # (dy, dx, c)
    assert not torch.equal(wrong, grid)
    assert torch.equal(unpack(packed, families.FLUX.preview, (32, 32)), grid)


def test_clips_show_their_middle_frame() -> None:
    from diffusers import LTXPipeline

    video = torch.arange(1 * 8 * 5 * 2 * 3, dtype=torch.float32).reshape(1, 8, 5, 2, 3)  # (b, c, frames, h, w)
    assert torch.equal(unpack(video, families.WAN.preview, (96, 64), frames=17), video[:, :, 2])  # Wan: 5D as it is
    tokens = LTXPipeline._pack_latents(video)  # LTX-Video: one token per latent pixel, over frames x h x w
    assert tokens.shape == (1, 5 * 2 * 3, 8)
    assert torch.equal(unpack(tokens, families.LTX.preview, (96, 64), frames=33), video[:, :, 2])  # 33 frames: 5 latent frames
    assert unpack(tokens[:, 1:], families.LTX.preview, (96, 64), frames=33) is None  # tokens that fit no grid: no preview


def test_the_linear_projection_is_the_declared_one() -> None:
    one = torch.zeros(1, 4, 1, 1)
    one[0, 0] = 1.0  # channel 0 alone: its row of factors
    rgb = linear_rgb(one, SD1_RGB)[0, 0, 0].tolist()
    assert rgb == [int((f + 1) * 127.5) for f in SD1_RGB.factors[0]]
    generic = linear_rgb(torch.randn(2, 128, 4, 4), None)  # no table of 128 channels: stretched to the full range
    assert generic.shape == (2, 4, 4, 3) and int(generic.min()) == 0 and int(generic.max()) == 255


def test_previews_keep_their_pace() -> None:
    now = [0.0]
    shown: list[bytes] = []
    previewer = Previewer("linear", 1.5, clock=lambda: now[0])
    step = torch.zeros(1, 4, 8, 8)
    with previewer.showing(shown.append):
        for _ in range(40):  # 40 steps 0.1 s apart: the first preview 1.5 s after the first step, then every 1.5 s
            previewer.step(step, families.SD1, (64, 64))
            now[0] += 0.1
    assert len(shown) == 2
    previewer.step(step, families.SD1, (64, 64))  # no task showing previews: none
    assert len(shown) == 2


# --- real jobs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source="tiny")])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")), previews=Previewer("linear", 0.0))


def spec(**changes: object) -> GenerationSpec:
    base: dict[str, object] = dict(
        kind="txt2img", prompt="a red fox", model="tiny", width=64, height=64, steps=4, cfg=7.0, sampler="Euler", seed=7, n=1
    )
    base.update(changes)
    return GenerationSpec(**base)  # type: ignore[arg-type]


def drawn(engine: Engine, job: GenerationSpec) -> list[Image.Image]:
    shown: list[bytes] = []
    with engine.previews.showing(shown.append):
        run_job(engine, job)
    return [Image.open(io.BytesIO(data)) for data in shown]


def test_a_job_shows_a_preview_per_step_when_asked_to(engine: Engine) -> None:
    pictures = drawn(engine, spec())
    assert len(pictures) == 4  # every step at SDBOT_PREVIEW_SECONDS=0
    assert all(p.format == "JPEG" and max(p.size) <= MAX_SIDE for p in pictures)
    [batch] = drawn(engine, spec(n=4, steps=1))  # a batch of four: one 2x2 grid
    assert batch.size == (MAX_SIDE, MAX_SIDE)
    [wide] = drawn(engine, spec(width=128, height=64, steps=1))
    assert wide.size == (MAX_SIDE, MAX_SIDE // 2)


def test_previews_off_show_none(engine: Engine) -> None:
    engine.previews.mode = "off"
    try:
        assert drawn(engine, spec()) == []
    finally:
        engine.previews.mode = "linear"


def test_taesd_previews_come_from_the_tiny_autoencoder(engine: Engine, tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    tiny = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    )
    tiny.save_pretrained(tmp_path / "taesd")
    linear = drawn(engine, spec(steps=1))
    taesd_engine = Engine(engine.models, engine.blobs, previews=Previewer("taesd", 0.0, {"sd1": tmp_path / "taesd"}))
    [taesd] = drawn(taesd_engine, spec(steps=1))
    assert "sd1" in taesd_engine.previews._tiny  # loaded once, kept
    assert taesd.size == (MAX_SIDE, MAX_SIDE)
    assert taesd.tobytes() != linear[0].tobytes()
    other = Previewer("taesd", 0.0, {})  # no tiny autoencoder for the family: linear
    assert other.make(torch.zeros(1, 4, 8, 8), families.SD1, (64, 64)) is not None
