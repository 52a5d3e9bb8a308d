"""The diffusion models: where a model comes from and whether it can load (`hf_source`, `files`:
torch-free checks of a source before `/model add`), its layers from its configs (`shapes`,
torch-free), loading models into pipelines and keeping them (`loader`), the A1111 sampler names
(`samplers`, torch-free) and the built-in random-weight `tiny` model (`tiny`, `tiny_config`).
Future home of other model families' loaders (ControlNet models go to control/). May import
`generation.errors` and `config`; nothing else of the engine."""
