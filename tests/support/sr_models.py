"""Random-weight super-resolution model files of real architectures, for offline tests and benches.

Each writer builds spandrel's own implementation of the architecture with small hyperparameters,
takes its `state_dict()` and saves it with `safetensors.torch.save_file`, so the file is loaded by
spandrel's normal architecture detection exactly as a downloaded model would be. Weights are
seeded, so a file (and what it draws) is the same on every run. They draw noise, not detail.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # save_file refuses tensors that share memory or are not contiguous
    save_file({key: value.detach().clone().contiguous() for key, value in state.items()}, str(path))
    return path


@torch.no_grad()
def _calibrate(model: torch.nn.Module, seed: int) -> None:
    """Rescale the last conv so that outputs spread around mid-grey (mean 0.5, std 0.2) instead of
    sitting clamped at 0 or 1, which fresh ESRGAN weights do; a test comparing two all-black
    images would prove nothing."""
    last = [module for module in model.modules() if isinstance(module, torch.nn.Conv2d)][-1]
    probe = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(seed))
    out = model.eval()(probe)
    gain = 0.2 / out.std().clamp_min(1e-6)
    last.weight.mul_(gain)
    last.bias.copy_((last.bias - out.mean()) * gain + 0.5)


def _old_to_new_esrgan(state: dict[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    """Old-arch ESRGAN keys (`model.N...`) to the Real-ESRGAN/basicsr RRDBNet layout (`conv_first`,
    `body.i.rdbj.convk`, `conv_body`, `conv_upN`, `conv_hr`, `conv_last`): the inverse of spandrel's
    `_new_to_old_arch`, so both layouts people ship are covered."""
    # model.0 conv_first, model.1 the trunk, then [upsample, conv, act] per 2x (convs at 3, 6, ...),
    # then the HR conv and the last conv two and four places after the last upconv.
    indices = {int(m.group(1)) for key in state if (m := re.fullmatch(r"model\.(\d+)\.weight", key))}
    upconvs = sorted(index for index in indices if index > 0 and index % 3 == 0)
    last_up = upconvs[-1] if upconvs else 0
    names = {0: "conv_first", last_up + 2: "conv_hr", last_up + 4: "conv_last"}
    names.update({index: f"conv_up{index // 3}" for index in upconvs})
    new = {}
    for key, value in state.items():
        if m := re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d+)\.0\.(weight|bias)", key):
            new[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif m := re.fullmatch(rf"model\.1\.sub\.{num_blocks}\.(weight|bias)", key):
            new[f"conv_body.{m.group(1)}"] = value
        elif (m := re.fullmatch(r"model\.(\d+)\.(weight|bias)", key)) and int(m.group(1)) in names:
            new[f"{names[int(m.group(1))]}.{m.group(2)}"] = value
        else:
            raise KeyError(f"unexpected ESRGAN key {key}")
    return new


def write_esrgan(
    path: Path,
    scale: int = 4,
    num_feat: int = 16,
    num_blocks: int = 1,
    layout: str = "old",
    unshuffle: bool = False,
    seed: int = 0,
) -> Path:
    """ESRGAN (RRDBNet). `layout` "old" is the original ESRGAN key layout (`model.0.weight`, ...),
    "new" the Real-ESRGAN one. `unshuffle=True` writes a Real-ESRGAN x2plus-style model: pixel
    unshuffle by 2 in front of a 4x body, so a 2x model with a multiple-of-4 size requirement."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    if unshuffle:
        if scale != 2:
            raise ValueError("the unshuffle variant is a 2x model")
        model = ESRGAN(in_nc=12, out_nc=3, num_filters=num_feat, num_blocks=num_blocks, scale=4, shuffle_factor=2)
    else:
        model = ESRGAN(in_nc=3, out_nc=3, num_filters=num_feat, num_blocks=num_blocks, scale=scale)
    _calibrate(model, seed)
    state = model.state_dict()
    if layout == "new":
        state = _old_to_new_esrgan(state, num_blocks)
    elif layout != "old":
        raise ValueError(f"layout is 'old' or 'new', not {layout!r}")
    return _save(state, path)


def write_compact(path: Path, scale: int = 4, num_feat: int = 16, num_conv: int = 4, seed: int = 0) -> Path:
    """Real-ESRGAN's SRVGGNetCompact (realesr-general-x4v3 and friends), tiny."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=scale)
    return _save(model.state_dict(), path)


def write_swinir(path: Path, scale: int = 2, embed_dim: int = 12, window_size: int = 8, seed: int = 0) -> Path:
    """SwinIR, classical-SR layout (`pixelshuffle` upsampler), one layer of two blocks.
    window_size 8 as the real SR models use; spandrel reads 7 as a JPEG model (pixel range 255)."""
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    model = SwinIR(
        img_size=32,
        in_chans=3,
        embed_dim=embed_dim,
        depths=[2],
        num_heads=[2],
        window_size=window_size,
        mlp_ratio=2.0,
        upscale=scale,
        img_range=1.0,
        upsampler="pixelshuffle",
        resi_connection="1conv",
    )
    return _save(model.state_dict(), path)


def write_undetectable(path: Path) -> Path:
    """A valid safetensors file that no spandrel architecture claims."""
    torch.manual_seed(0)
    return _save({"foo.weight": torch.randn(4, 4), "foo.bias": torch.randn(4)}, path)


def write_restoration(path: Path) -> Path:
    """A 1x ESRGAN: spandrel loads it fine but calls it a "Restoration" model (denoise, deJPEG)."""
    return write_esrgan(path, scale=1)
