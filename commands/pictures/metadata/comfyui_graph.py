"""Walking a ComfyUI API graph (`{node_id: {"class_type", "inputs"}}`, links `[node_id, output]`)
back from a sampler's inputs to the values behind them: primitives and string nodes, the prompt
text behind a conditioning, clip skip, the checkpoint and LoRAs behind a model, and where the
latent comes from (an empty latent's size, an encoded image, another sampler).

Every lookup may miss and every link may loop: a walk follows at most MAX_DEPTH links, notes and
stops at a loop, and one graph allows MAX_VISITS lookups in all (a tangled DAG can branch
exponentially)."""

from __future__ import annotations

from typing import Any

from commands.pictures.metadata.limits import MAX_DEPTH, MAX_VISITS
from commands.pictures.metadata.result import Result
from commands.pictures.metadata.values import number_text, short, to_float, to_int

SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_VALUE_KEYS = ("value", "text", "string", "seed", "noise_seed", "int", "float", "number", "Text", "STRING")
# string nodes that join their inputs: class -> prefix of the inputs joined (in name order)
_CONCAT = {"StringConcatenate": "string_", "Text Concatenate": "text_", "JoinStrings": "string"}


def _is_link(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


class Graph:
    """A ComfyUI API graph, walked defensively: every lookup may miss, every link may loop."""

    def __init__(self, nodes: dict[str, dict[str, Any]], out: Result):
        self.nodes = nodes
        self.out = out
        self.visits = 0

    def node(self, link: object) -> tuple[str, str, dict[str, Any], int] | None:
        """(id, class, inputs, output index) of what `link` points at, through reroutes."""
        for _ in range(MAX_DEPTH):
            if not _is_link(link):
                return None
            self.visits += 1
            if self.visits > MAX_VISITS:
                self.out.note("The graph is too tangled to follow in full; some of it was not read.")
                return None
            node_id = str(link[0])  # type: ignore[index]
            node = self.nodes.get(node_id)
            if node is None:
                return None
            if node["class_type"] == "Reroute" and "input" in node["inputs"]:
                link = node["inputs"]["input"]
                continue
            return node_id, node["class_type"], node["inputs"], link[1]  # type: ignore[index]
        return None

    def _step(self, link: object, path: tuple[str, ...]) -> tuple[str, str, dict[str, Any], int] | None:
        """`node(link)` on a walk that has passed `path`: None where the walk would loop."""
        if len(path) > MAX_DEPTH:
            return None
        found = self.node(link)
        if found is not None and found[0] in path:
            self.out.note(f"The graph loops back to node {short(found[0])}; the loop is not followed.")
            return None
        return found

    def value(self, raw: object, path: tuple[str, ...] = ()) -> Any:
        """A literal input, or the value of the primitive / string node it links to."""
        if not _is_link(raw):
            return raw
        found = self._step(raw, path)
        if found is None:
            return None
        node_id, cls, inputs, _ = found
        path = (*path, node_id)
        prefix = _CONCAT.get(cls)
        if prefix is not None:
            parts = [self.value(v, path) for k, v in sorted(inputs.items()) if k.startswith(prefix)]
            delimiter = self.value(inputs.get("delimiter", " "), path)
            delimiter = delimiter if isinstance(delimiter, str) else " "
            return delimiter.join(str(p) for p in parts if isinstance(p, (str, int, float)) and p != "")
        for key in _VALUE_KEYS:
            if key in inputs:
                return self.value(inputs[key], path)
        if len(inputs) == 1:
            return self.value(next(iter(inputs.values())), path)
        return None

    def text(self, raw: object) -> str:
        value = self.value(raw)
        return value if isinstance(value, str) else ""

    def conditioning(self, raw: object, path: tuple[str, ...] = ()) -> str:
        """The prompt text behind a conditioning input."""
        found = self._step(raw, path)
        if found is None:
            return ""
        node_id, cls, inputs, index = found
        path = (*path, node_id)
        note = self.out.note
        if cls == "CLIPTextEncodeSDXL" or ("text_g" in inputs and "text_l" in inputs):
            text_g, text_l = self.text(inputs.get("text_g")), self.text(inputs.get("text_l"))
            if text_l.strip() and text_l.strip() != text_g.strip():
                note(f"SDXL's second prompt (text_l) differs and is not carried over: `{short(text_l)}`.")
            return text_g or text_l
        if cls == "CLIPTextEncodeFlux" or "t5xxl" in inputs:
            return self.text(inputs.get("t5xxl")) or self.text(inputs.get("clip_l"))
        if "text" in inputs and ("clip" in inputs or "TextEncode" in cls):
            return self.text(inputs["text"])
        if cls == "ConditioningZeroOut":
            return ""
        if cls == "ConditioningConcat":  # one prompt's chunks after the other's: A1111's BREAK
            parts = [self.conditioning(inputs.get(k), path) for k in ("conditioning_to", "conditioning_from")]
            return " BREAK ".join(p for p in parts if p)
        if cls in ("ConditioningCombine", "ConditioningAverage") or cls.startswith("ConditioningCombine"):
            keys = sorted(k for k in inputs if k.startswith("conditioning"))
            parts = [p for p in (self.conditioning(inputs[k], path) for k in keys) if p]
            if len(parts) > 1:
                note(f"The graph mixes {len(parts)} prompts ({cls}); they are joined with commas here.")
            return ", ".join(parts)
        if "positive" in inputs and "negative" in inputs:  # ControlNetApplyAdvanced and friends
            if "ControlNet" in cls:
                note("ControlNet guidance is not carried over.")
            else:
                note(f"`{short(cls)}` is not carried over.")
            return self.conditioning(inputs["negative" if index == 1 else "positive"], path)
        for key in ("conditioning", "conditioning_to", "cond", "conditioning_1"):
            if key in inputs:
                if cls == "FluxGuidance":
                    self.out.show("Guidance", self.value(inputs.get("guidance")))
                elif cls.startswith(("ConditioningSetArea", "ConditioningSetMask")):
                    note(f"Area and mask conditioning (`{cls}`) is not carried over.")
                elif "ControlNet" in cls:
                    note("ControlNet guidance is not carried over.")
                elif cls != "ConditioningSetTimestepRange":
                    note(f"`{short(cls)}` is not carried over.")
                return self.conditioning(inputs[key], path)
        text = inputs.get("text")
        if text is not None:
            return self.text(text)
        note(f"The prompt of node {node_id} (`{short(cls)}`) could not be read.")
        return ""

    def clip_skip(self, raw: object) -> int | None:
        """Clip skip from the text encoder's clip input (CLIPSetLastLayer -2 = A1111's 2)."""
        found = self.node(raw)
        if found is None:
            return None
        _, cls, inputs, _ = found
        if cls not in ("CLIPTextEncode", "CLIPTextEncodeSDXL"):
            return None
        link = inputs.get("clip")
        for _ in range(MAX_DEPTH):
            found = self.node(link)
            if found is None:
                return None
            _, cls, inputs, _ = found
            if "stop_at_clip_layer" in inputs:
                layer = to_int(self.value(inputs["stop_at_clip_layer"]))
                return -layer if layer is not None and layer < 0 else None
            link = inputs.get("clip")
        return None

    def model(self, raw: object) -> None:
        """The checkpoint behind a sampler's model input, and the LoRAs on the way."""
        loras: list[str] = []
        link = raw
        for _ in range(MAX_DEPTH):
            found = self.node(link)
            if found is None:
                break
            _, cls, inputs, _ = found
            if "ckpt_name" in inputs or "unet_name" in inputs:
                name = self.value(inputs.get("ckpt_name", inputs.get("unet_name")))
                if isinstance(name, str):
                    self.out.show("Model", name)
                    self.out.model(name)
                break
            if "lora_name" in inputs:
                if not inputs.get("_bypassed"):
                    name = self.value(inputs["lora_name"])
                    strength = to_float(self.value(inputs.get("strength_model")))
                    shown = f"{name} ({number_text(strength)})" if strength is not None else str(name)
                    loras.append(shown)
                    weight = f" (strength {number_text(strength)})" if strength is not None else ""
                    self.out.note(f"LoRA `{name}`{weight} is applied by the graph; it is not carried over.")
            elif "model" in inputs and not cls.startswith("ModelSampling"):
                self.out.note(f"The model passes through `{short(cls)}`, which is not carried over.")
            link = inputs.get("model")
        if loras:
            self.out.show("LoRAs", ", ".join(reversed(loras)))

    def latent(self, raw: object) -> tuple[str, str | None]:
        """Where a sampler's latent comes from: ("empty" | "image" | "sampler" | "?", size)."""
        link = raw
        for _ in range(MAX_DEPTH):
            found = self.node(link)
            if found is None:
                return "?", None
            _, cls, inputs, _ = found
            if cls in SAMPLER_CLASSES or "sampler_name" in inputs:
                return "sampler", None
            if "width" in inputs and "height" in inputs and cls.startswith("Empty"):
                width, height = to_int(self.value(inputs["width"])), to_int(self.value(inputs["height"]))
                batch = to_int(self.value(inputs.get("batch_size")))
                if batch and batch > 1:
                    self.out.show("Batch size", batch)
                size = f"{width}x{height}" if width and height else None
                return "empty", size
            if "pixels" in inputs or cls.startswith("VAEEncode"):
                return "image", None
            link = next((inputs[k] for k in ("samples", "latent", "latent_image", "input") if k in inputs), None)
        return "?", None
