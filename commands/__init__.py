"""The platform-neutral command layer: parsing, validation, the CommandService, Request/Reply.

Torch-free by rule: a bot-only process imports this and starts in well under 3 s."""
