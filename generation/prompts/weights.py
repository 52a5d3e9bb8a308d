"""A1111's emphasis syntax, parsed exactly as AUTOMATIC1111's `prompt_parser.parse_prompt_attention`
does (torch-free). People paste prompts from Civitai and A1111: they must mean the same here.

    (x)        weight of x times 1.1        [x]       weight divided by 1.1
    (x:1.3)    weight times 1.3             brackets nest and multiply
    \\( \\) \\[ \\]  literal brackets           brackets left open close at the end of the prompt
    BREAK      ends the current 75-token chunk (returned as the fragment ("BREAK", -1))

Fragments with equal weights are merged, as A1111 merges them, so the token weights that follow
from this list match A1111's token for token.
"""

from __future__ import annotations

import re

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK = ("BREAK", -1.0)

# A1111's tokenizer for the syntax, unchanged (the order of the alternatives matters).
_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """[(fragment, weight)] of `text`; a BREAK is the fragment ("BREAK", -1)."""
    result: list[list] = []  # [text, weight] pairs, mutable while brackets close
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for position in range(start, len(result)):
            result[position][1] *= multiplier

    for match in _ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            result.append([piece[1:], 1.0])
        elif piece == "(":
            round_brackets.append(len(result))
        elif piece == "[":
            square_brackets.append(len(result))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_MULTIPLIER)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i > 0:
                    result.append(list(BREAK))
                result.append([part, 1.0])
    for start in round_brackets:
        multiply_range(start, ROUND_MULTIPLIER)
    for start in square_brackets:
        multiply_range(start, SQUARE_MULTIPLIER)
    if not result:
        result = [["", 1.0]]
    i = 0
    while i + 1 < len(result):  # merge neighbours of equal weight, as A1111 does
        if result[i][1] == result[i + 1][1]:
            result[i][0] += result[i + 1][0]
            result.pop(i + 1)
        else:
            i += 1
    return [(str(text_), float(weight_)) for text_, weight_ in result]
