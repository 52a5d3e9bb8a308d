"""`evolve` is the one way a spec is derived from another, and it validates what it makes:
`model_copy(update=...)` did not, so a derived spec could hold what no request could."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from generation.spec import GenerationSpec
from generation.training.spec import TrainImage


def spec() -> GenerationSpec:
    return GenerationSpec(
        kind="txt2img", model="tiny", prompt="a fox", width=64, height=64, steps=4, cfg=7.0, sampler="Euler a", seed=1, n=2
    )


def test_evolve_changes_only_what_it_names() -> None:
    base = spec()
    derived = base.evolve(prompt="a blue fox", n=1)
    assert (derived.prompt, derived.n) == ("a blue fox", 1)
    assert derived.model_dump() == {**base.model_dump(), "prompt": "a blue fox", "n": 1}
    assert base.prompt == "a fox"  # specs are frozen: the original is untouched


@pytest.mark.parametrize("changes", [{"kind": "teleport"}, {"n": "many"}, {"no_such_field": 1}])
def test_evolve_refuses_what_no_request_could_hold(changes: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError):
        spec().evolve(**changes)
    assert spec().model_copy(update=changes) is not None, "model_copy takes it unchecked: why evolve exists"


def test_nested_specs_evolve_too() -> None:
    image = TrainImage(blob="a" * 64 + ".png", filename="fox.png", width=64, height=64)
    assert image.evolve(caption="foxy").caption == "foxy"
