"""Random-weight face-restoration models of the real architectures, saved as `.safetensors` in
the layout spandrel's detection recognises, so `generation.imaging.faces` can be tested offline.

- GFPGAN (v1.x "clean"): spandrel builds it with fixed hyper-parameters (out_size 512, full
  width), so there is no small variant it would detect; the state dict is ~350 MB in float32.
  We save it in float16 (~175 MB: spandrel copies it into its float32 parameters on load) and
  tests build it once per session. One 512 px forward pass takes a few seconds on a CPU.
- RestoreFormer: spandrel reads the widths and depth from the state dict, so a narrow one (32
  channels, 1 res block per level) is a real RestoreFormer that runs in well under a second.
  Keep its six levels: the bottleneck then sits at 16x16, where its attention is cheap (with
  fewer levels the mid-block attention would run over e.g. 256x256 tokens).

It also draws schematic faces that OpenCV's Haar cascade (the default `FaceDetector`) finds,
for detection tests without a photo or a download: see `face_image`.

Fresh GFPGAN weights inject no noise (the injection weights start at zero) and its output is
far from the input, which is what the tests want: a restored face differs from the original.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFilter
from safetensors.torch import save_file


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def gfpgan_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from spandrel.architectures.GFPGAN import GFPGAN

    _seeded(seed)
    # The same hyper-parameters spandrel's GFPGANArch.load uses (GFPGAN v1.3/v1.4).
    model = GFPGAN(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    return {key: value.detach().contiguous() for key, value in model.state_dict().items()}


def restoreformer_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from spandrel.architectures.RestoreFormer import RestoreFormer

    _seeded(seed)
    # head_size (8), attn_resolutions (16,) and resolution (512) are fixed in spandrel's loader;
    # everything else it reads back from these shapes. GroupNorm needs widths divisible by 32.
    model = RestoreFormer(
        n_embed=64,
        embed_dim=32,
        ch=32,
        ch_mult=(1, 1, 1, 1, 1, 1),
        num_res_blocks=1,
        z_channels=32,
        double_z=False,
        enable_mid=True,
        head_size=8,
    )
    return {key: value.detach().contiguous() for key, value in model.state_dict().items()}


def write_gfpgan(path: Path, seed: int = 0) -> Path:
    # float16 halves the file; loading casts into spandrel's float32 parameters.
    state = {key: value.half() if value.is_floating_point() else value for key, value in gfpgan_state_dict(seed).items()}
    save_file(state, str(path))
    return path


def write_restoreformer(path: Path, seed: int = 0) -> Path:
    save_file(restoreformer_state_dict(seed), str(path))
    return path


def write_not_a_face_model(path: Path) -> Path:
    """A valid safetensors file that no architecture claims."""
    save_file({"weight": torch.randn(8, 8), "bias": torch.randn(8)}, str(path))
    return path


def write_upscaler(path: Path) -> Path:
    """A real spandrel model that is not a face model: a small Real-ESRGAN Compact 2x upscaler."""
    from spandrel.architectures.Compact import Compact

    save_file(Compact(num_feat=8, num_conv=2, upscale=2).state_dict(), str(path))
    return path


def write_codeformer_like(path: Path) -> Path:
    """Only the keys that mark a CodeFormer file (tiny tensors): enough for the loader's header check."""
    keys = [
        "position_emb",
        "idx_pred_layer.1.weight",
        "quantize.embedding.weight",
        "ft_layers.0.self_attn.in_proj_weight",
        "encoder.blocks.0.weight",
    ]
    save_file({key: torch.zeros(2, 2) for key in keys}, str(path))
    return path


# --- drawn faces -------------------------------------------------------------------------------
# Checked against opencv-python-headless 4.14's haarcascade_frontalface_default.xml through
# FaceDetector (equalised grey, scaleFactor 1.1, minNeighbors 5): with blur=2.0, faces 40-70 and
# 100-180 px wide were found at every position tried (one box, centred on the drawing, side
# ~1.2-1.45x the face width). The cascade is quirky in between: at blur 2.0 an 80 px face was found
# at 14 of 33 positions, and at blur 1.5 a 60 px one at none. Without the blur, or drawn without
# supersampling, detection is patchy. Stay with the tested sizes.

SKIN = (224, 180, 150)
BACKGROUND = (70, 80, 95)
SUPERSAMPLE = 4  # draw big, then shrink: anti-aliased edges like a photo's, which the cascade needs


def _draw_face(draw: ImageDraw.ImageDraw, cx: float, cy: float, width: float) -> None:
    height = width * 1.3

    def shade(k: float) -> tuple[int, ...]:
        return tuple(int(c * k) for c in SKIN)

    draw.ellipse([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], fill=SKIN)
    eye_y, eye_dx, r = cy - height * 0.08, width * 0.22, width * 0.09
    for side in (-1, 1):
        x = cx + side * eye_dx
        draw.ellipse([x - r * 1.6, eye_y - r * 1.1, x + r * 1.6, eye_y + r], fill=shade(0.75))  # socket shadow
        draw.ellipse([x - r * 1.1, eye_y - r * 0.55, x + r * 1.1, eye_y + r * 0.55], fill=(235, 235, 235))
        draw.ellipse([x - r * 0.5, eye_y - r * 0.5, x + r * 0.5, eye_y + r * 0.5], fill=(40, 40, 40))  # iris
        draw.rectangle([x - r * 1.4, eye_y - r * 1.9, x + r * 1.4, eye_y - r * 1.35], fill=(60, 40, 30))  # brow
    draw.polygon([(cx, eye_y + r * 0.5), (cx - r * 0.7, cy + height * 0.12), (cx + r * 0.7, cy + height * 0.12)], fill=shade(0.85))
    draw.ellipse([cx - r * 0.9, cy + height * 0.1, cx + r * 0.9, cy + height * 0.15], fill=shade(0.6))  # nostrils
    mouth_y = cy + height * 0.25
    draw.ellipse([cx - width * 0.18, mouth_y - r * 0.45, cx + width * 0.18, mouth_y + r * 0.45], fill=(150, 60, 60))


def face_image(size: tuple[int, int], faces: list[tuple[float, float, float]], blur: float = 2.0) -> Image.Image:
    """An RGB image of `size` with a schematic frontal face per (centre x, centre y, width); each face
    is an oval 1.3x as high as wide, with brows, eyes, nose shadow and mouth, on a grey-blue ground."""
    big = Image.new("RGB", (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), BACKGROUND)
    draw = ImageDraw.Draw(big)
    for cx, cy, width in faces:
        _draw_face(draw, cx * SUPERSAMPLE, cy * SUPERSAMPLE, width * SUPERSAMPLE)
    image = big.resize(size, Image.Resampling.LANCZOS)
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur else image
