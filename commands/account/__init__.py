"""Your own things: /settings (your defaults), /queue, /cancel and /history (`queue`), /info.

May import: `commands.frame`, `commands.jobs`.
"""
