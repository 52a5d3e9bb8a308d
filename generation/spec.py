"""What a job asks the engine to do. Torch-free: shared by `commands/` (which builds specs) and
`generation/` (which runs them). A spec is stored as the job's `params` JSON, so every field
must stay readable by later versions: add fields with defaults, never rename."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

JobKind = Literal["txt2img", "img2img"]


class GenerationSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: JobKind
    prompt: str
    negative_prompt: str = ""
    model: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    steps: int = Field(gt=0)
    cfg: float
    sampler: str
    seed: int = Field(ge=0)
    n: int = Field(1, ge=1)
    strength: float | None = Field(None, gt=0, le=1)
    init_image: str | None = Field(None, description="Blob key (sha256) of the init image.")
    # Asked for in an age-restricted (NSFW) channel. Recorded for the safety policy to come; the
    # engine ignores it, and results show the mark.
    age_restricted: bool = False

    @model_validator(mode="after")
    def _img2img_needs_image(self) -> GenerationSpec:
        if self.kind == "img2img" and (self.init_image is None or self.strength is None):
            raise ValueError("img2img needs init_image and strength")
        if self.kind == "txt2img" and self.init_image is not None:
            raise ValueError("txt2img takes no init_image")
        return self

    def seeds(self) -> list[int]:
        """Image i of a batch uses seed + i, so any image can be reproduced alone."""
        return [self.seed + i for i in range(self.n)]

    def batch_key(self) -> str:
        """Jobs with equal keys could share one diffusers batch (planned; see DESIGN.md 4)."""
        shared = {k: getattr(self, k) for k in ("kind", "model", "width", "height", "steps", "cfg", "sampler")}
        return hashlib.sha1(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]
