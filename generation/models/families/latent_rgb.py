"""How each family's latents look as a picture, cheaply: the data the engine's live previews read
(`generation.imaging.previews`). Torch-free.

A latent-to-RGB projection is a fixed linear map, one row of (R, G, B) weights per latent channel
plus a bias, fitted once against a VAE's decoded pictures; applied to the latents the sampler
holds (scaled and shifted as the pipeline keeps them) it gives a blurry 1/8-size picture for the
price of one small matrix product. The tables are ComfyUI's `latent_rgb_factors` and
`latent_rgb_factors_bias` (comfy/latent_formats.py) for the VAEs named: diffusers keeps its
latents in the same space ComfyUI's samplers see (`process_in`), so they apply as they are.

Where no table of a latent's channel count is declared (LTX-Video's 128 channels and Wan 2.2
TI2V's 48 are not transcribed here yet, and any unknown VAE), a generic projection stands in
(`generation.imaging.previews`): channel i
adds to colour i mod 3, each picture stretched to its own range. It shows the layout of the
picture, not its colours; the docs say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LatentRGB:
    """One VAE's latent-to-RGB projection: `factors[c]` is channel c's (R, G, B); the result,
    plus `bias`, is in [-1, 1]."""

    name: str
    factors: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def channels(self) -> int:
        return len(self.factors)


@dataclass(frozen=True)
class LatentPreview:
    """How a family's latents become a preview. `tables`: the projections of its VAEs (the one
    whose channel count matches the latents is used; the generic one when none does). `patch`: the side
    of the square of latent pixels packed into one token (FLUX.1, FLUX.2, Qwen-Image: 2), for
    latents the pipeline holds as (batch, tokens, features); 1 for LTX-Video's tokens; 0 when
    the latents are kept as (batch, channels, [frames,] height, width). `temporal`: frames per
    latent frame of a video VAE (Wan 4, LTX-Video 8), to lay out packed video tokens."""

    tables: tuple[LatentRGB, ...] = ()
    patch: int = 0
    temporal: int = 0
    # Noted in the docs: which tables are stand-ins rather than fitted factors.
    note: str = field(default="", compare=False)

    def table(self, channels: int) -> LatentRGB | None:
        """The projection for latents of `channels` channels; None: the generic one."""
        return next((t for t in self.tables if t.channels == channels), None)


SD1_RGB = LatentRGB(
    "SD 1.x/2.x VAE",
    (
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
)

SDXL_RGB = LatentRGB(
    "SDXL VAE",
    (
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    (0.1084, -0.0175, -0.0011),
)

SD3_RGB = LatentRGB(
    "SD 3.x VAE",
    (
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ),
    (0.2394, 0.2135, 0.1925),
)

# FLUX.1's VAE, shared by Chroma and Z-Image.
FLUX_RGB = LatentRGB(
    "FLUX.1 VAE",
    (
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    (-0.0329, -0.0718, -0.0851),
)

# FLUX.2's VAE: 32 channels (the pipeline's 128 features per token are these in 2x2 patches).
FLUX2_RGB = LatentRGB(
    "FLUX.2 VAE",
    (
        (0.0058, 0.0113, 0.0073),
        (0.0495, 0.0443, 0.0836),
        (-0.0099, 0.0096, 0.0644),
        (0.2144, 0.3009, 0.3652),
        (0.0166, -0.0039, -0.0054),
        (0.0157, 0.0103, -0.0160),
        (-0.0398, 0.0902, -0.0235),
        (-0.0052, 0.0095, 0.0109),
        (-0.3527, -0.2712, -0.1666),
        (-0.0301, -0.0356, -0.0180),
        (-0.0107, 0.0078, 0.0013),
        (0.0746, 0.0090, -0.0941),
        (0.0156, 0.0169, 0.0070),
        (-0.0034, -0.0040, -0.0114),
        (0.0032, 0.0181, 0.0080),
        (-0.0939, -0.0008, 0.0186),
        (0.0018, 0.0043, 0.0104),
        (0.0284, 0.0056, -0.0127),
        (-0.0024, -0.0022, -0.0030),
        (0.1207, -0.0026, 0.0065),
        (0.0128, 0.0101, 0.0142),
        (0.0137, -0.0072, -0.0007),
        (0.0095, 0.0092, -0.0059),
        (0.0000, -0.0077, -0.0049),
        (-0.0465, -0.0204, -0.0312),
        (0.0095, 0.0012, -0.0066),
        (0.0290, -0.0034, 0.0025),
        (0.0220, 0.0169, -0.0048),
        (-0.0332, -0.0457, -0.0468),
        (-0.0085, 0.0389, 0.0609),
        (-0.0076, 0.0003, -0.0043),
        (-0.0111, -0.0460, -0.0614),
    ),
    (-0.0329, -0.0718, -0.0851),
)

# Wan 2.1's VAE (16 channels), shared by Wan 2.1, Wan 2.2 A14B and Qwen-Image.
WAN21_RGB = LatentRGB(
    "Wan 2.1 VAE",
    (
        (-0.1299, -0.1692, 0.2932),
        (0.0671, 0.0406, 0.0442),
        (0.3568, 0.2548, 0.1747),
        (0.0372, 0.2344, 0.1420),
        (0.0313, 0.0189, -0.0328),
        (0.0296, -0.0956, -0.0665),
        (-0.3477, -0.4059, -0.2925),
        (0.0166, 0.1902, 0.1975),
        (-0.0412, 0.0267, -0.1364),
        (-0.1293, 0.0740, 0.1636),
        (0.0680, 0.3019, 0.1128),
        (0.0032, 0.0581, 0.0639),
        (-0.1251, 0.0927, 0.1699),
        (0.0060, -0.0633, 0.0005),
        (0.3477, 0.2275, 0.2950),
        (0.1984, 0.0913, 0.1861),
    ),
    (-0.1835, -0.0868, -0.3360),
)

STAND_IN = "no fitted factors are declared here; a generic projection shows the picture's layout, not its colours"
