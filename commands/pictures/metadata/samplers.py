"""Other tools' sampler names as this bot's: A1111 (Sampler + Schedule type), ComfyUI
(sampler_name + scheduler) and NovelAI (sampler + noise_schedule).

Each mapping returns an A1111 sampler name that `generation.models.samplers.find_sampler` knows (None
where there is no equal) and a note on what was not carried over (a schedule with no equal here
falls back to the sampler's default)."""

from __future__ import annotations

from commands.pictures.metadata.values import short
from generation.models.samplers import find_sampler

# Schedule types that are (close to) a sampler's own default schedule here
_PLAIN_SCHEDULES = {"", "automatic", "uniform", "normal", "simple", "default"}

# ComfyUI sampler_name -> A1111 name. Used only where generation.models.samplers knows the name.
COMFY_SAMPLERS = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "lms": "LMS",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
    "lcm": "LCM",
}
_COMFY_PLAIN_SCHEDULERS = {"normal", "simple", "ddim_uniform", "sgm_uniform"}

NOVELAI_SAMPLERS = {
    "k_euler": "Euler",
    "k_euler_ancestral": "Euler a",
    "k_heun": "Heun",
    "k_lms": "LMS",
    "k_dpm_2": "DPM2",
    "k_dpm_2_ancestral": "DPM2 a",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_2s_ancestral": "DPM++ 2S a",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "k_dpm_fast": "DPM fast",
    "k_dpm_adaptive": "DPM adaptive",
    "ddim": "DDIM",
    "ddim_v3": "DDIM",
}


def a1111_sampler(name: str, schedule: str) -> tuple[str | None, str | None]:
    """A1111's Sampler (+ newer A1111's separate Schedule type) as one of our sampler names."""
    name, schedule = name.strip(), schedule.strip()
    if not name:
        return None, None
    base = find_sampler(name)
    if schedule.lower() not in _PLAIN_SCHEDULES:
        joined = find_sampler(f"{name} {schedule}")
        if joined is not None:
            return joined.name, None
        if base is not None and not base.name.lower().endswith(schedule.lower()):
            note = f"Schedule type `{short(schedule)}` has no equal here for {base.name}; its default is used."
            return base.name, note
    if base is None:
        return None, f"Sampler `{short(name)}` has no equal here; the default sampler is used."
    return base.name, None


def comfy_sampler(sampler_name: str, scheduler: str) -> tuple[str | None, str | None]:
    """ComfyUI's sampler_name + scheduler as one of our sampler names (None: no equal), and a
    note on what was not carried over."""
    name, scheduler = sampler_name.strip(), scheduler.strip()
    target = COMFY_SAMPLERS.get(name.lower())
    base = find_sampler(target) if target else None
    if base is None:
        return None, f"ComfyUI sampler `{short(name)}` has no equal here; the default sampler is used."
    if scheduler.lower() == "karras":
        karras = find_sampler(f"{base.name} Karras")
        if karras is not None:
            return karras.name, None
    if scheduler and scheduler.lower() not in _COMFY_PLAIN_SCHEDULERS:
        note = f"ComfyUI scheduler `{short(scheduler)}` has no equal here for {base.name}; its default is used."
        return base.name, note
    return base.name, None


def novelai_sampler(sampler: str, schedule: str) -> tuple[str | None, str | None]:
    target = NOVELAI_SAMPLERS.get(sampler.strip().lower())
    base = find_sampler(target) if target else None
    if base is None:
        return None, f"NovelAI sampler `{short(sampler)}` has no equal here; the default sampler is used."
    schedule = schedule.strip().lower()
    if schedule == "karras":
        karras = find_sampler(f"{base.name} Karras")
        if karras is not None:
            return karras.name, None
    if schedule and schedule != "native":
        note = f"NovelAI's `{short(schedule)}` noise schedule has no equal here for {base.name}; its default is used."
        return base.name, note
    return base.name, None
