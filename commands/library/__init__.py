"""What people draw with, kept in the library: LoRAs and embeddings (`assets`: /lora, /loras,
/embedding, /embeddings), styles (/styles, /style), wildcard lists (/wildcard) and models
(/models, /model).

May import: `commands.frame`, `commands.jobs`; and `commands.account.settings`, because
`/model NAME` is `/settings --model NAME`.
"""
