"""ComfyUI: the API graph (`prompt` chunk) or, failing that, the UI workflow (`workflow` chunk)
converted to the same form, read from the sampler back to its prompts, model and latent.

Where there are several samplers, one is shown and the rest noted: the first by node id, preferring
one whose latent does not come from another sampler. SamplerCustomAdvanced's guider / noise /
sampler / sigmas nodes are followed. At most MAX_NODES nodes of a graph are read."""

from __future__ import annotations

import json
from typing import Any

from commands.pictures.metadata.comfyui_graph import SAMPLER_CLASSES, Graph
from commands.pictures.metadata.comfyui_workflow import workflow_to_api
from commands.pictures.metadata.limits import MAX_NODES
from commands.pictures.metadata.result import ImageMetadata, Result
from commands.pictures.metadata.samplers import comfy_sampler
from commands.pictures.metadata.values import to_float, to_int


def _sampler_nodes(nodes: dict[str, dict[str, Any]]) -> list[str]:
    return [
        node_id
        for node_id, node in nodes.items()
        if not node["inputs"].get("_bypassed")
        and (node["class_type"] in SAMPLER_CLASSES or {"positive", "negative", "latent_image", "sampler_name"} <= node["inputs"].keys())
    ]


def _node_order(node_id: str) -> tuple[int, str]:
    number = to_int(node_id)  # not str.isdigit(): "²" is a digit to it and no number to int()
    return (number, "") if number is not None else (2**63, node_id)


def from_comfy(text: str, notes: list[str], *, api: bool) -> ImageMetadata:
    out = Result("comfyui", text, notes)
    form = "graph" if api else "workflow"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        out.note(f"The image's ComfyUI {form} is not valid JSON; nothing could be read from it.")
        return out.build()
    if not api:
        out.note("Only ComfyUI's UI workflow is in the image (no API graph); settings are read from its node widgets.")
        data = workflow_to_api(data, out)
    nodes = _api_nodes(data, out)
    if not nodes:
        out.note(f"The image's ComfyUI {form} has no nodes that could be read.")
        return out.build()
    graph = Graph(nodes, out)
    samplers = _sampler_nodes(nodes)
    if not samplers:
        out.note(f"No sampler was found in the ComfyUI {form}.")
        return out.build()
    origins = {node_id: graph.latent(nodes[node_id]["inputs"].get("latent_image")) for node_id in samplers}
    samplers.sort(key=lambda node_id: (origins[node_id][0] == "sampler", _node_order(node_id)))
    if len(samplers) > 1:
        out.note(f"The graph has {len(samplers)} samplers; the first one's settings are shown.")
    first = samplers[0]
    _read_sampler(graph, nodes[first], origins[first], out)
    return out.build()


def _read_sampler(graph: Graph, node: dict[str, Any], origin: tuple[str, str | None], out: Result) -> None:
    inputs = node["inputs"]
    value = graph.value
    positive, negative = inputs.get("positive"), inputs.get("negative")
    model, cfg = inputs.get("model"), inputs.get("cfg")
    seed = inputs.get("seed", inputs.get("noise_seed"))
    steps, denoise = inputs.get("steps"), inputs.get("denoise")
    sampler_name, scheduler = inputs.get("sampler_name"), inputs.get("scheduler")

    guider = graph.node(inputs.get("guider"))  # SamplerCustomAdvanced
    if guider is not None:
        g = guider[2]
        model, cfg = g.get("model"), g.get("cfg", 1.0)
        positive, negative = g.get("positive", g.get("conditioning")), g.get("negative")
    noise = graph.node(inputs.get("noise"))
    if noise is not None:
        seed = noise[2].get("noise_seed")
    picked = graph.node(inputs.get("sampler"))  # KSamplerSelect
    if picked is not None:
        sampler_name = picked[2].get("sampler_name")
    sigmas = graph.node(inputs.get("sigmas"))  # BasicScheduler, KarrasScheduler, ...
    if sigmas is not None:
        cls, s = sigmas[1], sigmas[2]
        steps, denoise = s.get("steps"), s.get("denoise", denoise)
        scheduler = s.get("scheduler", "karras" if cls == "KarrasScheduler" else cls)

    out.prompt = graph.conditioning(positive)
    out.negative = graph.conditioning(negative)
    steps, cfg, seed, denoise = value(steps), value(cfg), value(seed), value(denoise)
    sampler_name, scheduler = value(sampler_name), value(scheduler)
    out.show("Steps", steps)
    out.show("Sampler", sampler_name)
    out.show("Schedule type", scheduler)
    out.show("CFG scale", to_float(cfg))
    out.show("Seed", seed)
    out.steps(steps)
    out.cfg(cfg)
    out.seed(seed)
    if isinstance(sampler_name, str):
        out.sampler(comfy_sampler(sampler_name, scheduler if isinstance(scheduler, str) else ""))
    kind, size = origin
    if size:
        out.show("Size", size)
        out.options["size"] = size
    graph.model(model)
    clip_skip = graph.clip_skip(positive)
    if clip_skip:
        out.show("Clip skip", clip_skip)
        out.options["clip_skip"] = clip_skip
    strength = to_float(denoise)
    if strength is not None and strength < 1:
        out.show("Denoising strength", strength)
        if kind == "image" and strength > 0:
            out.options["strength"] = strength
            out.note("It was made from another image (img2img); its strength applies only when you give an image.")
    if node["class_type"] == "KSamplerAdvanced":
        start, end = to_int(value(inputs.get("start_at_step"))), to_int(value(inputs.get("end_at_step")))
        total = to_int(steps)
        if (start or 0) > 0 or (end is not None and total is not None and end < total):
            out.note(f"This sampler runs only steps {start or 0} to {min(end or 0, total or 0)} of {total}.")


def _api_nodes(data: object, out: Result) -> dict[str, dict[str, Any]]:
    """The well-formed nodes of an API graph, at most MAX_NODES of them."""
    if not isinstance(data, dict):
        return {}
    if len(data) > MAX_NODES:
        out.note(f"The graph has {len(data):,} nodes; only the first {MAX_NODES:,} are read.")
    nodes: dict[str, dict[str, Any]] = {}
    for node_id, node in list(data.items())[:MAX_NODES]:
        if not isinstance(node, dict):
            continue
        cls, inputs = node.get("class_type"), node.get("inputs")
        if isinstance(cls, str) and isinstance(inputs, dict):
            nodes[str(node_id)] = {"class_type": cls, "inputs": inputs}
    return nodes
