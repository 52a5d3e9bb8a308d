"""A1111 sampler names and the diffusers scheduler each one maps to. Torch-free data.

Names follow AUTOMATIC1111 ("Euler a", "DPM++ 2M Karras"); users may type them in any case or
as snake-case aliases (`euler_a`, `dpmpp_2m_karras`). The mapping follows the table in the
diffusers scheduler docs. A1111 samplers with no diffusers equivalent (DPM fast, DPM adaptive,
DPM++ 2S a, DPM++ 3M SDE) are left out rather than approximated: a user who names one is told
what is available. LMS needs scipy and DPM++ SDE needs torchsde; both are dependencies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampler:
    name: str  # the A1111 name, written into PNG parameters
    scheduler: str  # diffusers class name
    options: dict[str, Any] = field(default_factory=dict)  # passed to `from_config`

    @property
    def alias(self) -> str:
        return normalize(self.name)


_KARRAS = {"use_karras_sigmas": True}
_SDE = {"algorithm_type": "sde-dpmsolver++"}

SAMPLERS: tuple[Sampler, ...] = (
    Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
    Sampler("Euler", "EulerDiscreteScheduler"),
    Sampler("LMS", "LMSDiscreteScheduler"),
    Sampler("LMS Karras", "LMSDiscreteScheduler", _KARRAS),
    Sampler("Heun", "HeunDiscreteScheduler"),
    Sampler("DPM2", "KDPM2DiscreteScheduler"),
    Sampler("DPM2 Karras", "KDPM2DiscreteScheduler", _KARRAS),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    Sampler("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", _KARRAS),
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler"),
    Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler", _KARRAS),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _SDE),
    Sampler("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", {**_SDE, **_KARRAS}),
    Sampler("DPM++ SDE", "DPMSolverSDEScheduler"),
    Sampler("DPM++ SDE Karras", "DPMSolverSDEScheduler", _KARRAS),
    Sampler("DDIM", "DDIMScheduler"),
    Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    Sampler("UniPC", "UniPCMultistepScheduler"),
    Sampler("LCM", "LCMScheduler"),
)

_EXTRA_ALIASES = {"euler_ancestral": "Euler a", "k_euler_ancestral": "Euler a", "pndm": "PLMS"}


def normalize(name: str) -> str:
    """'DPM++ 2M Karras' -> 'dpmpp_2m_karras'; 'k_euler_a' -> 'euler_a'."""
    text = name.strip().lower().replace("+", "p")
    text = re.sub(r"[\s\-_]+", "_", text).strip("_")
    return text.removeprefix("k_")


_BY_ALIAS: dict[str, Sampler] = {s.alias: s for s in SAMPLERS}
_BY_ALIAS.update({alias: _BY_ALIAS[normalize(target)] for alias, target in _EXTRA_ALIASES.items()})


# A1111 samplers with no diffusers equivalent: named so that a refusal can say why.
UNAVAILABLE = ("DPM fast", "DPM adaptive", "DPM++ 2S a", "DPM++ 3M SDE", "DPM++ 3M SDE Karras", "DPM++ 2S a Karras")


def unavailable_reason(name: str) -> str | None:
    """Why an A1111 sampler we do not offer is not offered; None for names A1111 does not have."""
    wanted = normalize(name)
    for known in UNAVAILABLE:
        if normalize(known) == wanted:
            return (
                f"`{known}` has no equivalent scheduler in diffusers, the library sdbot draws with, so it is "
                "refused rather than approximated by another sampler"
            )
    return None


def find_sampler(name: str) -> Sampler | None:
    return _BY_ALIAS.get(normalize(name))


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]
