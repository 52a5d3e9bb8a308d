"""How much of an image's metadata is read: every text, graph and walk is bounded by these, so a
file crafted to be huge or tangled costs little and ends as partial data with a note."""

MAX_TEXT = 64 * 1024  # characters of prompt / infotext read (and kept in `raw`)
MAX_CHUNK = 1024 * 1024  # bytes of one metadata text (a ComfyUI workflow can be hundreds of KiB)
MAX_TEXT_CHUNKS = 64  # text chunks looked at in one PNG
MAX_NODES = 2000  # nodes of a ComfyUI graph read
MAX_DEPTH = 64  # links followed from one input
MAX_VISITS = 20_000  # node lookups in one graph, all walks together (a tangled DAG can branch exponentially)
MAX_SETTINGS = 100  # settings entries kept for display
MAX_VALUE = 1000  # characters of one displayed setting
