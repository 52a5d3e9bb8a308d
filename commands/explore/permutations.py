r"""Midjourney's permutations and `--repeat`: one request, several jobs.

    /imagine a {red, blue, green} fox --ar {1:1, 3:2}     six jobs: every colour with every ratio

A `{...}` whose options are separated by commas (and that holds no `|` of its own) is a
permutation: the request is made once per option, each a job of its own, all with the same
settings (the same `--seed` too, so they differ only by what the braces say). Several
permutations multiply; they may nest (`{a {big, small} fox, an owl}`: three) and stand anywhere
in the text, `--options` included. `\,` is a comma inside an option.

The wildcard choice `{red|blue}` (sd-dynamic-prompts, generation.prompts.wildcards) is another
thing: ONE job, whose pictures each pick an option from their own seed. So a brace with a `|` is
left to the wildcards, a brace without commas is ordinary text (`{prompt}` in a style), and a
brace with both (`{red, blue|green}`) is a choice between `red, blue` and `green`.

`--repeat N` queues the request N times; with `--seed S` repeat k draws from S + k·n (n: the
job's pictures), so no two repeats share a picture's seed. Permutations times repeats are at most
SDBOT_MAX_REQUEST_JOBS, and every job counts against the person's queue limits: a request that
would pass them is refused whole, before anything is queued (commands.jobs.submit.submit_many).

Pure text functions, without the database: `count` never expands (so `{a,b}{a,b}...` thirty
times is refused without building a billion strings).
"""

from __future__ import annotations

from dataclasses import dataclass

from commands.frame.errors import UserError


@dataclass(frozen=True)
class _Group:
    start: int  # index of the `{`
    end: int  # index just after the `}`
    options: tuple[str, ...]  # as written, `\,` still escaped


def _groups(text: str) -> list[_Group] | None:
    """The outermost permutations of `text`, left to right; None when its braces don't balance
    (then nothing is a permutation: the wildcard check says what is wrong)."""
    found: list[_Group] = []
    depth, start, cuts, bar = 0, -1, [], False
    inner = 0  # A1111's `(...)` and `[...]` open inside the brace: their commas and `|` are theirs
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 2
            continue
        if char in "([" and depth == 1:
            inner += 1
        elif char in ")]" and depth == 1:
            inner = max(0, inner - 1)
        elif char == "{":
            if depth == 0:
                start, cuts, bar, inner = pos, [], False, 0
            depth += 1
        elif char == "}":
            if depth == 0:
                return None
            depth -= 1
            if depth == 0 and cuts and not bar:
                edges = [start, *cuts, pos]
                options = tuple(text[a + 1 : b].strip() for a, b in zip(edges, edges[1:], strict=False))
                found.append(_Group(start, pos + 1, options))
        elif depth == 1 and not inner and char == ",":
            cuts.append(pos)
        elif depth == 1 and not inner and char == "|":
            bar = True
        pos += 1
    return None if depth else found


def count(text: str, limit: int) -> int:
    """How many texts `expand(text)` makes, counted up to just past `limit` (then it stops)."""
    groups = _groups(text)
    if not groups:
        return 1
    total = 1
    for group in groups:
        options = 0
        for option in group.options:
            options += count(option, limit)
            if options > limit:
                return limit + 1
        total *= max(options, 1)
        if total > limit:
            return limit + 1
    return total


def expand(text: str) -> list[str]:
    """Every text the permutations of `text` make, in order: the first permutation's options
    vary slowest (`{a, b} {x, y}`: a x, a y, b x, b y). A text without any is itself. Call
    `count` first: this builds them all."""
    groups = _groups(text)
    if not groups:
        return [text.replace("\\,", ",")] if groups is not None else [text]
    texts = [""]
    pos = 0
    for group in groups:
        head = text[pos : group.start].replace("\\,", ",")
        options = [made for option in group.options for made in expand(option)]
        texts = [f"{done}{head}{option}" for done in texts for option in options]
        pos = group.end
    tail = text[pos:].replace("\\,", ",")
    return [f"{done}{tail}" for done in texts]


def has_permutations(text: str) -> bool:
    return bool(_groups(text))


def permute(text: str, limit: int) -> list[str]:
    """The texts of a request with permutations, in order; a UserError when they are more than
    `limit` (found before any is built)."""
    made = count(text, limit)
    if made > limit:
        raise UserError(
            f"That prompt has more than {limit} permutations, the most one request may queue (SDBOT_MAX_REQUEST_JOBS). "
            "Use fewer options in `{…}`, or write `{a|b}` to let each picture pick one (a wildcard: one job)."
        )
    return expand(text)


def check_total(permutations: int, repeat: int, limit: int) -> None:
    """Refuse a request whose permutations times `--repeat` are more than `limit` jobs."""
    if permutations * repeat <= limit:
        return
    asked = f"`--repeat {repeat}`" if permutations == 1 else f"{permutations} permutations × `--repeat {repeat}`"
    raise UserError(
        f"That is {asked}: {permutations * repeat} jobs, and one request may queue at most {limit} (SDBOT_MAX_REQUEST_JOBS). Ask for fewer."
    )
