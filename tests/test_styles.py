"""Prompt styles (config.styles): the shipped set, A1111's way of applying them, and the checks on
names, templates and style files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.styles import (
    RESERVED_NAMES,
    Style,
    StyleError,
    apply_styles,
    check_negative,
    check_style_name,
    check_template,
    load_builtin_styles,
    load_styles_file,
)
from generation.prompts.weights import parse_prompt_attention
from generation.prompts.wildcards import has_wildcards

WRAP = Style("wrap", "photo of {prompt}, bokeh", "{prompt}, blurry")
TAIL = Style("tail", "film grain", "cartoon")


def test_the_shipped_styles_load_and_each_has_one_prompt_slot() -> None:
    styles = load_builtin_styles()
    assert len(styles) >= 20
    for name, style in styles.items():
        assert style.name == name and check_style_name(name) is None
        assert style.prompt.count("{prompt}") == 1, name
        assert style.negative and "{prompt}" not in style.negative, name
        assert style.description and style.owner is None, name
        # plain A1111 text: no weights gone wrong, no wildcard syntax by accident
        prompt, negative = apply_styles([style], "a red fox", "")
        assert "a red fox" in prompt and negative == style.negative
        assert all(weight == 1.0 for _, weight in parse_prompt_attention(prompt)), name
        assert not has_wildcards(prompt)
    for wanted in ("photographic", "cinematic", "anime", "pixel-art", "3d-render", "origami"):
        assert wanted in styles
    assert load_builtin_styles() is not load_builtin_styles()  # a fresh dict: callers may change theirs


def test_a_template_with_prompt_wraps_it_and_without_it_is_appended() -> None:
    assert apply_styles([WRAP], "a cat", "ugly") == ("photo of a cat, bokeh", "ugly, blurry")
    assert apply_styles([TAIL], "a cat", "ugly") == ("a cat, film grain", "ugly, cartoon")
    assert apply_styles([], "a cat", "ugly") == ("a cat", "ugly")


def test_styles_apply_in_order_so_the_second_wraps_the_first() -> None:
    outer = Style("outer", "[{prompt}] in a frame", "")
    assert apply_styles([WRAP, outer], "a cat", "") == ("[photo of a cat, bokeh] in a frame", "blurry")
    assert apply_styles([outer, WRAP], "a cat", "") == ("photo of [a cat] in a frame, bokeh", "blurry")
    assert apply_styles([TAIL, WRAP], "a cat", "x") == ("photo of a cat, film grain, bokeh", "x, cartoon, blurry")


def test_empty_parts_leave_no_stray_commas() -> None:
    assert apply_styles([TAIL], "", "") == ("film grain", "cartoon")
    assert apply_styles([WRAP], "  ", "") == ("photo of, bokeh", "blurry")
    assert apply_styles([Style("s", "{prompt}, bokeh", "")], "", "") == ("bokeh", "")
    assert apply_styles([Style("s", "bokeh, {prompt}", "")], "", "") == ("bokeh", "")
    assert apply_styles([Style("s", "a, {prompt}, b", "")], "", "") == ("a, b", "")
    assert apply_styles([Style("s", "x", "")], "a cat", "") == ("a cat, x", "")
    assert apply_styles([Style("s", "x", "  ")], "a cat", " ugly ") == ("a cat, x", "ugly")
    for style in load_builtin_styles().values():
        for text in apply_styles([style], "", ""):
            assert not re.search(r"^\s*,|,\s*,|,\s*$", text), (style.name, text)


def test_the_prompt_is_inserted_as_written() -> None:
    # A1111 syntax and wildcards in the prompt reach the template untouched
    text = r"(a cat:1.2) [in|out] {red|blue} __colors__ \(x\)"
    assert apply_styles([WRAP], text, "")[0] == f"photo of {text}, bokeh"


def test_style_names() -> None:
    for name in ("anime", "3d-render", "film-noir-2", "ab", "x" * 32):
        assert check_style_name(name) is None, name
    for name in ("a", "x" * 33, "Anime", "film noir", "film--noir", "-noir", "noir-", "noir_1", "nöir", "a,b", ""):
        assert check_style_name(name), name
    for name in RESERVED_NAMES:
        assert "pick another" in (check_style_name(name) or ""), name


def test_templates() -> None:
    assert check_template("{prompt}, black and white film noir") is None
    assert check_template("  a photo of {prompt}  ") is None
    assert check_template("film noir") is None  # appended after ", ", as in style files
    assert "only once" in (check_template("{prompt} and {prompt}") or "")
    assert "adds nothing" in (check_template(" {prompt} ") or "")
    assert "Write the style's template" in (check_template("") or "")
    assert "limit" in (check_template("{prompt}" + "x" * 1000) or "")
    assert check_negative("") is None and check_negative("blurry, ugly") is None
    assert check_negative("{prompt}, ugly") is None
    assert check_negative("{prompt} {prompt}") and check_negative("x" * 1001)


def test_an_admin_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "extra.toml"
    path.write_text(
        '[styles.film-noir]\nprompt = "film noir still of {prompt}"\nnegative = "color"\ndescription = "Noir"\n\n'
        '[styles.grainy]\nprompt = "film grain"\n',
        encoding="utf-8",
    )
    assert load_styles_file(path) == {
        "film-noir": Style("film-noir", "film noir still of {prompt}", "color", "Noir"),
        "grainy": Style("grainy", "film grain", ""),
    }
    assert load_styles_file(str(path)).keys() == {"film-noir", "grainy"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[styles.noir]\nprompt = "a {prompt', r"not valid TOML"),
        ('[styles.noir]\nnegative = "color"\n', r"style `noir`: no `prompt`"),
        ('[styles.noir]\nprompt = "x"\nnegativ = "color"\n', r"style `noir`: unknown key\(s\) \['negativ'\]"),
        ("[styles.noir]\nprompt = 3\n", r"style `noir`: `prompt` must be a string"),
        ('[styles.noir]\nprompt = "  "\n', r"style `noir`: `prompt` is empty"),
        ('[styles.noir]\nprompt = "{prompt}, {prompt}"\n', r"style `noir`: `\{prompt\}` appears more than once"),
        ('[styles."Film Noir"]\nprompt = "{prompt}"\n', r"style `Film Noir`: A style name is lowercase"),
        ('[styles.list]\nprompt = "{prompt}"\n', r"style `list`: `list` is a word"),
        ('styles = "noir"\n', r"`styles` must be tables"),
        ('[noir]\nprompt = "{prompt}"\n', r"unknown top-level key\(s\) \['noir'\]"),
    ],
)
def test_a_bad_file_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "extra.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StyleError, match=rf"extra\.toml.*{message}"):
        load_styles_file(path)


def test_a_missing_file_is_a_style_error(tmp_path: Path) -> None:
    with pytest.raises(StyleError, match="cannot read"):
        load_styles_file(tmp_path / "nope.toml")
