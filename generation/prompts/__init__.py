"""A1111's prompt syntax, from text to the conditionings a pipeline takes: emphasis weights
(`weights`), the prompt encoder with chunks, clip skip and embeddings in the token loop
(`encoder`), prompt editing and alternation by step (`schedule`, `conditions`), wildcards,
regional prompting (`region_layout`, torch-free; `regions`, the UNet side) and `<lora:...>` tags
(`lora_tags`: prompt syntax, so here rather than in assets/). May import `generation.spec` and
`generation.errors`, and nothing else of the engine; `wildcards`, `region_layout`, `lora_tags`,
`schedule` and `weights` are torch-free, for the chat side."""
