"""The models whose answer is text: the prompt writer of /enhance (`enhance`, a causal LM) and
the captioner and CLIP ranking of /describe (`interrogate`). Loaded on first use by
`generation.tools`; the jobs around them are `generation.jobs.answers`. May import
`generation.errors` and `generation.models` (model sources)."""
