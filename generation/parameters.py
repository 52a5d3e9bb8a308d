"""A1111's `parameters` text: written into every PNG the bot makes (`png`) and shown by /info. Torch-free.

Format (AUTOMATIC1111's infotext, which Civitai, A1111 and ComfyUI readers understand):

    a red fox
    Negative prompt: blurry
    Steps: 4, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 64x64, Model: tiny, Version: sdbot 0.1.0

A flow-matching family's pictures add what Forge writes for them (`Schedule type: Simple`; for
FLUX.1's distilled guidance `CFG scale: 1, Distilled CFG Scale: 3.5`) and `Model family`; the
family is the spec's, described by generation.models.families (torch-free).
"""

from __future__ import annotations

import io
import json
import re

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from generation.models import families
from generation.spec import GenerationSpec, mask_blur_sigma

VERSION = "sdbot 0.1.0"
# Keys are bounded (A1111's longest is ~30 characters): an unbounded key backtracks
# quadratically over a long line of plain words, and infotext comes from users' files.
_PARAM = re.compile(r'\s*(\w[\w \-/]{0,60}):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def _quote(value: object) -> str:
    text = str(value)
    if not any(ch in text for ch in ',\n:"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _number(value: float) -> str:
    return f"{value:g}"


def settings_text(fields: list[tuple[str, object]]) -> str:
    """A1111's settings line, `Key: value, ...`: a value holding a comma, colon, quote or line
    break is quoted, so `parse_infotext` reads it back whole."""
    return ", ".join(f"{key}: {_quote(value)}" for key, value in fields)


def png(image: Image.Image, parameters: str | None = None) -> bytes:
    """`image` as PNG bytes, with `parameters` in a `parameters` text chunk (where A1111 writes
    it, and where /describe, A1111's PNG Info and Civitai read it)."""
    info = PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def infotext(
    spec: GenerationSpec,
    seed: int,
    *,
    job_id: int | None = None,
    model_hash: str | None = None,
    size: tuple[int, int] | None = None,
    template: GenerationSpec | None = None,
    frame: int | None = None,
) -> str:
    """The `parameters` text for one image of `spec`, drawn with `seed`. `size` is the image's
    own size where it differs from the spec's (upscales, inpainting at another working size).
    `template`: the job as written when `spec` is one image's wildcard picks; its prompts are
    kept as `Template` / `Negative Template`, the keys sd-dynamic-prompts writes.
    Post-processing is written with A1111's keys where it has them (Mask blur, Tiling,
    Face restoration, Postprocess upscale by, ...), so the tools people use read them. `frame`:
    which frame of a clip this is (its clip fields follow: frames, fps, motion, schedules)."""
    width, height = size or (spec.width, spec.height)
    fields: list[tuple[str, object]] = []
    family = families.family(spec.family) if families.is_family(spec.family) else None
    if spec.diffusion:
        fields += [("Steps", spec.steps), ("Sampler", spec.sampler)]
        if family is not None and family.flow_matching:
            fields.append(("Schedule type", "Simple"))  # Forge's name for a flow model's own sigma schedule
        if family is not None and family.guidance == "distilled":  # as Forge writes FLUX.1's guidance
            fields += [("CFG scale", 1), ("Distilled CFG Scale", _number(spec.cfg))]
        else:
            fields.append(("CFG scale", _number(spec.cfg)))
        fields.append(("Seed", seed))
    fields.append(("Size", f"{width}x{height}"))
    if model_hash:
        fields.append(("Model hash", model_hash))
    if spec.diffusion:
        fields.append(("Model", spec.model))
        if family is not None and family.denoiser != "unet":
            fields.append(("Model family", family.label))
    if spec.clip_skip and spec.clip_skip > 1 and spec.diffusion:
        fields.append(("Clip skip", spec.clip_skip))
    if spec.vae and spec.diffusion:
        fields.append(("VAE", spec.vae))
    if spec.strength is not None and spec.kind != "txt2img":
        fields.append(("Denoising strength", _number(spec.strength)))
    if spec.image_cfg is not None:
        fields.append(("Image CFG scale", _number(spec.image_cfg)))
    elif spec.kind == "instruct" and spec.init_image is not None:  # an edit model's pictures, as IP-Adapter hashes are written
        fields.append(("Edit pictures", ", ".join(key.partition(".")[0][:10] for key in (spec.init_image, *spec.edit_images))))
    fields += _postprocess_fields(spec)
    fields += detail_fields(spec)
    fields += _prompt_feature_fields(spec, template)
    if spec.diffusion:
        fields += control_fields(spec)
        fields += reference_fields(spec)
    if spec.clip is not None:
        fields += clip_fields(spec, frame)
    if spec.tile:
        fields.append(("Tiling", "True"))
    if spec.operation:
        fields.append(("Operation", spec.operation))
    fields += draft_fields(spec)
    # the cache the engine drew it with (a video model's clips too; AnimateDiff's draw uncached)
    if spec.cache is not None and spec.diffusion and (spec.clip is None or spec.kind == "video"):
        fields.append(("Cache", families.CACHES[spec.cache].text()))
    if job_id is not None:
        fields.append(("Job", job_id))
    fields.append(("Version", VERSION))
    lines = [spec.prompt]
    if spec.negative_prompt:
        lines.append(f"Negative prompt: {spec.negative_prompt}")
    lines.append(settings_text(fields))
    return "\n".join(lines)


def draft_fields(spec: GenerationSpec) -> list[tuple[str, object]]:
    """A draft says it is one, and by which fast path (`Draft: "LoRA lcm-lora-sdv1-5 (1a2b3c4d5e6f)"`,
    `model tiny-schnell`, or `fewer steps`: none was configured); a picture the Enhance button drew
    names the draft job it enhanced (`Enhanced from: job 12`). The draft's LoRA is not in `Lora
    hashes`: that key lists the prompt's own LoRAs, which "Imagine this" resolves as the user's."""
    fields: list[tuple[str, object]] = []
    draft = spec.draft
    if draft is not None:
        how = {"lora": f"LoRA {draft.name}", "model": f"model {draft.name}", "steps": "fewer steps"}[draft.how]
        if draft.lora is not None:
            how += f" ({draft.lora.short_hash})"
        fields.append(("Draft", how))
    if spec.enhanced_from is not None:
        fields.append(("Enhanced from", f"job {spec.enhanced_from}"))
    return fields


CONTROL_MODE_NAMES = {"balanced": "Balanced", "prompt": "My prompt is more important", "control": "ControlNet is more important"}


def control_fields(spec: GenerationSpec) -> list[tuple[str, object]]:
    """Each ControlNet unit as A1111's sd-webui-controlnet writes it: `ControlNet 0: "Module: canny,
    Model: …, Weight: 1, Guidance Start: 0, Guidance End: 1, Control Mode: Balanced"`."""
    fields: list[tuple[str, object]] = []
    for index, ref in enumerate(spec.controls):
        unit = [("Module", ref.preprocessor), ("Model", ref.model), ("Weight", _number(ref.weight))]
        if ref.low is not None and ref.high is not None:
            unit += [("Threshold A", ref.low), ("Threshold B", ref.high)]
        unit += [
            ("Guidance Start", _number(ref.start)),
            ("Guidance End", _number(ref.end)),
            ("Control Mode", CONTROL_MODE_NAMES[spec.control_mode]),
        ]
        if ref.text is not None:
            unit.append(("QR text", ref.text))
        fields.append((f"ControlNet {index}", settings_text(unit)))
    return fields


def reference_fields(spec: GenerationSpec) -> list[tuple[str, object]]:
    """Each image reference in the way of A1111's ControlNet units (sd-webui-controlnet writes
    its IP-Adapter units so): `IP-Adapter 0: "Type: style, Model: tiny, Weight: 100, Scale: 1,
    Image hash: 1a2b3c4d5e"`: the model that drew it (an SDBOT_IP_ADAPTERS name, or a built-in
    tiny one: `tiny`, `tiny-flux-ip-adapter`, `tiny-flux-redux`), the Midjourney-style weight, the
    scale it became (an IP-Adapter's scale; FLUX.1 Redux's picture-token multiplier), and the
    first 10 hex digits of the picture's SHA-256 (its blob key)."""
    fields: list[tuple[str, object]] = []
    for index, ref in enumerate(spec.references):
        unit = [
            ("Type", ref.kind),
            ("Model", ref.adapter),
            ("Weight", ref.weight),
            ("Scale", _number(ref.scale)),
            ("Image hash", " ".join(key.partition(".")[0][:10] for key in ref.images)),
        ]
        if ref.board:
            unit.append(("Moodboard", ref.board))
        fields.append((f"IP-Adapter {index}", settings_text(unit)))
    return fields


def control_map_infotext(spec: GenerationSpec, index: int, size: tuple[int, int], *, job_id: int | None = None) -> str:
    """The `parameters` of control map `index` of `spec`: what made it (the preprocessor, of which
    picture or text, for which ControlNet unit of which job), in one settings line. It has no
    prompt line: a map is not drawn from a prompt, so /describe does not offer to imagine one."""
    ref = spec.controls[index]
    source = f"the picture {ref.image.partition('.')[0][:10]}" if ref.image is not None else f"the text “{ref.text}”"
    made = source if ref.preprocessor == "none" else f"{ref.preprocessor} of {source}"
    unit = f"job {job_id}, unit {index}" if job_id is not None else f"unit {index}"
    fields: list[tuple[str, object]] = [
        ("Control map", f"{made} for the {ref.type} ControlNet ({unit})"),
        ("Module", ref.preprocessor),
        ("Model", ref.model),
    ]
    if ref.low is not None and ref.high is not None:
        fields += [("Threshold A", ref.low), ("Threshold B", ref.high)]
    fields.append(("Size", f"{size[0]}x{size[1]}"))
    if job_id is not None:
        fields.append(("Job", job_id))
    fields.append(("Version", VERSION))
    return settings_text(fields)


def clip_fields(spec: GenerationSpec, frame: int | None = None) -> list[tuple[str, object]]:
    """A clip's fields (AnimateDiff's and Deforum's names where they have them): frames, fps,
    motion adapter and camera moves, context windows, Deforum's schedules, and the frame number."""
    clip = spec.clip
    assert clip is not None
    if spec.kind == "video":
        return video_fields(spec, frame)
    fields: list[tuple[str, object]] = [("Frames", clip.offset + clip.frames), ("FPS", clip.fps)]
    if clip.motion:
        fields.append(("Motion module", clip.motion))
    if clip.cameras:
        fields.append(("Motion LoRAs", ", ".join(f"{camera.name}: {camera.weight:g}" for camera in clip.cameras)))
    if spec.kind in ("animate", "video2video") and clip.offset + clip.frames > clip.context:
        fields.append(("Context", f"{clip.context} frames, stride {clip.stride}"))
    if spec.kind == "deforum":
        fields += [("Zoom", clip.zoom), ("Angle", clip.angle), ("Translation X", clip.tx), ("Translation Y", clip.ty)]
        if clip.strength_schedule:
            fields.append(("Strength schedule", clip.strength_schedule))
        fields.append(("Color coherence", "LAB" if clip.color_coherence else "None"))
    if clip.loop:
        fields.append(("Loop", "ping-pong"))
    if frame is not None:
        fields.append(("Frame", frame))
    return fields


VIDEO_MODE_NAMES = {"t2v": "text-to-video", "i2v": "image-to-video", "flf2v": "first-last-frame"}


def video_fields(spec: GenerationSpec, frame: int | None = None) -> list[tuple[str, object]]:
    """A video model's clip (Wan, LTX-Video): its frames (with Extend, the clip so far and the new
    ones: one call's first frame is the clip's last), fps, how it was drawn (text-to-video,
    image-to-video, first-last-frame), the first and last frames' pictures as the first 10 hex
    digits of their SHA-256 (their blob keys, as IP-Adapter pictures are written), `--motion` and how
    the family honoured it, the loop, and the frame number."""
    clip = spec.clip
    assert clip is not None
    total = len(clip.source) + clip.frames - 1 if clip.extend else clip.frames
    has_start = clip.extend or spec.init_image is not None
    mode = "flf2v" if clip.end_image is not None else "i2v" if has_start else "t2v"
    fields: list[tuple[str, object]] = [("Frames", total), ("FPS", clip.fps), ("Video", VIDEO_MODE_NAMES[mode])]
    if spec.init_image is not None and not clip.extend:
        fields.append(("Start frame", _hash(spec.init_image)))
    if clip.end_image is not None:
        fields.append(("End frame", _hash(clip.end_image)))
    if clip.extend:
        fields.append(("Extended from", f"{len(clip.source)} frames"))
    if clip.motion_amount:
        found = families.family(spec.family) if families.is_family(spec.family) else None
        support = found.video() if found is not None else None
        rule = support.motion.get(clip.motion_amount) if support is not None else None
        how = "prompt" if rule is not None and rule.prompt_suffix else "frame rate" if rule is not None else None
        fields.append(("Motion", f"{clip.motion_amount} ({how})" if how else clip.motion_amount))
    if clip.loop:
        closed = clip.end_image is not None and clip.end_image == spec.init_image
        fields.append(("Loop", "first-last frame" if closed else "ping-pong"))
    if frame is not None:
        fields.append(("Frame", frame))
    return fields


ADETAILER_SUFFIXES = ("", " 2nd", " 3rd")  # ADetailer's keys for its first, second, third unit


def detail_fields(spec: GenerationSpec) -> list[tuple[str, object]]:
    """ADetailer's pass (`--detail`, the Detail button) as ADetailer writes its units, one per
    target: `ADetailer model: face, ADetailer prompt: ..., ADetailer dilate erode: 4, ADetailer
    mask blur: 4, ADetailer denoising strength: 0.4, ADetailer inpaint only masked: True,
    ADetailer inpaint padding: 32`, later units with ` 2nd`, ` 3rd` after each key, then
    `ADetailer version`. The model is the target (ADetailer's model names say theirs too:
    face_yolov8n.pt); the mask blur is A1111's sigma, as for `Mask blur`."""
    detail = spec.detail
    if detail is None:
        return []
    fields: list[tuple[str, object]] = []
    for target, suffix in zip(detail.targets, ADETAILER_SUFFIXES, strict=False):
        unit: list[tuple[str, object]] = [("ADetailer model", target)]
        if detail.prompt:
            unit.append(("ADetailer prompt", detail.prompt))
        unit += [
            ("ADetailer dilate erode", detail.dilate),
            ("ADetailer mask blur", _number(mask_blur_sigma(detail.mask_blur))),
            ("ADetailer denoising strength", _number(detail.strength)),
            ("ADetailer inpaint only masked", "True"),
            ("ADetailer inpaint padding", detail.padding),
        ]
        fields += [(key + suffix, value) for key, value in unit]
    fields.append(("ADetailer version", VERSION))
    return fields


def _hash(key: str) -> str:
    return key.partition(".")[0][:10]


def _prompt_feature_fields(spec: GenerationSpec, template: GenerationSpec | None) -> list[tuple[str, object]]:
    fields: list[tuple[str, object]] = []
    if spec.styles:
        fields.append(("Styles", ", ".join(spec.styles)))
    if spec.regions:
        from generation.prompts.region_layout import DEFAULT_BASE_RATIO, parse_layout, split_regions

        fields.append(("Regions", parse_layout(spec.regions).text))
        if split_regions(spec.prompt).base is not None:
            fields.append(("Base ratio", _number(DEFAULT_BASE_RATIO if spec.base_ratio is None else spec.base_ratio)))
    if spec.loras:  # A1111's keys: Civitai reads them to link the resources used
        fields.append(("Lora hashes", ", ".join(f"{ref.name}: {ref.short_hash}" for ref in spec.loras)))
        if any(f"<lora:{ref.name}" not in spec.prompt.lower() for ref in spec.loras):  # given with --lora
            fields.append(("Lora weights", ", ".join(f"{ref.name}: {ref.weight:g}" for ref in spec.loras)))
    if spec.hypernetworks:  # A1111's keys (one hypernetwork: as its settings wrote it; several: listed alike)
        fields.append(("Hypernet", ", ".join(ref.name for ref in spec.hypernetworks)))
        fields.append(("Hypernet strength", ", ".join(f"{ref.weight:g}" for ref in spec.hypernetworks)))
    if spec.embeddings:
        fields.append(("TI hashes", ", ".join(f"{ref.name}: {ref.short_hash}" for ref in spec.embeddings)))
    if template is not None and template.prompt != spec.prompt:
        fields.append(("Template", template.prompt))
    if template is not None and template.negative_prompt != spec.negative_prompt:
        fields.append(("Negative Template", template.negative_prompt))
    if template is not None and template.chaos:  # this picture's prompt and CFG are its chaos variation
        fields.append(("Chaos", template.chaos))
    return fields


def _postprocess_fields(spec: GenerationSpec) -> list[tuple[str, object]]:
    masked_edit = spec.kind == "instruct" and (spec.mask is not None or spec.select is not None)
    if spec.kind in ("inpaint", "outpaint") or masked_edit:
        # A1111's "Mask blur" is the Gaussian's sigma; ours (`--blur`) is its reach in pixels.
        fields: list[tuple[str, object]] = [("Mask blur", _number(mask_blur_sigma(spec.mask_blur)))]
        if spec.select:
            fields.append(("Inpaint select", spec.select))
        if masked_edit and spec.mask:  # a box or an attached mask, as the edit's pictures are written
            fields.append(("Edit mask", spec.mask.partition(".")[0][:10]))
        if spec.only_masked:
            fields += [("Inpaint area", "Only masked"), ("Masked area padding", spec.only_masked_padding)]
        if spec.placement:
            x, y, w, h = spec.placement
            fields.append(("Outpaint placement", f"{w}x{h} at {x},{y}"))
        return fields
    if spec.kind == "upscale":
        fields = [("Postprocess upscale by", _number(spec.scale or 1)), ("Upscale method", spec.upscale_method)]
        if spec.upscaler:
            fields.append(("Postprocess upscaler", spec.upscaler))
        return fields
    if spec.kind == "facefix":
        fields = [("Face restoration", spec.face_model or "default")]
        if spec.face_fidelity is not None:  # as A1111's extras tab writes CodeFormer's w
            fields.append(("CodeFormer weight", _number(spec.face_fidelity)))
        return fields
    return []


def parse_infotext(text: str) -> dict[str, str]:
    """Read A1111 parameters back: {'Prompt', 'Negative prompt', 'Steps', 'Seed', ...}."""
    *head, last = text.strip().replace("\r\n", "\n").split("\n")
    if len(_PARAM.findall(last)) < 3:  # no settings line: all of it is prompt
        head, last = [*head, last], ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in head:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].lstrip()
        target.append(line)
    result = {"Prompt": "\n".join(prompt_lines), "Negative prompt": "\n".join(negative_lines)}
    for key, value in _PARAM.findall(last):
        if value.startswith('"') and value.endswith('"'):
            try:
                value = json.loads(value)
            except ValueError:  # not JSON's escapes (another tool's quoting): keep it as written
                value = value[1:-1]
        result[key.strip()] = value
    return result
