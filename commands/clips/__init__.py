"""Commands that make clips: /animate, /video2video, /deforum, /frames, the options they share
(`clip_options`), and a clip's result and buttons (`results`: Reroll, Longer, Upscale 2x, Remix).

May import: `commands.frame`, `commands.jobs`.
"""
