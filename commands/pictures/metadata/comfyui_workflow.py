"""ComfyUI's UI workflow (the `workflow` chunk: `nodes` with positional `widgets_values`, and
`links`) as an API-like graph, for when an image carries no API graph.

Linked inputs become `[node, slot]`; the widgets of the core nodes listed in WIDGETS become named
inputs (with or without the "control after generate" value after a seed); muted and bypassed
nodes are marked `_bypassed`. At most MAX_NODES nodes are read."""

from __future__ import annotations

from typing import Any

from commands.pictures.metadata.limits import MAX_NODES
from commands.pictures.metadata.result import Result

_CONTROL = ("fixed", "increment", "decrement", "randomize")

# The UI workflow stores widget values by position; these are the positions of the core nodes.
# None is the "control after generate" value that follows a seed widget.
WIDGETS: dict[str, tuple[str | None, ...]] = {
    "KSampler": ("seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        None,
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),
    "SamplerCustom": ("add_noise", "noise_seed", None, "cfg"),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("ascore", "width", "height", "text"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "KarrasScheduler": ("steps", "sigma_max", "sigma_min", "rho"),
    "RandomNoise": ("noise_seed", None),
    "CFGGuider": ("cfg",),
    "FluxGuidance": ("guidance",),
    "PrimitiveNode": ("value", None),
    "PrimitiveInt": ("value", None),
    "PrimitiveFloat": ("value",),
    "PrimitiveString": ("value",),
    "PrimitiveStringMultiline": ("value",),
}


def workflow_to_api(data: object, out: Result) -> dict[str, dict[str, Any]]:
    """A UI workflow as an API-like graph: linked inputs become [node, slot], known widgets
    become named inputs. Muted and bypassed nodes are marked `_bypassed`."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return {}
    sources: dict[int, list[Any]] = {}
    links = data.get("links")
    for link in links[: MAX_NODES * 8] if isinstance(links, list) else []:
        if isinstance(link, list) and len(link) >= 3 and isinstance(link[0], int):
            sources[link[0]] = [link[1], link[2]]
        elif isinstance(link, dict) and isinstance(link.get("id"), int):
            sources[link["id"]] = [link.get("origin_id"), link.get("origin_slot")]
    nodes = data["nodes"]
    if len(nodes) > MAX_NODES:
        out.note(f"The workflow has {len(nodes):,} nodes; only the first {MAX_NODES:,} are read.")
    graph: dict[str, dict[str, Any]] = {}
    for node in nodes[:MAX_NODES]:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str) or not _is_id(node.get("id")):
            continue
        cls = node["type"]
        inputs: dict[str, Any] = _widgets(cls, node.get("widgets_values"))
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and isinstance(slot.get("link"), int) and slot["link"] in sources:
                name = slot.get("name") if cls != "Reroute" else "input"
                if isinstance(name, str):
                    inputs[name] = sources[slot["link"]]
        if node.get("mode") in (2, 4):
            inputs["_bypassed"] = True
        graph[str(node["id"])] = {"class_type": cls, "inputs": inputs}
    return graph


def _is_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _widgets(cls: str, values: object) -> dict[str, Any]:
    names = WIDGETS.get(cls)
    if names is None or not isinstance(values, list):
        return {}
    if len(values) != len(names) or any(n is None and values[i] not in _CONTROL for i, n in enumerate(names)):
        names = tuple(n for n in names if n is not None)  # saved without control values
        if len(values) < len(names):
            return {}
    return {name: value for name, value in zip(names, values, strict=False) if name is not None}
