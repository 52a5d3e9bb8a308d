"""Annotator files for the controlnet-aux preprocessors, written the way lllyasviel/Annotators
publishes them (`torch.save` of each network's state dict, in each loader's own key layout), with
random weights for the small networks and, for the big ones (openpose's body, hand and face,
lineart_anime: 40-55M parameters each), one constant broadcast over each tensor: a few bytes on
disk, still read by the real loading code (torch.load, controlnet-aux's key mapping,
load_state_dict)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch


def _random(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=generator) * 0.1 if v.is_floating_point() else v) for k, v in model.state_dict().items()}


def _constant(model: torch.nn.Module, value: float = 0.01) -> dict[str, torch.Tensor]:
    return {k: (torch.full((1,), value).expand(v.shape) if v.is_floating_point() else v) for k, v in model.state_dict().items()}


def write_annotators(folder: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.hed import ControlNetHED_Apache2
        from controlnet_aux.lineart import Generator
        from controlnet_aux.lineart_anime import UnetGenerator
        from controlnet_aux.open_pose.face import FaceNet
        from controlnet_aux.open_pose.model import bodypose_model, handpose_model
        from controlnet_aux.pidi.model import pidinet

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(_random(ControlNetHED_Apache2(), 1), folder / "ControlNetHED.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in _random(pidinet(), 2).items()}}, folder / "table5_pidinet.pth")
    torch.save(_random(Generator(3, 1, 3), 3), folder / "sk_model.pth")
    torch.save(_random(Generator(3, 1, 3), 4), folder / "sk_model2.pth")
    norm = functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    torch.save(_constant(UnetGenerator(3, 1, 8, 64, norm_layer=norm, use_dropout=False)), folder / "netG.pth")
    # openpose's Body and Hand map the file's keys by dropping each model key's first part (util.transfer)
    for model, name in ((bodypose_model(), "body_pose_model.pth"), (handpose_model(), "hand_pose_model.pth")):
        torch.save({k.split(".", 1)[1]: v for k, v in _constant(model).items()}, folder / name)
    torch.save(_constant(FaceNet()), folder / "facenet.pth")
    return folder
