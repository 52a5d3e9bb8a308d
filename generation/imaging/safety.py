"""The safety classifier every output passes: a score from 0 (clearly fine) to 1 (clearly not),
which the command layer turns into what a place does with the picture (commands.jobs.safety).

Two kinds of model, told apart by their config:
- diffusers' `StableDiffusionSafetyChecker` (e.g. CompVis/stable-diffusion-safety-checker, with
  its CLIP image processor): the score is its own decision made continuous. The checker flags an
  image when the cosine similarity to one of its concept embeddings exceeds that concept's
  threshold (plus 0.01 once a "special care" concept is hit); the score is 0.5 + 10 × the
  largest margin, clamped to 0..1, so 0.5 is exactly the checker's own line, and a margin of
  ±0.05 (about the spread of its thresholds) reaches 1 or 0.
- a transformers image classifier (e.g. Falconsai/nsfw_image_detection): the score is the sum of
  the probabilities of the labels SDBOT_SAFETY_LABELS names.
`tiny` is a random-weight safety checker of the real architecture, built like the tiny model,
for trying the policies offline; its scores mean nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from generation.errors import ModelLoadError

BATCH = 16  # images per classifier call (a 32-frame clip is two)
MARGIN_SCALE = 10.0  # score = 0.5 + MARGIN_SCALE × the checker's largest margin
TINY_FOLDER = "tiny-safety-checker"


class SafetyChecker:
    """diffusers' StableDiffusionSafetyChecker, scored by its margins (see the module's doc)."""

    def __init__(self, model: Any, processor: Any, device: torch.device):
        self.model, self.processor, self.device = model, processor, device

    @torch.no_grad()
    def score(self, images: Sequence[Image.Image]) -> list[float]:
        from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

        scores: list[float] = []
        for start in range(0, len(images), BATCH):
            batch = [image.convert("RGB") for image in images[start : start + BATCH]]
            inputs = self.processor(images=batch, return_tensors="pt").pixel_values.to(self.device, self.model.dtype)
            pooled = self.model.vision_model(inputs)[1]
            embeds = self.model.visual_projection(pooled).float()
            special = cosine_distance(embeds, self.model.special_care_embeds.float()) - self.model.special_care_embeds_weights.float()
            # as the checker: a hit on a "special care" concept lowers every concept's bar by 0.01
            adjustment = (special > 0).any(dim=1, keepdim=True).float() * 0.01
            concepts = cosine_distance(embeds, self.model.concept_embeds.float()) - self.model.concept_embeds_weights.float() + adjustment
            margin = torch.maximum(concepts.max(dim=1).values, special.max(dim=1).values)
            scores += [float(v) for v in (0.5 + MARGIN_SCALE * margin).clamp(0, 1).cpu()]
        return scores


class LabelClassifier:
    """A transformers image classifier: the summed probability of the unsafe labels."""

    def __init__(self, model: Any, processor: Any, unsafe: Sequence[str], device: torch.device):
        self.model, self.processor, self.device = model, processor, device
        labels = {str(name).lower(): index for index, name in model.config.id2label.items()}
        self.unsafe = [labels[name.lower()] for name in unsafe if name.lower() in labels]
        if not self.unsafe:
            raise ModelLoadError(
                f"the safety classifier's labels are {', '.join(labels)}; none of them is in SDBOT_SAFETY_LABELS "
                f"({', '.join(unsafe)}). Set SDBOT_SAFETY_LABELS to the labels that mean unsafe."
            )

    @torch.no_grad()
    def score(self, images: Sequence[Image.Image]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(images), BATCH):
            batch = [image.convert("RGB") for image in images[start : start + BATCH]]
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            probabilities = self.model(**inputs).logits.float().softmax(dim=-1)
            scores += [float(v) for v in probabilities[:, self.unsafe].sum(dim=1).clamp(0, 1).cpu()]
        return scores


def load_safety_classifier(source: str, labels: Sequence[str], models_dir: Path, device: torch.device) -> SafetyChecker | LabelClassifier:
    """The classifier SDBOT_SAFETY_CLASSIFIER names: `tiny`, a folder, or a Hub id already cached
    (nothing is downloaded: HF_HUB_OFFLINE is honoured, and a missing model says what to do)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, CLIPImageProcessor

    if source == "tiny":
        source = str(build_tiny_safety_checker(models_dir / TINY_FOLDER))
    try:
        config = AutoConfig.from_pretrained(source)
        if "StableDiffusionSafetyChecker" in (getattr(config, "architectures", None) or []):
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

            model = StableDiffusionSafetyChecker.from_pretrained(source, use_safetensors=_has_safetensors(source))
            processor = CLIPImageProcessor.from_pretrained(source)
            return SafetyChecker(model.to(device).eval(), processor, device)
        model = AutoModelForImageClassification.from_pretrained(source)
        processor = AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"the safety classifier `{source}` can't be loaded ({error}). SDBOT_SAFETY_CLASSIFIER takes `tiny`, a folder, "
            "or a Hub id downloaded once (e.g. CompVis/stable-diffusion-safety-checker or Falconsai/nsfw_image_detection)."
        ) from error
    return LabelClassifier(model.to(device).eval(), processor, labels, device)


def _has_safetensors(source: str) -> bool | None:
    folder = Path(source)
    return any(folder.glob("*.safetensors")) if folder.is_dir() else None  # a Hub id: either form


def build_tiny_safety_checker(folder: Path, *, seed: int = 0) -> Path:
    """A random StableDiffusionSafetyChecker with a tiny CLIP vision tower (32 px), saved once
    with save_pretrained (and its image processor) and then loaded like any other."""
    if (folder / "config.json").exists():
        return folder
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 4,
        },
        projection_dim=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = StableDiffusionSafetyChecker(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    (folder / "README.txt").write_text(json.dumps({"what": "sdbot's tiny random safety checker: its scores mean nothing"}))
    return folder
