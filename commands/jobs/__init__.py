"""What makes a job and what a job is, shared by every command that queues or shows one:

- `options`: the drawing options checked, and a GenerationSpec built from them;
- `sources`: the picture or clip a request starts from (an attachment, or the bot's message it
  replies to), found with one lookup;
- `admission`: roles, quotas and a chat's own rules, checked before anything is queued;
- `model_fit`: LoRAs/embeddings resolved as the person asking and fitted to the model, and what
  the model's family can't do refused before queueing;
- `prompt_features`: styles, wildcards and regions;
- `submit`: the one way a spec becomes a queued job (with its status reply);
- `job_view`: a stored job read back (its spec, maps, candidates, picture files);
- `render`, `training_text`: how jobs read in chat (status, captions, buttons);
- `safety`: what a place does with flagged pictures when results are delivered.

May import: `commands.frame` and each other. Never a command's folder.
"""
