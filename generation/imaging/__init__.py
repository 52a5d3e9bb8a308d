"""Image networks and tools the job kinds use: super-resolution upscalers in tiles (`upscalers`,
spandrel), face detection and restoration (`faces`), faces, hands and people for ADetailer's pass
(`detect`: OpenCV's detectors, YOLO ONNX files), masks, feathering, compositing and CLIPSeg
segmentation (`segment`), seamless circular padding (`seamless`), and live previews decoded from latents (`previews`). Nothing here knows a job
or the engine: each takes images and models and returns images. May import `generation.errors`,
`generation.spec` and `generation.models` (model sources); ControlNet preprocessors go to control/."""
