"""`--chaos 0–100` (Midjourney's name): how much the pictures of one job differ from each other.

Pictures of one job already differ by seed (image i draws from seed + i); chaos adds two changes
per picture, each drawn from that picture's own seed, so picture i is still one plain job of
its own (its PNG's parameters say its prompt and CFG, and drawing those gives it back):

- its guidance (CFG) is multiplied by a factor drawn between 1 and 1 − chaos/200 (down to half at
  100): lower guidance follows the prompt less closely, so seeds wander further apart. A CFG of 1
  or more never goes below 1 (under 1 diffusers turns guidance off); a CFG under 1 (no guidance,
  FLUX.1 schnell's 0) is left as it is;
- the prompt's comma-separated parts after the first are shuffled, with a chance of chaos/100:
  the text encoders weigh words by position, so the same words compose differently. The first
  part (usually the subject) stays first; commas inside `(...)`, `[...]`, `{...}` and `<...>`
  don't split, and a prompt with BREAK, AND or regional keywords is not shuffled (the order of
  its parts is its layout).

Chaos 0 changes nothing: not a bit of the job, its pictures or their parameters. Deterministic:
`random.Random(f"chaos:{seed}")` and only its `random()`, stable across Python versions.
Torch-free (the chat side shows what each picture drew: commands.jobs.job_view.picked).
"""

from __future__ import annotations

import random
import re

MAX_CHAOS = 100
_LAYOUT = re.compile(r"\b(?:BREAK|AND|ADDBASE|ADDCOMM|ADDCOL|ADDROW)\b")
_OPEN, _CLOSE = "([{<", ")]}>"


def vary(prompt: str, cfg: float, seed: int, chaos: int) -> tuple[str, float]:
    """The prompt and CFG the picture with `seed` draws with at `chaos` (0: as given)."""
    if chaos <= 0:
        return prompt, cfg
    amount = min(chaos, MAX_CHAOS) / MAX_CHAOS
    rng = random.Random(f"chaos:{seed}")
    factor = 1 - amount / 2 * rng.random()
    varied = round(cfg * factor, 2)
    if cfg >= 1:
        varied = max(1.0, varied)
    else:
        varied = cfg
    shuffle = rng.random() < amount
    return (_shuffled(prompt, rng) if shuffle else prompt), varied


def parts(prompt: str) -> list[str]:
    """The prompt's comma-separated parts, as written (spaces kept), commas inside brackets or
    after a backslash not splitting."""
    found, depth, start, pos = [], 0, 0, 0
    while pos < len(prompt):
        char = prompt[pos]
        if char == "\\":
            pos += 2
            continue
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            found.append(prompt[start:pos])
            start = pos + 1
        pos += 1
    found.append(prompt[start:])
    return found


def _shuffled(prompt: str, rng: random.Random) -> str:
    if _LAYOUT.search(prompt):
        return prompt
    pieces = [piece.strip() for piece in parts(prompt)]
    head, tail = pieces[:1], [piece for piece in pieces[1:] if piece]
    if len(tail) < 2:
        return prompt
    # Fisher–Yates from random() alone (random.shuffle's use of randbelow may change between versions)
    for i in range(len(tail) - 1, 0, -1):
        j = min(int(rng.random() * (i + 1)), i)
        tail[i], tail[j] = tail[j], tail[i]
    return ", ".join(head + tail)
