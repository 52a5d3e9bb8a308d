"""Commands that make clips: /animate, /video2video, /deforum, /video (a video model: Wan,
LTX-Video; also the Animate button under a picture, Extend and Loop under its clips), /frames, the
options they share (`clip_options`), and a clip's result and buttons (`results`: Reroll, Longer,
Upscale 2x, Remix; Extend and Loop).

May import: `commands.frame`, `commands.jobs`.
"""
