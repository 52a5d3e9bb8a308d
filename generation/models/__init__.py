"""The diffusion models: what family a model is and what it can do (`families/`, torch-free: the
one place that knows a family), where a model comes from and whether it can load (`hf_source`,
`files`: torch-free checks of a source before `/model add` and at start-up), its layers from its
configs (`shapes`, torch-free), loading models into pipelines by family and keeping them
(`loader`), speed options (`speed`) and a job's cache accelerator (`caches`), GGUF files and fp8 storage (`quantized`), the A1111 sampler names (`samplers`,
torch-free) and the built-in random-weight models (`tiny`, `tiny_config`, `tiny_dit` for FLUX.1 and
Chroma, `tiny_sd3`, `tiny_qwen`, `tiny_zimage`, `tiny_flux2`, `tiny_video` for Wan and LTX-Video).
ControlNet models go to control/. May import `generation.errors` and `config`; nothing else of
the engine."""
