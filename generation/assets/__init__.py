"""Users' uploaded LoRAs, LyCORIS files and embeddings: the safetensors container read without
unpickling (`safetensors_header`), what a file is (`files`), whether it fits a model (`fit`; these
three are torch-free, for the chat side), and applying them per job on a loaded pipeline
(`adapters`). Trained LoRAs land here as assets too (training itself goes to training/). May
import `generation.spec`, `generation.errors`, `config`, `generation.prompts` (the encoder's
embeddings) and `generation.models` (shapes)."""
