"""The preprocessors that are networks, loaded through the real code from files where an admin puts
them: a tiny random DPT depth model saved with `save_pretrained` (SDBOT_DEPTH_MODEL), and
controlnet-aux's annotator files (SDBOT_ANNOTATORS, tests/support/annotator_files.py). Each map sdbot makes
is what the library itself gives for the same picture; a missing file is a clear error."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from config import ModelEntry, ModelRegistry
from generation.control.annotators import FILES
from generation.engine import Engine
from generation.errors import ModelLoadError
from generation.jobs import render_job
from generation.models.loader import ModelCache
from generation.spec import ControlRef, GenerationSpec
from generation.tools import Tools
from storage.blobs import LocalBlobStore
from tests.support.annotator_files import write_annotators

CPU = torch.device("cpu")


def write_tiny_dpt(folder: Path) -> Path:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[16, 16, 32, 32],
        reassemble_factors=[4, 2, 1, 0.5],
        fusion_hidden_size=16,
    )
    DPTForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("preprocessors")
    return {"depth": write_tiny_dpt(root / "dpt"), "annotators": write_annotators(root / "annotators")}


@pytest.fixture(scope="module")
def engine(models_dir: Path, files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Engine:
    tools = Tools(device=CPU, dtype=torch.float32, depth_model=str(files["depth"]), annotators=files["annotators"])
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, CPU, torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("preprocessor-blobs")), tools)


@pytest.fixture(scope="module")
def photo(engine: Engine) -> tuple[str, Image.Image]:
    rng = np.random.default_rng(5)
    image = Image.fromarray((rng.random((64, 64, 3)) * 80 + 100).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((12, 6, 44, 58), fill=(30, 40, 60))
    draw.line((0, 63, 63, 0), fill=(250, 250, 250), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png"), image


def map_of(engine: Engine, key: str, type_: str, preprocessor: str) -> np.ndarray:
    ref = ControlRef(type=type_, model=f"tiny-{type_}", preprocessor=preprocessor, image=key)  # type: ignore[arg-type]
    job = GenerationSpec(
        kind="txt2img", prompt="a fox", model="tiny", width=64, height=64, steps=2, cfg=7.0, sampler="Euler", seed=1, controls=(ref,)
    )
    rendered = render_job(engine, job)
    return np.asarray(Image.open(io.BytesIO(rendered.maps[0])).convert("RGB")).astype(int)


def test_depth_map_is_the_depth_pipelines(engine: Engine, photo: tuple[str, Image.Image], files: dict[str, Path]) -> None:
    from transformers import pipeline

    key, image = photo
    ours = map_of(engine, key, "depth", "depth")
    theirs = pipeline("depth-estimation", model=str(files["depth"]), device=CPU)(image)["depth"]
    expected = np.asarray(theirs.resize((64, 64), Image.Resampling.BILINEAR).convert("RGB")).astype(int)
    assert np.array_equal(ours, expected) and ours.std() > 0


@pytest.mark.parametrize(
    "preprocessor",
    [
        "softedge_hed",
        "scribble_hed",
        "softedge_pidinet",
        "lineart_realistic",
        "lineart_coarse",
        "lineart_anime",
        "openpose",
        "openpose_full",
    ],
)
def test_annotator_maps_are_controlnet_aux_own(
    engine: Engine, photo: tuple[str, Image.Image], files: dict[str, Path], preprocessor: str
) -> None:
    key, image = photo
    type_ = {"softedge": "softedge", "scribble": "scribble", "lineart": "lineart", "openpose": "openpose"}[preprocessor.split("_")[0]]
    if preprocessor == "lineart_anime":
        type_ = "lineart_anime"
    ours = map_of(engine, key, type_, preprocessor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.hed import HEDdetector
        from controlnet_aux.lineart import LineartDetector
        from controlnet_aux.lineart_anime import LineartAnimeDetector
        from controlnet_aux.open_pose import OpenposeDetector
        from controlnet_aux.pidi import PidiNetDetector

        folder = str(files["annotators"])
        detector, call = {
            "softedge_hed": (HEDdetector, {}),
            "scribble_hed": (HEDdetector, {"scribble": True}),
            "softedge_pidinet": (PidiNetDetector, {}),
            "lineart_realistic": (LineartDetector, {}),
            "lineart_coarse": (LineartDetector, {"coarse": True}),
            "lineart_anime": (LineartAnimeDetector, {}),
            "openpose": (OpenposeDetector, {}),
            "openpose_full": (OpenposeDetector, {"include_hand": True, "include_face": True}),
        }[preprocessor]
        theirs = detector.from_pretrained(folder)(image, detect_resolution=64, image_resolution=64, output_type="pil", **call)
    expected = np.asarray(theirs.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)).astype(int)
    assert np.array_equal(ours, expected), preprocessor


def test_a_missing_annotator_file_names_itself(engine: Engine, files: dict[str, Path], tmp_path: Path) -> None:
    from generation.control.annotators import load_annotator

    with pytest.raises(ModelLoadError, match="facenet.pth") as missing:
        load_annotator("openpose_full", tmp_path, CPU)
    assert "lllyasviel/Annotators" in missing.value.message
    assert set(FILES["openpose_full"]) == {"body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"}


def test_annotator_files_are_read_with_the_restricted_unpickler(files: dict[str, Path], tmp_path: Path) -> None:
    """A .pth that would run code when unpickled is refused by torch's weights-only loader."""
    import pickle

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (tmp_path / "pwned",))

    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "table5_pidinet.pth").write_bytes(pickle.dumps({"state_dict": Payload()}))
    from generation.control.annotators import load_annotator

    with pytest.raises(ModelLoadError):
        load_annotator("softedge_pidinet", folder, CPU)
    assert not (tmp_path / "pwned").exists()
