"""The engine: everything that turns a queued job into pictures (or candidate prompts).

At the top: `worker` (a package: claims jobs, runs them on the one engine thread, completes them),
`engine` (the diffusion step every job kind draws through), `tools` (post-processing models
loaded on first use), and the torch-free vocabulary shared with the chat side: `spec` (what a job
asks for), `parameters` (A1111's PNG parameters) and `errors`. The subpackages, by what they are:
jobs/ (one module per job kind, and the table that runs them), prompts/ (A1111 prompt syntax to
conditionings), models/ (model sources, loading, shapes, samplers, the tiny model), assets/
(users' LoRAs and embeddings: checks and use), imaging/ (image networks and tools: upscalers,
faces, masks, seamless padding), text_models/ (the models of /enhance and /describe).
docs/architecture.md has the map and the direction of imports. Importing this package, `spec`,
`parameters`, `errors` and the torch-free modules named there loads no torch."""
