"""The frame every command is written in: Request/Reply and the other types adapters see, the
Context handed to handlers, UserError/Refused, the text syntax (`parser`), numbers as people
type them (`numbers`), short words (`words`), reading uploaded pictures (`images`), running
blocking work off the event loop (`offload`), and option declarations with their one checker
(`declare`).

May import: nothing else of `commands` (config, storage and the torch-free parts of generation
are fine). Everything else in `commands` builds on this.
"""
