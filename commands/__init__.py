"""The platform-neutral command layer: what people ask for (Request), what they get (Reply), and
everything in between. Torch-free by rule: a bot-only process imports this and starts in well
under 3 s.

Folders, bottom to top (each may import the ones above it in this list, never below):

- `frame/`: the words every command is written in: Request/Reply types, the Context, errors, the
  text syntax (parser), numbers people type, the option declarations and their one checker.
- `jobs/`: what makes and reads a job: options into a spec, the pictures or clips it starts from,
  admission (roles, quotas, a chat's rules), submitting, what a stored job holds, how it reads in
  chat, and safety on delivery.
- `pictures/`, `clips/`, `training/`, `library/`, `account/`, `people/`: the commands, one
  module per command (or per small family of commands that share their module's name), grouped
  by what they work on. They import `frame/` and `jobs/`; across these folders only where one
  command is another's shorthand (the exceptions are listed, with why, in tests/test_layout.py).
- At the top: `registry` (every command and its options, declared once), `service` (the one
  entry point adapters call), `buttons` (presses under results, which reach into every folder),
  `help` and `command_docs` (words and pages made from the registry).
"""
