"""The buttons under a single image, exactly as the issue names them, in the order they appear."""

EDIT_LABELS = [
    "Upscale 2x",
    "Upscale 4x",
    "Face fix",
    "Detail",
    "Vary (Subtle)",
    "Vary (Strong)",
    "Zoom Out 1.5x",
    "Zoom Out 2x",
    "⬅",
    "➡",
    "⬆",
    "⬇",
]
