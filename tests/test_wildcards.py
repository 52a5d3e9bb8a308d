"""Wildcards (generation.prompts.wildcards): `{a|b}` choices and `__name__` lists, picked per seed.

Exact results for a seed depend on the order random numbers are drawn, so most tests check
properties over many seeds: what can come out, that everything can, and that a seed always gives
the same answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generation.prompts import wildcards
from generation.prompts.schedule import prompt_schedule
from generation.prompts.wildcards import WildcardError, expand, has_wildcards, referenced_files, validate

SEEDS = range(200)


def outcomes(text: str, files: dict[str, tuple[str, ...]] | None = None, *, salt: str = "") -> set[str]:
    return {expand(text, seed, files or {}, salt=salt) for seed in SEEDS}


# --- choices ------------------------------------------------------------------------------------------


def test_a_choice_gives_each_option_and_nothing_else() -> None:
    assert outcomes("a {red|green|blue} fox") == {"a red fox", "a green fox", "a blue fox"}


def test_the_same_seed_gives_the_same_text_and_seeds_differ() -> None:
    text = "{a|b|c|d|e|f|g|h}, {1|2|3|4|5|6|7|8}, __x__"
    files = {"x": tuple("pqrstuvw")}
    assert all(expand(text, seed, files) == expand(text, seed, files) for seed in SEEDS)
    assert len({expand(text, seed, files) for seed in SEEDS}) > 100


def test_picks_are_the_same_in_a_fresh_interpreter_which_loads_no_torch() -> None:
    # Another process has another hash seed: picks must not depend on hash() or on process state.
    # And the command layer imports this module: it must not bring torch along (docs/rules.md, "Layers").
    code = (
        "import sys; from generation.prompts.wildcards import expand;"
        "print([expand('{a|b|c|d|e|f}{1|2|3|4|5|6} __x__', s, {'x': tuple('pqrstu')}) for s in range(30)]);"
        "print('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parent.parent
    env = {"PYTHONHASHSEED": "12345", "PATH": ""}
    other = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    here = [expand("{a|b|c|d|e|f}{1|2|3|4|5|6} __x__", s, {"x": tuple("pqrstu")}) for s in range(30)]
    assert other.stdout.split("\n")[:2] == [repr(here), "False"]


def test_empty_options_and_spaces_around_options() -> None:
    assert outcomes("a {|red }fox") == {"a fox", "a redfox"}
    assert outcomes("{ red | blue }") == {"red", "blue"}


def test_choices_nest() -> None:
    assert outcomes("{a {red|blue} hat|cap}") == {"a red hat", "a blue hat", "cap"}
    assert outcomes("{x{1|{2|3}}|y}") == {"x1", "x2", "x3", "y"}


def test_weights_tilt_the_odds() -> None:
    picks = [expand("{9::a|b}", seed, {}) for seed in range(1000)]
    assert 850 < picks.count("a") < 950
    assert outcomes("{0::a|b}") == {"b"}
    assert outcomes("{0.5::a|.5::b|c}") == {"a", "b", "c"}


def test_several_picks_are_different_and_joined() -> None:
    results = outcomes("{2$$a|b|c}")
    assert results == {f"{x}, {y}" for x in "abc" for y in "abc" if x != y}
    assert outcomes("{1-3$$a|b}") == {"a", "b", "a, b", "b, a"}
    assert outcomes("{5$$a|b}") == {"a, b", "b, a"}  # more than there are: all of them
    assert outcomes("{2$$a||b}") <= {"a", "b", "a, b", "b, a"}  # an empty pick leaves no stray ", "


def test_braces_without_a_bar_are_text() -> None:
    for text in ("{prompt}", '{"seed": 1, "steps": {"n": 2}}', "{2::x}", "{3$$just text}", "{}"):
        assert not has_wildcards(text)
        assert outcomes(text) == {text}
    # ...but what is inside them is still expanded
    assert outcomes("{pose: {sitting|standing}}") == {"{pose: sitting}", "{pose: standing}"}


def test_a1111_syntax_passes_through() -> None:
    text = r"[cat|dog] ((x:1.2)) [a:b:10] [c::0.5] \(y\) BREAK z \[w\]"
    assert not has_wildcards(text)
    assert outcomes(text) == {text}
    # A1111's alternation inside a choice is one option, and its `|` survives
    assert outcomes("{[cat|dog] on a mat|bird}") == {"[cat|dog] on a mat", "bird"}
    assert outcomes("[{red|blue}|green] (hat:{1.1|1.2})") == {
        "[red|green] (hat:1.1)",
        "[red|green] (hat:1.2)",
        "[blue|green] (hat:1.1)",
        "[blue|green] (hat:1.2)",
    }
    # the result still means to A1111 what it meant: alternation of cat and dog
    assert [t for _, t in prompt_schedule(expand("{[cat|dog]|[cat|dog]}", 1, {}), 2)] == ["cat", "dog"]


def test_escaped_braces_stay_escaped_and_expansion_is_idempotent() -> None:
    text = r"a \{red|blue\} \__colors__ b"
    assert not has_wildcards(text)
    assert outcomes(text) == {text}
    once = expand(r"{x|y} \{a|b\}", 3, {})
    assert expand(once, 99, {}) == once


def test_broken_braces_are_errors_that_say_where() -> None:
    for text, words in (
        ("a {red|blue", "`{` at character 3 has no `}`"),
        ("a red}", "`}` at character 6"),
        (r"\{a|b}", "`}` at character 6"),
    ):
        assert has_wildcards(text)  # so a caller checks it, and hears the error
        with pytest.raises(WildcardError, match=words.replace("{", r"\{").replace("}", r"\}")):
            expand(text, 0, {})


def test_odd_choices_are_errors() -> None:
    with pytest.raises(WildcardError, match="weighs 0"):
        expand("{0::a|0::b}", 0, {})
    with pytest.raises(WildcardError, match="smaller number first"):
        expand("{3-1$$a|b}", 0, {})
    with pytest.raises(WildcardError, match="nest more than"):
        expand("{" * (wildcards.MAX_NESTING + 1) + "a|b" + "}" * (wildcards.MAX_NESTING + 1), 0, {})
    assert outcomes("{" * wildcards.MAX_NESTING + "a|b" + "}" * wildcards.MAX_NESTING) <= {
        "{" * (wildcards.MAX_NESTING - 1) + c + "}" * (wildcards.MAX_NESTING - 1) for c in "ab"
    }


def test_negative_salt_picks_differently() -> None:
    text = "{a|b|c|d|e|f|g|h|i|j}"
    same = sum(expand(text, seed, {}) == expand(text, seed, {}, salt="negative") for seed in SEEDS)
    assert same < 60  # independent picks agree about one time in ten
    assert outcomes(text, salt="negative") == set("abcdefghij")


# --- lists --------------------------------------------------------------------------------------------

FILES = {
    "colors": ("red", "blue", "{light|dark} green"),
    "animals/pets": ("__colors__ cat", "dog"),
    "loop": ("a", "b __loop__"),
    "ping": ("__pong__",),
    "pong": ("x __ping__",),
    "empty": (),
}


def test_a_list_gives_each_line() -> None:
    assert outcomes("a __colors__ hat", FILES) == {"a red hat", "a blue hat", "a light green hat", "a dark green hat"}


def test_lists_name_lists_and_names_have_folders_and_any_case() -> None:
    expected = {f"{c} cat" for c in ("red", "blue", "light green", "dark green")} | {"dog"}
    assert outcomes("__animals/pets__", FILES) == expected
    assert outcomes("__Animals/PETS__", FILES) == expected
    assert outcomes("__colors__", {"Colors": ("red",)}) == {"red"}  # a stray capital in the keys too


def test_several_lines_of_a_list() -> None:
    assert outcomes("{2$$__colors__}", {"colors": ("red", "blue")}) == {"red, blue", "blue, red"}
    assert outcomes("{ __colors__ }", {"colors": ("red", "blue")}) == {"red", "blue"}  # no braces left
    assert outcomes("{a __colors__}", {"colors": ("red", "blue")}) == {"{a red}", "{a blue}"}


def test_a_list_that_leads_back_to_itself_is_an_error_for_every_seed() -> None:
    # `loop` ends on its first line half the time: still an error, the same for every seed
    with pytest.raises(WildcardError, match=r"`__loop__` leads back to itself \(`__loop__` → `__loop__`\)"):
        expand("__loop__", 0, FILES)
    for seed in range(20):
        with pytest.raises(WildcardError, match=r"`__ping__` → `__pong__` → `__ping__`"):
            expand("{a|__ping__}", seed, FILES)


def test_lists_nested_too_deep() -> None:
    depth = wildcards.MAX_FILE_DEPTH
    chain = {f"l{i}": (f"__l{i + 1}__",) for i in range(depth)} | {f"l{depth}": ("end",)}
    with pytest.raises(WildcardError, match="nest more than"):
        expand("__l0__", 0, chain)
    assert expand("__l1__", 0, chain) == "end"
    with pytest.raises(WildcardError, match="nest more than"):  # l1 is checked first, then reached deeper
        expand("__l1__ __l0__", 0, chain)


def test_a_long_chain_of_lists_is_an_error_not_a_crash() -> None:
    chain = {f"l{i}": (f"__l{i + 1}__",) for i in range(2000)} | {"l2000": ("end",)}
    with pytest.raises(WildcardError, match="nest more than"):
        expand("__l0__", 0, chain)


def test_unknown_and_empty_lists() -> None:
    hint = r"no wildcard list `__colours__`\. Did you mean `__colors__`\?.*/wildcard list.*/wildcard add colours"
    with pytest.raises(WildcardError, match=hint):
        expand("a {cat|__colours__}", 0, FILES)
    with pytest.raises(WildcardError, match=r"`__empty__` is empty"):
        expand("__empty__", 0, FILES)


def test_a_broken_line_names_its_list() -> None:
    with pytest.raises(WildcardError, match=r"__bad__.*“a \{b”.*no `\}`"):
        expand("__bad__", 0, {"bad": ("a {b",)})


def test_an_expansion_that_multiplies_is_stopped() -> None:
    files = {f"m{i}": (" ".join([f"__m{i + 1}__"] * 4),) for i in range(8)} | {"m8": ("word",)}
    with pytest.raises(WildcardError, match="more than"):
        expand("__m0__", 0, files)


def test_not_a_list_name_is_text() -> None:
    for text in ("a ___ b", "__ x __", "snake_case_words", "__-x__", "__x", "x__", "__a_", "__a b__", "__a.b__"):
        assert outcomes(text) == {text}


def test_validate_checks_every_branch() -> None:
    validate("{a|__colors__} __animals/pets__", FILES)
    with pytest.raises(WildcardError, match="__nope__"):
        validate("{a|{b|__nope__}}", FILES)


def test_referenced_files() -> None:
    text = r"{a|__animals/pets__} __Other__ \__escaped__ {2$$__colors__}"
    assert referenced_files(text) == {"animals/pets", "other", "colors"}
    assert referenced_files(text, FILES) == {"animals/pets", "other", "colors"}
    assert referenced_files("__ping__", FILES) == {"ping", "pong"}  # loops end
    assert referenced_files("__animals/pets__ {broken", FILES) == {"animals/pets", "colors"}  # never raises
    assert referenced_files("no lists {here|there}") == set()


def test_has_wildcards() -> None:
    assert has_wildcards("{a|b}") and has_wildcards("__x__") and has_wildcards("{2$$__x__}")
    assert not has_wildcards("a (b:1.2) [c|d] {prompt}") and not has_wildcards("")


# --- names, lines, files ------------------------------------------------------------------------------


def test_valid_name() -> None:
    for name in ("colors", "hair-color", "hair_color", "Colors/Warm", "a1/b-2/c_3", "x" * 64):
        assert wildcards.valid_name(name), name
    for name in ("", "x" * 65, "a b", "a__b", "_a", "a_", "/a", "a/", "a//b", "../a", "a.b", "ä", "a\n"):
        assert not wildcards.valid_name(name), name


def test_clean_lines() -> None:
    text = "\ufeff# colors\n  red  \n\n# warm ones\nblue\r\n  #not a comment? it is\n{light|dark} green\n"
    assert wildcards.clean_lines(text) == ("red", "blue", "{light|dark} green")
    assert wildcards.clean_lines("") == ()


def test_clean_lines_limits() -> None:
    limit = wildcards.MAX_FILE_LINES
    assert len(wildcards.clean_lines("x\n" * limit)) == limit
    with pytest.raises(WildcardError, match="more than"):
        wildcards.clean_lines("x\n" * (limit + 1))
    with pytest.raises(WildcardError, match="Line 2 is"):
        wildcards.clean_lines("ok\n" + "y" * (wildcards.MAX_LINE_CHARS + 1))
    with pytest.raises(WildcardError, match="larger than"):
        wildcards.clean_lines("z" * (wildcards.MAX_FILE_BYTES + 1))
    with pytest.raises(WildcardError, match=r"Line 3 \(“a \{b|c”\)"):
        wildcards.clean_lines("ok\n# c\na {b|c\n")
    assert wildcards.clean_lines("a {b|c\n", check_syntax=False) == ("a {b|c",)


def test_read_wildcard_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "colors").mkdir()
    (tmp_path / "colors" / "Warm.txt").write_text("# warm\nred\n\n  orange \n", encoding="utf-8")
    (tmp_path / "animals.txt").write_text("\ufeffcat\r\ndog\r\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a list", encoding="utf-8")
    (tmp_path / "bad name.txt").write_text("x", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "big.txt").write_text("w\n" * (wildcards.MAX_FILE_BYTES // 2 + 1), encoding="utf-8")
    (tmp_path / "long.txt").write_text("v\n" * (wildcards.MAX_FILE_LINES + 1), encoding="utf-8")
    (tmp_path / "broken.txt").write_text("a {b|c\n", encoding="utf-8")  # reported when used
    lists = wildcards.read_wildcard_folder(tmp_path)
    assert lists == {"animals": ("cat", "dog"), "broken": ("a {b|c",), "colors/warm": ("red", "orange")}
    log = caplog.text
    assert "bad name.txt" in log and "latin1.txt" in log and "not UTF-8" in log
    assert "big.txt" in log and "long.txt" in log and "more than" in log
    assert outcomes("__colors/warm__", lists) == {"red", "orange"}


def test_read_wildcard_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * (wildcards.MAX_FILE_BYTES + 1))
    with pytest.raises(WildcardError, match=r"big\.txt.*limit"):
        wildcards.read_wildcard_file(path)
