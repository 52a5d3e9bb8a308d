"""What a training run asks for. Torch-free: `commands/` builds it, the worker runs it, and it is
stored as the job's `params` JSON (kind "train"), so fields are only ever added, with defaults.

Each method has its own defaults (`METHOD_DEFAULTS`), fitted to what kohya_ss, LyCORIS and A1111
use for it; every number a person may set has a named bound (`BOUNDS`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from generation.spec import Spec

TrainMethod = Literal["lora", "loha", "lokr", "dreambooth", "embedding", "hypernetwork"]
TRAIN_METHODS: tuple[str, ...] = ("lora", "loha", "lokr", "dreambooth", "embedding", "hypernetwork")
LORA_METHODS = ("lora", "loha", "lokr", "dreambooth")  # those with a rank and an alpha
# What each method makes: a LoRA-like file (used as `<lora:NAME:w>`), an embedding (NAME in a
# prompt) or a hypernetwork (`<hypernet:NAME:w>`).
ASSET_KIND = {
    "lora": "lora",
    "loha": "lora",
    "lokr": "lora",
    "dreambooth": "lora",
    "embedding": "embedding",
    "hypernetwork": "hypernetwork",
}
# The file format each method is saved in (generation.assets.files names these formats).
FILE_FORMAT = {
    "lora": "kohya",
    "loha": "loha",
    "lokr": "lokr",
    "dreambooth": "kohya",
    "embedding": "a1111-ti",
    "hypernetwork": "a1111-hypernetwork",
}
METHOD_LABELS = {
    "lora": "LoRA",
    "loha": "LoHa (LyCORIS)",
    "lokr": "LoKr (LyCORIS)",
    "dreambooth": "DreamBooth LoRA",
    "embedding": "embedding",
    "hypernetwork": "hypernetwork",
}


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    integer: bool = True


BOUNDS: dict[str, Bound] = {
    "rank": Bound(1, 128),
    "alpha": Bound(0.01, 256, integer=False),
    "lr": Bound(1e-6, 0.1, integer=False),
    "batch": Bound(1, 8),
    "sample_every": Bound(0, 10_000),  # 0: no samples during the run (the last one still comes)
    "vectors": Bound(1, 16),
    "class_images": Bound(1, 200),
    "prior_weight": Bound(0, 10, integer=False),
    "snr_gamma": Bound(0, 20, integer=False),  # 0: plain MSE; 5 is the paper's and kohya's choice
}


@dataclass(frozen=True)
class MethodDefaults:
    steps: int
    rank: int
    alpha: float
    lr: float
    text_encoder: bool  # train the text encoder's adapters too


# kohya_ss / LyCORIS / A1111 defaults per method. LoHa and LoKr learn faster per parameter and
# are trained at a higher rate (LyCORIS's guidance); an embedding at A1111's 0.005, a hypernetwork
# at A1111's 0.00001 (its UI's `hypernetwork_learn_rate`; A1111's 100000 max steps are cut to what
# a chat run takes).
METHOD_DEFAULTS: dict[str, MethodDefaults] = {
    "lora": MethodDefaults(steps=800, rank=16, alpha=8, lr=1e-4, text_encoder=True),
    "loha": MethodDefaults(steps=800, rank=8, alpha=4, lr=2e-4, text_encoder=True),
    "lokr": MethodDefaults(steps=800, rank=8, alpha=4, lr=4e-4, text_encoder=True),
    "dreambooth": MethodDefaults(steps=800, rank=16, alpha=8, lr=1e-4, text_encoder=True),
    "embedding": MethodDefaults(steps=1000, rank=0, alpha=0, lr=5e-3, text_encoder=False),
    "hypernetwork": MethodDefaults(steps=2000, rank=0, alpha=0, lr=1e-5, text_encoder=False),
}
DEFAULT_VECTORS = 4
DEFAULT_CLASS_IMAGES = 50
DEFAULT_PRIOR_WEIGHT = 1.0
DEFAULT_INIT_WORD = "*"  # A1111's default initialization text


class TrainImage(Spec):
    """One picture of the dataset: a blob (PNG, EXIF-rotated, RGB) and its caption, when known
    before the run (a sidecar `.txt`, or the trigger alone with `--captions none`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    blob: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    filename: str
    caption: str | None = None  # None: the run's captioner writes it (and puts the trigger first)


class TrainingSpec(Spec):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["train"] = "train"
    method: TrainMethod
    name: str  # the asset's name: `<lora:NAME:w>`, the embedding's word, `<hypernet:NAME:w>`
    model: str
    images: tuple[TrainImage, ...] = Field(min_length=1)
    trigger: str  # written first in every caption; the word that calls up what was learned
    captions: Literal["auto", "none"] = "auto"  # none: every caption is the trigger alone
    steps: int = Field(gt=0)
    rank: int = Field(0, ge=0)  # LoRA / LoHa / LoKr / DreamBooth: the adapter's rank
    alpha: float = Field(0, ge=0)
    lr: float = Field(gt=0)
    resolution: int = Field(gt=0)  # the side of the square bucket; other buckets keep its area
    batch: int = Field(1, ge=1)
    seed: int = Field(ge=0)
    text_encoder: bool = False  # train adapters on the text encoder(s) too
    snr_gamma: float = Field(0, ge=0)  # min-SNR weighting (0: off)
    # DreamBooth: pictures of the class drawn by the base model, learned beside the person's own
    class_prompt: str | None = None
    class_images: int = Field(0, ge=0)
    prior_weight: float = Field(0, ge=0)
    # embedding
    vectors: int = Field(0, ge=0)
    init_word: str | None = None
    # samples and checkpoints
    sample_every: int = Field(0, ge=0)  # steps between sample pictures posted to the chat (0: none)
    sample_prompt: str = ""
    sample_steps: int = Field(20, gt=0)
    checkpoint_every: int = Field(50, gt=0)
    # Only caption the pictures and answer with the captions (`/train preview`); nothing is trained.
    preview: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSpec:
        if self.method == "embedding":
            if self.vectors < 1 or not self.init_word:
                raise ValueError("an embedding needs vectors and an init word")
        elif self.method in LORA_METHODS and (self.rank < 1 or self.alpha <= 0):
            raise ValueError(f"{self.method} needs a rank and an alpha")
        if self.method == "hypernetwork" and self.text_encoder:
            raise ValueError("a hypernetwork trains on a frozen text encoder")
        if self.method == "dreambooth" and (not self.class_prompt or self.class_images < 1):
            raise ValueError("dreambooth needs a class prompt and class images")
        return self

    @property
    def asset_kind(self) -> str:
        return ASSET_KIND[self.method]

    def caption_of(self, image: TrainImage, written: str | None = None) -> str:
        """The caption an image is trained with: its sidecar, else the trigger alone (`--captions
        none`), else the trigger in front of what the captioner wrote (`written`)."""
        if image.caption is not None:
            return image.caption
        if self.captions == "none" or not written:
            return self.trigger
        return f"{self.trigger}, {written}"

    def sample_steps_at(self) -> list[int]:
        """The steps after which a sample picture is drawn: every `sample_every`, and the last."""
        every = [step for step in range(self.sample_every, self.steps, self.sample_every)] if self.sample_every else []
        return [*every, self.steps]
