"""CodeFormer in /facefix (issue 37): only where the operator installed spandrel_extra_arches.

CodeFormer's code and weights are under a non-commercial licence, so the default install lacks the
package that carries it; the test extra may have it. Tests that need it skip, saying so, without it.

What each test proves:
- test_without_the_package_the_reply_names_it: with spandrel_extra_arches made unimportable,
  `/facefix --model codeformer` on a CodeFormer file ends in a failure reply that names the
  package, how to install it and why sdbot does not (the non-commercial licence).
- test_codeformer_is_fed_minus_one_to_one_with_its_fidelity: the module gets [-1, 1] (as
  CodeFormer's own inference feeds it, not spandrel's [0, 1]) and the fidelity weight asked for,
  0.5 (CodeFormer's default) when none is; an identity model returns the face unchanged.
- test_fidelity_is_codeformers_alone: a GFPGAN or RestoreFormer restorer refuses a fidelity, and
  `/facefix --fidelity` on a RestoreFormer model fails with a reply saying why; `--fidelity 1.5`
  is refused before anything is queued.
- test_codeformer_loads_through_detection: a random-weight CodeFormer (the real architecture with
  a one-layer, 32-wide transformer) saved as .safetensors is recognised by spandrel_extra_arches'
  detection as a 512 px face model that takes a fidelity, falls back from fp16 and bf16 (which it
  is said to support but does not) to float32, and leaves spandrel's global registry without CodeFormer; a file with CodeFormer's keys but other
  shapes is refused with a ModelLoadError naming the file.
- test_facefix_with_codeformer_through_the_bot: `/facefix --model codeformer --fidelity 0` and
  `--fidelity 1` on an attached picture with a drawn face: each result changed the face, left
  every pixel outside the padded square as it was, records `CodeFormer weight` in its PNG, and
  the two differ (the fidelity reaches the model).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from commands.frame.types import Attachment
from config import Settings
from generation.errors import ModelLoadError
from generation.imaging.faces import FaceDetector, FaceRestorer, expand_box, load_face_restorer
from generation.spec import CODEFORMER_FIDELITY
from tests.support.face_models import face_image, write_codeformer_like, write_restoreformer
from tests.test_service import running_bot

CPU = torch.device("cpu")
PACKAGE = "spandrel_extra_arches"
FACE = face_image((256, 256), [(128, 120, 90)])  # found by the Haar cascade (tests/support/face_models.py)


def needs_package() -> None:
    pytest.importorskip(PACKAGE, reason=f"{PACKAGE} (CodeFormer; non-commercial licence) is not installed (the test extra installs it)")


def write_codeformer(path: Path, seed: int = 0) -> Path:
    """A random CodeFormer of the real architecture. Its VQGAN encoder and generator are fixed in
    spandrel_extra_arches (512 px, 64 to 512 channels; ~64M parameters); the transformer, the
    codebook and the fusion levels are read back from the keys, so they are tiny here: one layer,
    32 wide (the loader always builds 8 heads), 8 codes, fusion at 32 and 64 px (where `--fidelity`
    acts). Saved in float16 (~145 MB); one restore takes a few seconds on a CPU."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    torch.manual_seed(seed)
    model = CodeFormer(dim_embd=32, n_head=8, n_layers=1, codebook_size=8, latent_size=256, connect_list=["32", "64"])
    save_file({key: value.detach().half().contiguous() for key, value in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def codeformer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    needs_package()
    return write_codeformer(tmp_path_factory.mktemp("codeformer") / "codeformer-tiny.safetensors")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def attached() -> tuple[Attachment, ...]:
    return (Attachment("face.png", png(FACE), "image/png"),)


# --- without the package ----------------------------------------------------------------------------


async def test_without_the_package_the_reply_names_it(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, PACKAGE, None)  # `import spandrel_extra_arches` now raises ImportError
    settings.face_restorers = {"codeformer": str(write_codeformer_like(tmp_path / "codeformer.safetensors"))}
    async with running_bot(settings) as bot:
        [(_, queued)] = await bot.send("/facefix --model codeformer", attachments=attached())
        assert queued.kind == "status", queued.text
        [(_, done)] = await bot.finish()
    text = done.reply.text
    assert done.reply.kind == "failure", text
    assert f"pip install {PACKAGE}" in text and "non-commercial" in text and "S-Lab License" in text, text
    assert "GFPGAN" in text  # what works without it


def test_codeformer_is_fed_minus_one_to_one_with_its_fidelity() -> None:
    seen: list[tuple[torch.Tensor, float]] = []

    class IdentityCodeFormer(torch.nn.Module):
        def forward(self, x: torch.Tensor, weight: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
            seen.append((x.clone(), weight))
            return x, torch.zeros(1)

    class Descriptor:
        model = IdentityCodeFormer()
        device, dtype = CPU, torch.float32

    ramp = np.repeat(np.linspace(0, 255, 512).round().astype(np.uint8)[None, :, None], 512, axis=0)
    face = Image.fromarray(np.concatenate([ramp, ramp[:, ::-1], ramp.transpose(1, 0, 2)], axis=-1))  # every value, 0 to 255
    restorer = FaceRestorer("cf", "CodeFormer", 512, Descriptor())
    assert restorer.takes_fidelity
    out = restorer.restore(face)
    restorer.restore(face, fidelity=0.8)
    restorer.restore(face, fidelity=0.0)
    assert [weight for _, weight in seen] == [CODEFORMER_FIDELITY, 0.8, 0.0] and CODEFORMER_FIDELITY == 0.5
    x = seen[0][0]
    assert x.min() == -1 and x.max() == 1  # [-1, 1], not [0, 1]
    assert np.array_equal(np.asarray(out), np.asarray(face))  # and [-1, 1] is read back to the same pixels


async def test_fidelity_is_codeformers_alone(settings: Settings, tmp_path: Path) -> None:
    for architecture in ("GFPGAN", "RestoreFormer"):
        restorer = FaceRestorer("x", architecture, 512, None)
        assert not restorer.takes_fidelity
        with pytest.raises(ValueError, match="no fidelity"):
            restorer.restore(FACE, fidelity=0.5)
    settings.face_restorers = {"restoreformer": str(write_restoreformer(tmp_path / "rf.safetensors"))}
    async with running_bot(settings) as bot:
        [(_, refused)] = await bot.send("/facefix --fidelity 1.5", attachments=attached())
        assert refused.kind == "error" and "--fidelity" in refused.text, refused.text
        [(_, queued)] = await bot.send("/facefix --fidelity 0.7", attachments=attached())
        assert queued.kind == "status", queued.text
        [(_, done)] = await bot.finish()
    assert done.reply.kind == "failure" and "CodeFormer's" in done.reply.text and "RestoreFormer" in done.reply.text, done.reply.text


# --- with the package ------------------------------------------------------------------------------


def test_codeformer_loads_through_detection(codeformer_file: Path, tmp_path: Path) -> None:
    import spandrel

    restorer = load_face_restorer(codeformer_file, CPU, torch.float16)
    assert (restorer.architecture, restorer.size, restorer.name) == ("CodeFormer", 512, "codeformer-tiny")
    assert restorer.descriptor.purpose == "FaceSR" and restorer.takes_fidelity
    assert restorer.descriptor.dtype == torch.float32  # CodeFormer does not run in fp16
    # ...nor in bf16, though spandrel_extra_arches says it does (its codebook lookup mixes dtypes and raises)
    assert load_face_restorer(codeformer_file, CPU, torch.bfloat16).descriptor.dtype == torch.float32
    assert "CodeFormer" not in spandrel.MAIN_REGISTRY  # loaded from a registry of its own
    wrong = write_codeformer_like(tmp_path / "cf-wrong-shapes.safetensors")
    with pytest.raises(ModelLoadError) as error:
        load_face_restorer(wrong, CPU, torch.float32)
    assert "could not be loaded as a face model" in error.value.message and wrong.name in error.value.message


async def test_facefix_with_codeformer_through_the_bot(settings: Settings, tmp_path: Path, codeformer_file: Path) -> None:
    settings.face_restorers = {
        "restoreformer": str(write_restoreformer(tmp_path / "rf.safetensors")),  # the default: codeformer is asked for by name
        "codeformer": str(codeformer_file),
    }
    results = {}
    async with running_bot(settings) as bot:
        for fidelity in ("0", "1"):
            [(_, queued)] = await bot.send(f"/facefix --model CodeFormer --fidelity {fidelity}", attachments=attached())
            assert queued.kind == "status", queued.text
            [(_, done)] = await bot.finish()
            assert done.reply.kind == "result", done.reply.text
            with Image.open(done.reply.images[0].path) as image:
                assert f"Face restoration: codeformer, CodeFormer weight: {fidelity}" in image.text["parameters"]
                results[fidelity] = np.asarray(image.convert("RGB")).astype(int)
    original = np.asarray(FACE).astype(int)
    [box] = FaceDetector().detect(FACE)
    square = expand_box(box, 0.3)
    outside = np.ones(original.shape[:2], bool)
    outside[max(square.y, 0) : square.y + square.height, max(square.x, 0) : square.x + square.width] = False
    face = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
    for fidelity, result in results.items():
        assert result.shape == original.shape
        assert np.array_equal(result[outside], original[outside]), fidelity
        assert np.abs(result[face] - original[face]).mean() > 10, fidelity  # the face was restored (by random weights)
    changed = (results["0"][face] != results["1"][face]).any(-1)
    assert changed.mean() > 0.5 and np.abs(results["0"][face] - results["1"][face]).mean() > 5
