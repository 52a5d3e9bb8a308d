"""Training from chat: LoRA, LyCORIS LoHa and LoKr, DreamBooth (a LoRA with prior preservation),
textual-inversion embeddings and A1111 hypernetworks, as jobs on the same durable queue as the
pictures.

- spec: what a run asks for (torch-free, shared with `commands/`), with the named bounds and
  the defaults of each method;
- buckets: kohya's aspect-ratio buckets (torch-free);
- dataset: captions and DreamBooth's class pictures; conditioning: the captions through the text
  encoders, and an embedding's trainable vectors; hooks: what the loop calls back;
- trainer: the training loop (diffusers' recipes: DDPM noise, epsilon / v-prediction MSE, optional
  min-SNR weighting; peft adapters on UNet and text encoder), its checkpoints and its samples;
- export: the learned weights as files A1111, ComfyUI, diffusers and our own loader read (kohya
  LoRA / LyCORIS with `ss_*` metadata, A1111 embeddings, A1111 hypernetworks' `.pt`);
- run: what the worker runs for a `train` job: captions, class pictures, resume, yield.

May import `generation.spec`, `generation.errors`, `generation.parameters` (the samples' PNG
text), `generation.engine`, `generation.prompts`, `generation.models` and `generation.assets`,
and `storage` (run: the run's row, its checkpoints and samples); nothing in the engine imports
this package (the worker does).
"""
