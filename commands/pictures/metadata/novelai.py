"""NovelAI: PNG `Software: NovelAI`, `Description` (the prompt) and `Comment` (JSON settings:
`prompt`, `uc` the negative, steps, scale, seed, sampler, noise_schedule, size, img2img strength).

NovelAI's model (`Source`), V4 character prompts, CFG rescale and SMEA exist only there; they
are shown or noted, not carried over."""

from __future__ import annotations

from commands.pictures.metadata.result import ImageMetadata, Result
from commands.pictures.metadata.samplers import novelai_sampler
from commands.pictures.metadata.values import json_dict, number_text, short, to_float, to_int


def is_novelai_comment(text: str | None) -> bool:
    data = json_dict(text)
    return data is not None and "uc" in data and "sampler" in data


def from_novelai(fields: dict[str, str], notes: list[str]) -> ImageMetadata:
    comment = fields.get("Comment", "")
    out = Result("novelai", comment or fields.get("Description", ""), notes)
    data = json_dict(comment)
    if data is None:
        data = {}
        out.note("NovelAI's settings (the `Comment` text) could not be read; only the prompt is shown.")
    prompt = data.get("prompt")
    out.prompt = prompt if isinstance(prompt, str) else fields.get("Description", "")
    negative = data.get("uc")
    out.negative = negative if isinstance(negative, str) else ""
    v4 = data.get("v4_prompt")
    captions = v4.get("caption") if isinstance(v4, dict) else None
    characters = captions.get("char_captions") if isinstance(captions, dict) else None
    if isinstance(characters, list) and characters:
        out.note(f"NovelAI's {len(characters)} character prompt(s) are not carried over.")

    steps, scale, seed = data.get("steps"), data.get("scale"), data.get("seed")
    sampler, schedule = data.get("sampler"), data.get("noise_schedule")
    width, height = data.get("width"), data.get("height")
    out.show("Steps", steps)
    out.show("Sampler", sampler)
    out.show("Schedule type", schedule)
    out.show("CFG scale", to_float(scale))
    out.show("Seed", seed)
    if to_int(width) and to_int(height):
        out.show("Size", f"{to_int(width)}x{to_int(height)}")
        out.size(width, height)
    model = fields.get("Source", "").strip()
    out.show("Model", model)
    if model:
        out.note(f"NovelAI's model (`{short(model)}`) exists only there; the model here is used.")
    out.steps(steps)
    out.cfg(scale)
    out.seed(seed)
    if isinstance(sampler, str):
        out.sampler(novelai_sampler(sampler, schedule if isinstance(schedule, str) else ""))
    rescale = to_float(data.get("cfg_rescale"))
    if rescale:
        out.show("CFG rescale", rescale)
        out.note(f"CFG rescale ({number_text(rescale)}) is not carried over.")
    if data.get("sm") or data.get("sm_dyn"):
        out.show("SMEA", "DYN" if data.get("sm_dyn") else "on")
        out.note("NovelAI's SMEA is not carried over.")
    if "img2img" in str(data.get("request_type", "")).lower():
        strength = to_float(data.get("strength"))
        if strength is not None and 0 < strength <= 1:
            out.show("Denoising strength", strength)
            out.options["strength"] = strength
            out.note("It was made from another image (img2img); its strength applies only when you give an image.")
    return out.build()
