"""Reading generation metadata out of images (commands.pictures.metadata): A1111 / Forge / sdbot infotext in
PNG chunks and JPEG/WebP EXIF, ComfyUI graphs (API and UI form), NovelAI. Every image is made
here with Pillow; malformed input must never raise."""

from __future__ import annotations

import copy
import io
import json
import logging
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from commands.pictures.metadata import (
    COMFY_SAMPLERS,
    MAX_CHUNK,
    MAX_NODES,
    NOVELAI_SAMPLERS,
    WIDGETS,
    ImageMetadata,
    comfy_sampler,
    read_metadata,
)
from generation.models.samplers import find_sampler, sampler_names
from generation.parameters import infotext
from generation.spec import GenerationSpec


@pytest.fixture(autouse=True)
def _no_swallowed_errors(caplog: pytest.LogCaptureFixture) -> Any:
    """read_metadata turns any exception into None and a log line; here that would hide a bug."""
    yield
    failures = [r for r in caplog.records if r.name == "commands.pictures.metadata" and r.levelno >= logging.WARNING]
    assert not failures, failures[0].exc_text


# --- making images -----------------------------------------------------------------------------


def png(texts: dict[str, str] | None = None, *, size: tuple[int, int] = (16, 16), itxt: bool = False) -> bytes:
    info = PngInfo()
    for key, value in (texts or {}).items():
        if itxt:
            info.add_itxt(key, value, zip=True)
        else:
            info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def with_exif(fmt: str, comment: bytes | None = None, ifd0: dict[int, str] | None = None) -> bytes:
    exif = Image.Exif()
    if comment is not None:
        exif.get_ifd(0x8769)[0x9286] = comment
    for tag, value in (ifd0 or {}).items():
        exif[tag] = value
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 10)).save(out, format=fmt, exif=exif)
    return out.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(*chunks: bytes, width: int = 1, height: int = 1) -> bytes:
    """A PNG put together by hand: header, the given chunks, IEND."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunks) + chunk(b"IEND", b"")


IDAT_1PX = chunk(b"IDAT", zlib.compress(b"\0\xff\x00\x00"))


# --- A1111 / Forge / sdbot ---------------------------------------------------------------------

CIVITAI_PROMPT = (
    "masterpiece, best quality, (1girl:1.2), solo, looking at viewer, [smile], red hair,\n"
    "forest background, sunlight through trees, <lora:add_detail:0.8>, <lora:film_grain:0.35>"
)
CIVITAI_NEGATIVE = "(worst quality, low quality:1.4), easynegative,\nbad hands, watermark"
CIVITAI_SETTINGS = (
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3456789012, "
    "Size: 512x768, Model hash: 879db523c3, Model: dreamshaper_8, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Clip skip: 2, "
    "Hires upscale: 2, Hires steps: 15, Hires upscaler: 4x-UltraSharp, "
    'Lora hashes: "add_detail: 7c6bad76eb54, film_grain: 1a2b3c4d5e6f", Version: v1.9.4'
)
CIVITAI = f"{CIVITAI_PROMPT}\nNegative prompt: {CIVITAI_NEGATIVE}\n{CIVITAI_SETTINGS}"


def test_a1111_png_with_a_civitai_infotext() -> None:
    meta = read_metadata(png({"parameters": CIVITAI}))
    assert meta is not None
    assert meta.source == "a1111" and meta.job_id is None
    assert meta.prompt == CIVITAI_PROMPT
    assert meta.negative == CIVITAI_NEGATIVE
    assert meta.options == {
        "steps": 30,
        "sampler": "DPM++ 2M Karras",
        "cfg": 6.5,
        "seed": 3456789012,
        "size": "512x768",
        "model": "dreamshaper_8",
        "clip_skip": 2,
    }  # no strength: with hires fix, Denoising strength is the hires pass's
    assert meta.settings["Model hash"] == "879db523c3"
    assert meta.settings["Schedule type"] == "Karras"
    assert meta.settings["Lora hashes"] == "add_detail: 7c6bad76eb54, film_grain: 1a2b3c4d5e6f"
    notes = "\n".join(meta.notes)
    assert "Hires fix" in notes and "Hires upscale 2" in notes
    assert "LoRA `add_detail` (weight 0.8) is named in the prompt." in meta.notes
    assert "LoRA `film_grain` (weight 0.35) is named in the prompt." in meta.notes
    assert "VAE `vae-ft-mse-840000-ema-pruned.safetensors`" in notes
    assert meta.raw == CIVITAI


def test_the_options_pass_read_options(tmp_path: Path) -> None:
    """What /describe hands on is accepted as it is by the /imagine option checks."""
    from commands.jobs.options import read_options
    from config import ModelEntry, ModelRegistry, Settings

    settings = Settings(_env_file=None, model="tiny", data_dir=tmp_path)
    registry = ModelRegistry([ModelEntry(source="tiny"), ModelEntry(source="/m/dreamshaper_8.safetensors")])
    meta = read_metadata(png({"parameters": CIVITAI}))
    assert meta is not None
    opts = read_options(meta.options, settings, registry, prompt=meta.prompt)
    assert (opts.steps, opts.sampler, opts.cfg, opts.seed) == (30, "DPM++ 2M Karras", 6.5, 3456789012)
    assert (opts.size, opts.model, opts.clip_skip) == ((512, 768), "dreamshaper_8", 2)


def test_a1111_img2img_carries_its_strength_and_windows_line_ends() -> None:
    text = "a castle\r\nNegative prompt: fog\r\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
    text += "Model: sd15, Denoising strength: 0.6, Mask blur: 4"
    meta = read_metadata(png({"parameters": text}))
    assert meta is not None
    assert (meta.prompt, meta.negative) == ("a castle", "fog")
    assert meta.options["strength"] == 0.6 and meta.options["sampler"] == "Euler a"
    assert any("img2img" in note for note in meta.notes)


@pytest.mark.parametrize(
    ("sampler", "schedule", "expected", "noted"),
    [
        ("DPM++ 2M", "Karras", "DPM++ 2M Karras", False),
        ("DPM++ 2M SDE", "Karras", "DPM++ 2M SDE Karras", False),
        ("DPM++ 2M Karras", "", "DPM++ 2M Karras", False),  # older A1111: one name
        ("DPM++ 2M Karras", "Karras", "DPM++ 2M Karras", False),
        ("Euler a", "Automatic", "Euler a", False),
        ("Euler", "Karras", "Euler", True),  # no "Euler Karras" here: the plain one, said so
        ("DPM++ 2M", "Exponential", "DPM++ 2M", True),
        ("DPM++ 3M SDE", "", None, True),
        ("UniPC", "Uniform", "UniPC", False),
    ],
)
def test_a1111_sampler_and_schedule_type(sampler: str, schedule: str, expected: str | None, noted: bool) -> None:
    line = f"Steps: 20, Sampler: {sampler}, CFG scale: 7, Seed: 5"
    if schedule:
        line += f", Schedule type: {schedule}"
    meta = read_metadata(png({"parameters": f"a cat\n{line}"}))
    assert meta is not None
    assert meta.options.get("sampler") == expected
    assert bool(meta.notes) == noted, meta.notes


def _spec(**changes: Any) -> GenerationSpec:
    base: dict[str, Any] = dict(
        kind="txt2img",
        prompt="a red fox, (snow:1.3)\nat dawn",
        negative_prompt="blurry, text",
        model="tiny",
        width=64,
        height=96,
        steps=4,
        cfg=7.5,
        sampler="DPM++ 2M Karras",
        seed=42,
        clip_skip=2,
    )
    base.update(changes)
    return GenerationSpec(**base)


def test_our_own_png_is_sdbot_with_its_job() -> None:
    spec = _spec()
    text = infotext(spec, 43, job_id=17, model_hash="abc123")
    meta = read_metadata(png({"parameters": text}))
    assert meta is not None
    assert meta.source == "sdbot" and meta.job_id == 17
    assert (meta.prompt, meta.negative) == (spec.prompt, spec.negative_prompt)
    assert meta.options == {
        "steps": 4,
        "sampler": "DPM++ 2M Karras",
        "cfg": 7.5,
        "seed": 43,
        "size": "64x96",
        "model": "tiny",
        "clip_skip": 2,
    }
    assert meta.settings["Job"] == "17" and meta.settings["Version"].startswith("sdbot")
    assert meta.notes == ()


def test_our_own_img2img_and_tile() -> None:
    spec = _spec(kind="img2img", init_image="ab" * 32, strength=0.55, tile=True, sampler="Euler a", clip_skip=None)
    meta = read_metadata(png({"parameters": infotext(spec, 7, job_id=3)}))
    assert meta is not None and meta.source == "sdbot" and meta.job_id == 3
    assert meta.options["strength"] == 0.55 and meta.options["tile"] is True
    assert "clip_skip" not in meta.options


def test_infotext_in_a_compressed_itxt_chunk() -> None:
    meta = read_metadata(png({"parameters": "ünïcode ✓ prompt\nSteps: 9, Sampler: Euler, Seed: 3"}, itxt=True))
    assert meta is not None and meta.prompt == "ünïcode ✓ prompt" and meta.options["steps"] == 9


# --- JPEG / WebP: EXIF UserComment ---------------------------------------------------------------

JPEG_TEXT = "a lighthouse, 夕焼け\nNegative prompt: people\nSteps: 25, Sampler: Euler a, CFG scale: 5, Seed: 99, Size: 768x512, Model: sd15"


@pytest.mark.parametrize(
    ("fmt", "comment"),
    [
        ("JPEG", b"UNICODE\0" + JPEG_TEXT.encode("utf-16-be")),  # A1111 (piexif, encoding="unicode")
        ("JPEG", b"UNICODE\0" + JPEG_TEXT.encode("utf-16-le")),  # writers that ignore the byte order
        ("JPEG", b"ASCII\0\0\0" + JPEG_TEXT.encode("utf-8")),
        ("WEBP", b"UNICODE\0" + JPEG_TEXT.encode("utf-16-be")),
    ],
    ids=["jpeg-unicode", "jpeg-unicode-le", "jpeg-ascii", "webp-unicode"],
)
def test_exif_user_comment(fmt: str, comment: bytes) -> None:
    meta = read_metadata(with_exif(fmt, comment))
    assert meta is not None
    assert meta.source == "a1111"
    assert (meta.prompt, meta.negative) == ("a lighthouse, 夕焼け", "people")
    assert meta.options == {"steps": 25, "sampler": "Euler a", "cfg": 5.0, "seed": 99, "size": "768x512", "model": "sd15"}


def test_jpeg_comment_with_an_infotext() -> None:
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, format="JPEG", comment=JPEG_TEXT.encode("utf-8"))
    meta = read_metadata(out.getvalue())
    assert meta is not None and meta.prompt == "a lighthouse, 夕焼け" and meta.options["steps"] == 25
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, format="JPEG", comment=b"Created with GIMP")
    assert read_metadata(out.getvalue()) is None


def test_a_camera_comment_is_not_generation_metadata() -> None:
    assert read_metadata(with_exif("JPEG", b"ASCII\0\0\0Holiday in Rome")) is None
    assert read_metadata(with_exif("JPEG", b"UNICODE\0" + "\0".encode("utf-16-be"))) is None


# --- ComfyUI -------------------------------------------------------------------------------------

COMFY_POSITIVE = "a photo of a red fox in the snow, (golden hour:1.2), highly detailed"
COMFY_NEGATIVE = "blurry, lowres, watermark"

COMFY_API: dict[str, Any] = {
    "3": {
        "inputs": {
            "seed": ["12", 0],
            "steps": 28,
            "cfg": 6.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
        "class_type": "KSampler",
        "_meta": {"title": "KSampler"},
    },
    "4": {
        "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
        "class_type": "CheckpointLoaderSimple",
        "_meta": {"title": "Load Checkpoint"},
    },
    "5": {
        "inputs": {"width": 832, "height": 1216, "batch_size": 1},
        "class_type": "EmptyLatentImage",
        "_meta": {"title": "Empty Latent Image"},
    },
    "6": {
        "inputs": {"text": COMFY_POSITIVE, "clip": ["10", 1]},
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
    },
    "7": {
        "inputs": {"text": COMFY_NEGATIVE, "clip": ["10", 1]},
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
    },
    "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode", "_meta": {"title": "VAE Decode"}},
    "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage", "_meta": {"title": "Save Image"}},
    "10": {
        "inputs": {
            "lora_name": "add_detail.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.8,
            "model": ["4", 0],
            "clip": ["11", 0],
        },
        "class_type": "LoraLoader",
        "_meta": {"title": "Load LoRA"},
    },
    "11": {
        "inputs": {"stop_at_clip_layer": -2, "clip": ["4", 1]},
        "class_type": "CLIPSetLastLayer",
        "_meta": {"title": "CLIP Set Last Layer"},
    },
    "12": {"inputs": {"value": 987654321}, "class_type": "PrimitiveInt", "_meta": {"title": "Int"}},
}


def _slot(name: str, kind: str, link: int | None, widget: str | None = None) -> dict[str, Any]:
    slot: dict[str, Any] = {"name": name, "type": kind, "link": link}
    if widget:
        slot["widget"] = {"name": widget}
    return slot


COMFY_WORKFLOW: dict[str, Any] = {
    "last_node_id": 12,
    "last_link_id": 15,
    "nodes": [
        {
            "id": 3,
            "type": "KSampler",
            "pos": [863, 186],
            "size": [315, 262],
            "flags": {},
            "order": 6,
            "mode": 0,
            "inputs": [
                _slot("model", "MODEL", 12),
                _slot("positive", "CONDITIONING", 4),
                _slot("negative", "CONDITIONING", 6),
                _slot("latent_image", "LATENT", 2),
                _slot("seed", "INT", 15, widget="seed"),
            ],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
            "properties": {"Node name for S&R": "KSampler"},
            "widgets_values": [987654321, "fixed", 28, 6.5, "dpmpp_2m", "karras", 1],
        },
        {
            "id": 4,
            "type": "CheckpointLoaderSimple",
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": "MODEL", "links": [10]}, {"name": "CLIP", "links": [3]}, {"name": "VAE", "links": [8]}],
            "widgets_values": ["sd_xl_base_1.0.safetensors"],
        },
        {"id": 5, "type": "EmptyLatentImage", "mode": 0, "inputs": [], "widgets_values": [832, 1216, 1]},
        {"id": 6, "type": "CLIPTextEncode", "mode": 0, "inputs": [_slot("clip", "CLIP", 13)], "widgets_values": [COMFY_POSITIVE]},
        {"id": 7, "type": "CLIPTextEncode", "mode": 0, "inputs": [_slot("clip", "CLIP", 14)], "widgets_values": [COMFY_NEGATIVE]},
        {"id": 8, "type": "VAEDecode", "mode": 0, "inputs": [_slot("samples", "LATENT", 7), _slot("vae", "VAE", 8)]},
        {"id": 9, "type": "SaveImage", "mode": 0, "inputs": [_slot("images", "IMAGE", 9)], "widgets_values": ["ComfyUI"]},
        {
            "id": 10,
            "type": "LoraLoader",
            "mode": 0,
            "inputs": [_slot("model", "MODEL", 10), _slot("clip", "CLIP", 11)],
            "widgets_values": ["add_detail.safetensors", 0.8, 0.8],
        },
        {"id": 11, "type": "CLIPSetLastLayer", "mode": 0, "inputs": [_slot("clip", "CLIP", 3)], "widgets_values": [-2]},
        {
            "id": 12,
            "type": "PrimitiveNode",
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": "INT", "type": "INT", "links": [15], "widget": {"name": "seed"}}],
            "widgets_values": [987654321, "fixed"],
        },
    ],
    "links": [
        [2, 5, 0, 3, 3, "LATENT"],
        [3, 4, 1, 11, 0, "CLIP"],
        [4, 6, 0, 3, 1, "CONDITIONING"],
        [6, 7, 0, 3, 2, "CONDITIONING"],
        [7, 3, 0, 8, 0, "LATENT"],
        [8, 4, 2, 8, 1, "VAE"],
        [9, 8, 0, 9, 0, "IMAGE"],
        [10, 4, 0, 10, 0, "MODEL"],
        [11, 11, 0, 10, 1, "CLIP"],
        [12, 10, 0, 3, 0, "MODEL"],
        [13, 10, 1, 6, 0, "CLIP"],
        [14, 10, 1, 7, 0, "CLIP"],
        [15, 12, 0, 3, 4, "INT"],
    ],
    "groups": [],
    "config": {},
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}

COMFY_OPTIONS = {
    "steps": 28,
    "cfg": 6.5,
    "seed": 987654321,
    "sampler": "DPM++ 2M Karras",
    "size": "832x1216",
    "model": "sd_xl_base_1.0.safetensors",
    "clip_skip": 2,
}


def comfy_png(api: Any = None, workflow: Any = None) -> bytes:
    texts = {}
    if api is not None:
        texts["prompt"] = api if isinstance(api, str) else json.dumps(api)
    if workflow is not None:
        texts["workflow"] = workflow if isinstance(workflow, str) else json.dumps(workflow)
    return png(texts)


def test_comfyui_api_graph() -> None:
    meta = read_metadata(comfy_png(COMFY_API, COMFY_WORKFLOW))
    assert meta is not None
    assert meta.source == "comfyui"
    assert (meta.prompt, meta.negative) == (COMFY_POSITIVE, COMFY_NEGATIVE)
    assert meta.options == COMFY_OPTIONS
    assert meta.settings["Sampler"] == "dpmpp_2m" and meta.settings["Schedule type"] == "karras"
    assert meta.settings["LoRAs"] == "add_detail.safetensors (0.8)"
    assert meta.settings["Size"] == "832x1216" and meta.settings["Seed"] == "987654321"
    assert any("LoRA `add_detail.safetensors` (strength 0.8)" in note for note in meta.notes)
    assert not any("UI workflow" in note for note in meta.notes)  # the API graph was read
    assert json.loads(meta.raw) == COMFY_API


def test_comfyui_workflow_only() -> None:
    meta = read_metadata(comfy_png(workflow=COMFY_WORKFLOW))
    assert meta is not None
    assert meta.source == "comfyui"
    assert (meta.prompt, meta.negative) == (COMFY_POSITIVE, COMFY_NEGATIVE)
    assert meta.options == COMFY_OPTIONS
    assert any("UI workflow" in note for note in meta.notes)


def test_comfyui_workflow_follows_the_links_not_the_node_order() -> None:
    """Positive and negative are told apart by the sampler's links, and a stale widget value
    loses to the primitive node that feeds it."""
    workflow = copy.deepcopy(COMFY_WORKFLOW)
    nodes = workflow["nodes"]
    nodes[3], nodes[4] = nodes[4], nodes[3]  # the negative encoder first
    nodes[0]["widgets_values"][0] = 1  # stale
    meta = read_metadata(comfy_png(workflow=workflow))
    assert meta is not None
    assert (meta.prompt, meta.negative) == (COMFY_POSITIVE, COMFY_NEGATIVE)
    assert meta.options["seed"] == 987654321


def test_comfyui_bypassed_lora_and_reroute_in_the_workflow() -> None:
    workflow = copy.deepcopy(COMFY_WORKFLOW)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    nodes[10]["mode"] = 4  # bypassed: not applied
    # the positive prompt reaches the sampler through a Reroute node (id 20)
    nodes[3]["inputs"][1]["link"] = 21
    workflow["nodes"].append({"id": 20, "type": "Reroute", "mode": 0, "inputs": [_slot("", "*", 20)]})
    workflow["links"] += [[20, 6, 0, 20, 0, "CONDITIONING"], [21, 20, 0, 3, 1, "CONDITIONING"]]
    meta = read_metadata(comfy_png(workflow=workflow))
    assert meta is not None
    assert meta.prompt == COMFY_POSITIVE
    assert "LoRAs" not in meta.settings and not any("LoRA" in note for note in meta.notes)
    assert meta.options["model"] == "sd_xl_base_1.0.safetensors"


def test_comfyui_two_pass_graph_shows_the_first_pass() -> None:
    # a hires pass: upscale the first sampler's latent and sample it again; it comes first in the
    # file and its id sorts first, but it starts from the other sampler's output
    api = {
        "2": {
            "inputs": {**COMFY_API["3"]["inputs"], "latent_image": ["1", 0], "denoise": 0.5, "steps": 12, "sampler_name": "uni_pc_bh2"},
            "class_type": "KSampler",
        },
        "1": {"inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 1.5}, "class_type": "LatentUpscaleBy"},
        **copy.deepcopy(COMFY_API),
    }
    meta = read_metadata(comfy_png(api))
    assert meta is not None
    assert meta.options["steps"] == 28 and "strength" not in meta.options
    assert "The graph has 2 samplers; the first one's settings are shown." in meta.notes


def test_comfyui_sdxl_text_combine_concat_and_string_nodes() -> None:
    api = copy.deepcopy(COMFY_API)
    api["6"] = {"inputs": {"conditioning_1": ["20", 0], "conditioning_2": ["21", 0]}, "class_type": "ConditioningCombine"}
    api["20"] = {
        "inputs": {
            "text_g": ["22", 0],
            "text_l": ["22", 0],
            "clip": ["10", 1],
            "width": 1024,
            "height": 1024,
            "crop_w": 0,
            "crop_h": 0,
            "target_width": 1024,
            "target_height": 1024,
        },
        "class_type": "CLIPTextEncodeSDXL",
    }
    api["21"] = {"inputs": {"conditioning_to": ["23", 0], "conditioning_from": ["24", 0]}, "class_type": "ConditioningConcat"}
    api["22"] = {"inputs": {"string_a": "a fox", "string_b": ["25", 0], "delimiter": ", "}, "class_type": "StringConcatenate"}
    api["23"] = {"inputs": {"text": "snow", "clip": ["10", 1]}, "class_type": "CLIPTextEncode"}
    api["24"] = {"inputs": {"text": "pine trees", "clip": ["10", 1]}, "class_type": "CLIPTextEncode"}
    api["25"] = {"inputs": {"value": "in a forest"}, "class_type": "PrimitiveStringMultiline"}
    meta = read_metadata(comfy_png(api))
    assert meta is not None
    assert meta.prompt == "a fox, in a forest, snow BREAK pine trees"
    assert any("joined with commas" in note for note in meta.notes)


def test_comfyui_sampler_custom_advanced_flux() -> None:
    api = {
        "6": {"inputs": {"text": "a cat wearing a hat", "clip": ["11", 0]}, "class_type": "CLIPTextEncode"},
        "11": {
            "inputs": {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"},
            "class_type": "DualCLIPLoader",
        },
        "12": {"inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}, "class_type": "UNETLoader"},
        "13": {
            "inputs": {"noise": ["25", 0], "guider": ["22", 0], "sampler": ["16", 0], "sigmas": ["17", 0], "latent_image": ["27", 0]},
            "class_type": "SamplerCustomAdvanced",
        },
        "16": {"inputs": {"sampler_name": "euler"}, "class_type": "KSamplerSelect"},
        "17": {"inputs": {"scheduler": "simple", "steps": 20, "denoise": 1, "model": ["12", 0]}, "class_type": "BasicScheduler"},
        "22": {"inputs": {"model": ["12", 0], "conditioning": ["26", 0]}, "class_type": "BasicGuider"},
        "25": {"inputs": {"noise_seed": 219670278747233}, "class_type": "RandomNoise"},
        "26": {"inputs": {"guidance": 3.5, "conditioning": ["6", 0]}, "class_type": "FluxGuidance"},
        "27": {"inputs": {"width": 1024, "height": 768, "batch_size": 1}, "class_type": "EmptySD3LatentImage"},
    }
    meta = read_metadata(comfy_png(api))
    assert meta is not None
    assert meta.prompt == "a cat wearing a hat" and meta.negative == ""
    assert meta.options == {"steps": 20, "cfg": 1.0, "sampler": "Euler", "size": "1024x768", "model": "flux1-dev.safetensors"}
    assert meta.settings["Guidance"] == "3.5" and meta.settings["Seed"] == "219670278747233"
    assert any("above 4294967295" in note for note in meta.notes)  # the seed cannot be carried over


def test_comfyui_img2img_strength() -> None:
    api = copy.deepcopy(COMFY_API)
    api["3"]["inputs"]["denoise"] = 0.6
    api["3"]["inputs"]["latent_image"] = ["30", 0]
    api["30"] = {"inputs": {"pixels": ["31", 0], "vae": ["4", 2]}, "class_type": "VAEEncode"}
    api["31"] = {"inputs": {"image": "example.png", "upload": "image"}, "class_type": "LoadImage"}
    meta = read_metadata(comfy_png(api))
    assert meta is not None
    assert meta.options["strength"] == 0.6 and "size" not in meta.options


@pytest.mark.parametrize(
    ("name", "scheduler", "expected", "noted"),
    [
        ("euler", "normal", "Euler", False),
        ("euler_ancestral", "normal", "Euler a", False),
        ("dpmpp_2m", "karras", "DPM++ 2M Karras", False),
        ("dpmpp_2m_sde", "karras", "DPM++ 2M SDE Karras", False),
        ("dpmpp_2m_sde_gpu", "normal", "DPM++ 2M SDE", False),
        ("dpmpp_sde", "karras", "DPM++ SDE Karras", False),
        ("heun", "normal", "Heun", False),
        ("lms", "karras", "LMS Karras", False),
        ("ddim", "ddim_uniform", "DDIM", False),
        ("uni_pc", "normal", "UniPC", False),
        ("dpm_2", "normal", "DPM2", False),
        ("dpm_2_ancestral", "karras", "DPM2 a Karras", False),
        ("euler", "karras", "Euler", True),
        ("dpmpp_2m", "exponential", "DPM++ 2M", True),
        ("uni_pc_bh2", "normal", None, True),
        ("dpmpp_3m_sde", "karras", None, True),
        ("euler_cfg_pp", "normal", None, True),
    ],
)
def test_comfy_sampler_names(name: str, scheduler: str, expected: str | None, noted: bool) -> None:
    sampler, note = comfy_sampler(name, scheduler)
    assert sampler == expected
    assert (note is not None) == noted
    if note and expected is None:
        assert note == f"ComfyUI sampler `{name}` has no equal here; the default sampler is used."


def test_every_sampler_given_is_one_we_have() -> None:
    ours = set(sampler_names())
    for name in COMFY_SAMPLERS:
        for scheduler in ("normal", "karras", "exponential", "sgm_uniform"):
            sampler, note = comfy_sampler(name, scheduler)
            assert sampler in ours or (sampler is None and note)
    # the tables name A1111 samplers; those we lack on purpose must be absent, not misspelled
    lacking = {"DPM++ 2S a", "DPM++ 3M SDE", "DPM fast", "DPM adaptive"}
    for target in [*COMFY_SAMPLERS.values(), *NOVELAI_SAMPLERS.values()]:
        assert (find_sampler(target) is not None) != (target in lacking), target


def test_workflow_widget_tables_name_real_inputs() -> None:
    """Every named widget appears in the API graph under the same name where we use it."""
    used = {name for node in COMFY_API.values() for name in node["inputs"]}
    for cls in ("KSampler", "CLIPTextEncode", "EmptyLatentImage", "CheckpointLoaderSimple", "LoraLoader"):
        assert {n for n in WIDGETS[cls] if n} <= used


def test_comfyui_webp_exif() -> None:
    """ComfyUI's WebP saver writes `prompt:{...}` into EXIF tags (Model = 0x0110, Make = 0x010F)."""
    data = with_exif("WEBP", ifd0={0x0110: "prompt:" + json.dumps(COMFY_API), 0x010F: "workflow:{}"})
    meta = read_metadata(data)
    assert meta is not None and meta.source == "comfyui" and meta.options == COMFY_OPTIONS


# --- NovelAI -------------------------------------------------------------------------------------

NAI_PROMPT = "1girl, silver hair, night sky, stars, {{masterpiece}}, best quality"
NAI_COMMENT = {
    "prompt": NAI_PROMPT,
    "steps": 28,
    "height": 1216,
    "width": 832,
    "scale": 5.0,
    "uncond_scale": 1.0,
    "cfg_rescale": 0.0,
    "seed": 3315436203,
    "n_samples": 1,
    "hide_debug_overlay": False,
    "noise_schedule": "karras",
    "legacy_v3_extend": False,
    "reference_information_extracted_multiple": [],
    "reference_strength_multiple": [],
    "sampler": "k_dpmpp_2m",
    "controlnet_strength": 1.0,
    "controlnet_model": None,
    "dynamic_thresholding": False,
    "sm": False,
    "sm_dyn": False,
    "skip_cfg_above_sigma": None,
    "skip_cfg_below_sigma": 0.0,
    "lora_unet_weights": None,
    "lora_clip_weights": None,
    "deliberate_euler_ancestral_bug": False,
    "prefer_brownian": True,
    "version": 1,
    "uc": "lowres, bad anatomy, bad hands, text",
    "strength": 0.7,
    "noise": 0.0,
    "request_type": "PromptGenerateRequest",
    "signed_hash": "kDvOXf1Y5jyAcTpM==",
}


def novelai_png(comment: Any = NAI_COMMENT) -> bytes:
    return png(
        {
            "Title": "NovelAI generated image",
            "Description": NAI_PROMPT,
            "Software": "NovelAI",
            "Source": "NovelAI Diffusion V4.5 4BDE2A90",
            "Generation time": "6.1",
            "Comment": comment if isinstance(comment, str) else json.dumps(comment),
        }
    )


def test_novelai() -> None:
    meta = read_metadata(novelai_png())
    assert meta is not None
    assert meta.source == "novelai"
    assert (meta.prompt, meta.negative) == (NAI_PROMPT, "lowres, bad anatomy, bad hands, text")
    assert meta.options == {"size": "832x1216", "steps": 28, "cfg": 5.0, "seed": 3315436203, "sampler": "DPM++ 2M Karras"}
    assert meta.settings["Model"] == "NovelAI Diffusion V4.5 4BDE2A90" and meta.settings["Sampler"] == "k_dpmpp_2m"
    assert "strength" not in meta.options  # txt2img: NovelAI writes a strength anyway


def test_novelai_samplers_and_extras() -> None:
    comment = {
        **NAI_COMMENT,
        "sampler": "k_euler_ancestral",
        "noise_schedule": "native",
        "sm": True,
        "cfg_rescale": 0.2,
        "request_type": "Img2ImgRequest",
    }
    meta = read_metadata(novelai_png(comment))
    assert meta is not None
    assert meta.options["sampler"] == "Euler a" and meta.options["strength"] == 0.7
    assert any("SMEA" in note for note in meta.notes) and any("CFG rescale" in note for note in meta.notes)
    meta = read_metadata(novelai_png({**NAI_COMMENT, "sampler": "k_dpmpp_2s_ancestral"}))
    assert meta is not None and "sampler" not in meta.options
    assert any("k_dpmpp_2s_ancestral" in note for note in meta.notes)


def test_novelai_with_a_broken_comment_keeps_the_prompt() -> None:
    meta = read_metadata(novelai_png('{"prompt": "x", "steps": '))
    assert meta is not None and meta.source == "novelai"
    assert meta.prompt == NAI_PROMPT and meta.options == {}
    assert meta.notes


# --- nothing there -------------------------------------------------------------------------------


def test_images_without_metadata() -> None:
    assert read_metadata(png()) is None
    assert read_metadata(png({"Software": "GIMP 2.10", "Comment": "made by hand"})) is None
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, format="JPEG")
    assert read_metadata(out.getvalue()) is None
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, format="WEBP")
    assert read_metadata(out.getvalue()) is None
    assert read_metadata(b"") is None
    assert read_metadata(b"not an image at all") is None
    assert read_metadata(b"\x89PNG\r\n\x1a\n") is None


# --- hostile and broken input ----------------------------------------------------------------------


def test_metadata_is_read_without_decoding_pixels() -> None:
    """A 100000 x 100000 PNG (a decompression bomb for any decoder) with its text after the
    image data: read from the chunks alone."""
    text = chunk(b"tEXt", b"parameters\0a bomb\nSteps: 5, Sampler: Euler, Seed: 1")
    data = raw_png(IDAT_1PX, text, width=100_000, height=100_000)
    meta = read_metadata(data)
    assert meta is not None and meta.prompt == "a bomb" and meta.options["steps"] == 5


def test_truncated_and_damaged_pngs() -> None:
    full = png({"parameters": CIVITAI})
    for cut in (9, 20, 40, len(full) // 2, len(full) - 5):
        result = read_metadata(full[:cut])
        assert result is None or isinstance(result, ImageMetadata)
    bad_z = chunk(b"zTXt", b"parameters\0\0" + b"definitely not zlib")
    bad_i = chunk(b"iTXt", b"parameters\0\1\0")
    no_key = chunk(b"tEXt", b"no separator")
    assert read_metadata(raw_png(bad_z, bad_i, no_key, IDAT_1PX)) is None


def test_oversized_texts_are_refused_with_a_note() -> None:
    huge = "{" + " " * (MAX_CHUNK + 10) + "}"
    meta = read_metadata(png({"prompt": huge, "parameters": "a cat\nSteps: 5, Sampler: Euler, Seed: 1"}))
    assert meta is not None and meta.prompt == "a cat"
    assert any("not read" in note for note in meta.notes)
    # a small zTXt that inflates past the limit (a zip bomb) is not inflated in full
    bomb = chunk(b"zTXt", b"workflow\0\0" + zlib.compress(b"{" + b" " * (8 * MAX_CHUNK) + b"}", 9))
    assert len(bomb) < MAX_CHUNK // 100
    assert read_metadata(raw_png(bomb, IDAT_1PX)) is None


def test_a_very_long_prompt_is_capped_and_keeps_its_settings() -> None:
    meta = read_metadata(png({"parameters": "word, " * 40_000 + "\nSteps: 5, Sampler: Euler, Seed: 1"}))
    assert meta is not None and len(meta.prompt) <= 64 * 1024 and len(meta.raw) <= 64 * 1024
    assert any("only the first" in note for note in meta.notes)
    assert meta.options == {"steps": 5, "sampler": "Euler", "seed": 1}


@pytest.mark.timeout(20)
def test_a_long_line_of_words_is_read_in_linear_time() -> None:
    """generation.parameters' settings pattern is quadratic on runs of words and spaces (50 kB:
    about a minute); such a line is no settings line and is not handed to it."""
    text = "a very long prompt of plain words " * 1_500
    meta = read_metadata(png({"parameters": text}))
    assert meta is not None and meta.prompt == text.strip() and meta.options == {}


def test_bad_quoting_in_the_settings_line() -> None:
    meta = read_metadata(png({"parameters": 'a cat\nSteps: 5, Sampler: Euler, Seed: 1, Lora hashes: "x: \\q"'}))
    assert meta is not None and "a cat" in meta.prompt


@pytest.mark.parametrize(
    "api",
    [
        '{"3": {"class_type": "KSampler", "inputs": {"seed": 1',  # cut off
        '{"a": ' * 100_000 + "1" + "}" * 100_000,  # deeper than the JSON parser recurses
        "{}",
        '{"3": "KSampler", "4": 7, "5": {"class_type": 3, "inputs": []}, "6": {"class_type": "KSampler"}}',
        '{"3": {"class_type": "KSampler", "inputs": {"positive": ["99", 0], "negative": "x", "model": [null, 0], '
        '"latent_image": [["5", 0], 1], "seed": {"a": 1}, "steps": "abc", "cfg": NaN, "sampler_name": 7, '
        '"scheduler": ["3"], "denoise": "half"}}}',
        '{"3": {"class_type": "KSampler", "inputs": {"seed": 1e999, "steps": 1e400, "cfg": -Infinity, '
        '"positive": [true, false], "negative": ["3", 0], "latent_image": ["3", 0]}}}',
    ],
    ids=["cut-off", "deep", "empty", "not-nodes", "wrong-types", "huge-numbers"],
)
def test_malformed_comfy_graphs_never_raise(api: str) -> None:
    meta = read_metadata(comfy_png(api))
    assert meta is not None and meta.source == "comfyui"
    assert meta.notes and "steps" not in meta.options and "cfg" not in meta.options


@pytest.mark.parametrize("api", ["[1, 2, 3]", '"a string"', "null", "12"])
def test_a_prompt_chunk_that_is_not_a_graph_is_not_comfyui(api: str) -> None:
    assert read_metadata(comfy_png(api)) is None


def test_wrong_types_keep_what_is_readable() -> None:
    api = copy.deepcopy(COMFY_API)
    api["3"]["inputs"].update(steps="abc", cfg=float("nan"), sampler_name=7, scheduler=None)
    api["5"]["inputs"]["width"] = "wide"
    api["6"]["inputs"]["text"] = ["404", 0]  # a link to nothing
    meta = read_metadata(comfy_png(json.dumps(api, allow_nan=True)))
    assert meta is not None
    assert meta.prompt == "" and meta.negative == COMFY_NEGATIVE
    assert meta.options == {"seed": 987654321, "model": "sd_xl_base_1.0.safetensors", "clip_skip": 2}
    assert any("Steps `abc`" in note for note in meta.notes)


def test_cycles_in_the_graph_end() -> None:
    api = copy.deepcopy(COMFY_API)
    api["6"] = {"inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["40", 0]}, "class_type": "ConditioningCombine"}
    api["40"] = {"inputs": {"conditioning": ["6", 0]}, "class_type": "ConditioningSetArea"}
    api["12"] = {"inputs": {"value": ["41", 0]}, "class_type": "PrimitiveInt"}
    api["41"] = {"inputs": {"value": ["12", 0]}, "class_type": "PrimitiveInt"}
    api["10"]["inputs"]["model"] = ["42", 0]
    api["42"] = {"inputs": {"model": ["10", 0]}, "class_type": "FreeU_V2"}
    api["5"] = {"inputs": {"samples": ["5", 0]}, "class_type": "RepeatLatentBatch"}
    meta = read_metadata(comfy_png(api))
    assert meta is not None and meta.source == "comfyui"
    assert meta.negative == COMFY_NEGATIVE and "seed" not in meta.options
    workflow = copy.deepcopy(COMFY_WORKFLOW)
    workflow["nodes"].append({"id": 20, "type": "Reroute", "inputs": [_slot("", "*", 20)]})
    workflow["links"].append([20, 20, 0, 20, 0, "*"])
    workflow["nodes"][0]["inputs"][1]["link"] = 20
    meta = read_metadata(comfy_png(workflow=workflow))
    assert meta is not None and meta.prompt == "" and meta.negative == COMFY_NEGATIVE


def test_a_graph_over_the_node_limit_is_cut_with_a_note() -> None:
    api = copy.deepcopy(COMFY_API)
    api.update({str(1000 + i): {"class_type": "Note", "inputs": {"text": "x"}} for i in range(MAX_NODES)})
    meta = read_metadata(comfy_png(api))
    assert meta is not None and meta.options == COMFY_OPTIONS
    assert any(f"only the first {MAX_NODES:,}" in note for note in meta.notes)


def test_broken_api_graph_falls_back_to_the_workflow() -> None:
    meta = read_metadata(comfy_png("{broken", COMFY_WORKFLOW))
    assert meta is not None and meta.prompt == COMFY_POSITIVE
    assert any("not valid JSON" in note for note in meta.notes)


def test_workflow_with_odd_widgets() -> None:
    workflow = copy.deepcopy(COMFY_WORKFLOW)
    workflow["nodes"][0]["widgets_values"] = {"seed": 1}  # newer custom nodes store a dict
    workflow["nodes"][1]["widgets_values"] = []
    workflow["nodes"][2]["widgets_values"] = [832, 1216, 1, "extra"]
    workflow["links"].append("not a link")
    workflow["nodes"].append("not a node")
    meta = read_metadata(comfy_png(workflow=workflow))
    assert meta is not None and meta.prompt == COMFY_POSITIVE
    assert "model" not in meta.options and "steps" not in meta.options


def test_comfyui_controlnet_keeps_positive_and_negative_apart() -> None:
    api = copy.deepcopy(COMFY_API)
    api["3"]["inputs"]["positive"] = ["50", 0]
    api["3"]["inputs"]["negative"] = ["50", 1]
    api["50"] = {
        "inputs": {
            "strength": 0.8,
            "start_percent": 0,
            "end_percent": 1,
            "positive": ["6", 0],
            "negative": ["7", 0],
            "control_net": ["51", 0],
            "image": ["52", 0],
        },
        "class_type": "ControlNetApplyAdvanced",
    }
    meta = read_metadata(comfy_png(api))
    assert meta is not None
    assert (meta.prompt, meta.negative) == (COMFY_POSITIVE, COMFY_NEGATIVE)
    assert "ControlNet guidance is not carried over." in meta.notes


def test_workflow_widgets_saved_without_the_control_value() -> None:
    workflow = copy.deepcopy(COMFY_WORKFLOW)
    workflow["nodes"][0]["widgets_values"] = [987654321, 28, 6.5, "dpmpp_2m", "karras", 1]
    workflow["nodes"][0]["inputs"].pop()  # and no primitive: the seed is the widget's
    meta = read_metadata(comfy_png(workflow=workflow))
    assert meta is not None and meta.options == COMFY_OPTIONS
