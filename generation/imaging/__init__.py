"""Image networks and tools the job kinds use: super-resolution upscalers in tiles (`upscalers`,
spandrel), face detection and restoration (`faces`), masks, feathering, compositing and CLIPSeg
segmentation (`segment`), and seamless circular padding (`seamless`). Nothing here knows a job
or the engine: each takes images and models and returns images. May import `generation.errors`,
`generation.spec` and `generation.models` (model sources); ControlNet preprocessors go to control/."""
