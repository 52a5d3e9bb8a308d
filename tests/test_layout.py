"""The layout the folders promise (docs/architecture.md, "The engine's layout"): no import circles
anywhere in the project, the engine's subpackages importing only what their docstrings allow, at
most 8 modules at the top of generation/, and the torch-free modules (and the worker) free of torch.

Imports are read with `ast`, every one of them: at the top, inside functions, and under
`TYPE_CHECKING` (a type-only import is still a dependency a reader has to follow). `from pkg
import name` counts as importing `pkg.name` when that is a module, else `pkg`; importing a module
also runs its packages' `__init__`, which is not counted (our `__init__` files import nothing but
what they document)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("bot", "commands", "generation", "storage", "config", "runtime")

# What each part of the engine may import of the engine (besides itself); docstrings say the same.
ENGINE_RULES = {
    "generation.errors": set(),
    "generation.spec": {"generation.prompts"},  # the wildcard picks per image (torch-free)
    "generation.parameters": {"generation.spec", "generation.prompts", "generation.models"},  # models: the families, torch-free
    "generation.prompts": {"generation.spec", "generation.errors"},
    "generation.models": {"generation.errors"},
    "generation.assets": {"generation.spec", "generation.errors", "generation.prompts", "generation.models"},
    "generation.imaging": {"generation.spec", "generation.errors", "generation.models"},
    "generation.text_models": {"generation.errors", "generation.models"},
    "generation.tools": {"generation.errors", "generation.imaging", "generation.text_models", "generation.control"},
    "generation.control": {"generation.spec", "generation.errors", "generation.models"},
    "generation.engine": {
        "generation.spec",
        "generation.errors",
        "generation.prompts",
        "generation.models",
        "generation.assets",
        "generation.imaging",
        "generation.tools",
        "generation.control",
    },
    "generation.jobs": {
        "generation.engine",
        "generation.spec",
        "generation.errors",
        "generation.parameters",
        "generation.prompts",
        "generation.models",
        "generation.assets",
        "generation.imaging",
        "generation.control",
        "generation.animation",
    },
    "generation.training": {
        "generation.engine",
        "generation.spec",
        "generation.errors",
        "generation.parameters",
        "generation.assets",
        "generation.models",
        "generation.prompts",
    },
    "generation.animation": {"generation.errors"},  # Deforum schedules, warps and video files, torch-free
    "generation.worker": {"generation.engine", "generation.jobs", "generation.spec", "generation.errors", "generation.training"},
}
# Modules the chat side imports: they must load without torch (a bot-only process starts fast).
TORCH_FREE = [
    "generation.spec",
    "generation.parameters",
    "generation.errors",
    "generation.prompts.wildcards",
    "generation.prompts.chaos",
    "generation.prompts.region_layout",
    "generation.prompts.lora_tags",
    "generation.prompts.schedule",
    "generation.prompts.weights",
    "generation.models.samplers",
    "generation.models.families",
    "generation.prompts.plain",
    "generation.models.files",
    "generation.models.shapes",
    "generation.models.hf_source",
    "generation.models.tiny_config",
    "generation.assets.files",
    "generation.assets.fit",
    "generation.assets.safetensors_header",
    "generation.control.catalog",
    "generation.control.qr",
    "generation.training.spec",
    "generation.training.buckets",
    "generation.animation.keyframes",
    "generation.animation.video",
]
# The worker is not the chat side's, but loads no torch either: it imports the engine, the job kinds
# and the trainer where a job runs on them, so a worker around another engine starts in a second
# (tests/support/null_worker.py, restarted again and again by tests/test_chaos.py).
WORKER = ["generation.worker"]


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # alembic's scripts: loaded by alembic, not imported
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports."""

    def nearest(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {t for alias in node.names if (t := nearest(alias.name))}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parent, *([base] if base else [])])
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else nearest(base)
                    if target:
                        targets.add(target)
        graph[name] = targets - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_circles() -> None:
    """The checks below can fail: a circle through three modules, and one through a type-only import."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_type_only_and_function_level_imports_count(tmp_path: Path) -> None:
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "one.py").write_text("def f():\n    from bot.two import x\n")
    (tmp_path / "bot" / "two.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot import one\n")
    for package in PACKAGES[1:]:
        (tmp_path / package).mkdir()
    assert circles(import_graph(project_modules(tmp_path))) == [["bot.one", "bot.two"]]


def test_no_import_circles_anywhere() -> None:
    assert circles(import_graph(project_modules())) == []


def test_each_part_of_the_engine_imports_only_what_it_may() -> None:
    graph = import_graph(project_modules())

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    broken = []
    for module, targets in sorted(graph.items()):
        if not module.startswith("generation."):
            continue
        allowed = ENGINE_RULES[part(module)] | {part(module)}
        broken += [f"{module} imports {t}" for t in sorted(targets) if t.startswith("generation.") and part(t) not in allowed]
    assert broken == []


def test_the_engine_shows_its_parts() -> None:
    top = sorted(p.stem for p in (ROOT / "generation").glob("*.py") if p.stem != "__init__")
    assert len(top) <= 8, top
    subpackages = sorted(p.parent for p in (ROOT / "generation").glob("*/__init__.py"))
    assert {p.name for p in subpackages} >= {"jobs", "prompts", "models", "assets", "imaging", "text_models", "control"}
    for package in [ROOT / "generation", *subpackages]:
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring and len(docstring) > 200 and "import" in docstring, package  # what lives there, what it may import
    assert set(ENGINE_RULES) == {f"generation.{name}" for name in top} | {f"generation.{p.name}" for p in subpackages}


@pytest.mark.parametrize("modules", [TORCH_FREE, WORKER], ids=["chat side", "worker"])
def test_the_torch_free_modules_load_without_torch(modules: list[str]) -> None:
    code = f"import sys, {', '.join(modules)}; sys.exit(sorted({{'torch', 'diffusers', 'transformers'}} & set(sys.modules)) or 0)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr or result.stdout


def test_every_job_kind_has_exactly_one_runner() -> None:
    from typing import get_args

    from generation.jobs import ANSWER_KINDS, PICTURE_KINDS
    from generation.spec import TEXT_KINDS, JobKind

    assert not set(PICTURE_KINDS) & set(ANSWER_KINDS)
    assert set(PICTURE_KINDS) | set(ANSWER_KINDS) == set(get_args(JobKind))
    assert set(ANSWER_KINDS) == set(TEXT_KINDS)  # the worker picks answer_job by spec.TEXT_KINDS


# --- the command layer ----------------------------------------------------------------------------

COMMAND_FOLDER_LIMIT = 10  # modules in one folder of commands/ (its __init__ and subpackages not counted)
FEATURE_FOLDERS = ("pictures", "clips", "training", "library", "account", "people", "explore")
# What each folder of commands/ may import of commands/ (besides itself); its docstring says the same.
COMMAND_RULES = {
    "frame": set(),
    "jobs": {"frame"},
    **{folder: {"frame", "jobs"} for folder in FEATURE_FOLDERS},
}
# The imports across feature folders, each with its reason (the folders' docstrings say them too).
COMMAND_EXCEPTIONS = {
    ("commands.pictures.imagine", "commands.clips.video2video"),  # a reply to a clip with a prompt restyles the clip
    ("commands.pictures.imagine", "commands.explore.draft"),  # `/imagine --draft` draws the prompt as a draft
    ("commands.pictures.imagine", "commands.explore.permutations"),  # `{red, blue} fox` and --repeat: several jobs
    ("commands.library.models", "commands.account.settings"),  # `/model NAME` is `/settings --model NAME`
}
# Modules that hold a small family of commands, named for the family; every other command's handler
# lives in the module of its own name.
COMMAND_FAMILIES = {
    "commands.pictures.edits": {"upscale", "vary", "zoom", "pan", "facefix"},  # the edits under a picture
    "commands.library.assets": {"lora", "loras", "embedding", "embeddings", "hypernetwork", "hypernetworks"},
    "commands.library.styles": {"styles", "style"},
    "commands.library.moodboards": {"moodboards", "moodboard"},
    "commands.library.models": {"models", "model"},
    "commands.account.queue": {"queue", "cancel", "history"},
    "commands.people.linking": {"link", "unlink"},
    "commands.registry": {"help"},  # /help reads the registry itself
}


def _command_folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "commands" and len(parts) > 2 else None


def command_layout_problems(graph: dict[str, set[str]], root: Path = ROOT) -> list[str]:
    """Folders over their limit, and imports a folder's rule does not allow."""
    problems = []
    for folder in sorted(p.parent for p in (root / "commands").glob("*/__init__.py")):
        modules = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
        if len(modules) > COMMAND_FOLDER_LIMIT:
            problems.append(f"commands/{folder.name} holds {len(modules)} modules (limit {COMMAND_FOLDER_LIMIT}): {modules}")
        if folder.name not in COMMAND_RULES:
            problems.append(f"commands/{folder.name} has no import rule in COMMAND_RULES")
    for module, targets in sorted(graph.items()):
        folder = _command_folder(module)
        if folder is None or folder not in COMMAND_RULES:
            continue
        allowed = COMMAND_RULES[folder] | {folder}
        for target in sorted(targets):
            if not target.startswith("commands") or (module, target) in COMMAND_EXCEPTIONS:
                continue
            if _command_folder(target) not in allowed:
                problems.append(f"{module} imports {target}")
    return problems


def test_the_command_layer_keeps_its_folders_and_their_rules() -> None:
    assert command_layout_problems(import_graph(project_modules())) == []
    for folder in sorted(p.parent for p in (ROOT / "commands").glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert docstring and "May import" in docstring, folder  # what lives there, what it may import


def test_the_command_layout_check_can_fail(tmp_path: Path) -> None:
    """A folder over its limit, and a frame module importing a command, are both reported."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    for folder in ("frame", "pictures"):
        (tmp_path / "commands" / folder).mkdir()
        (tmp_path / "commands" / folder / "__init__.py").write_text('"""May import: nothing."""\n')
    for i in range(COMMAND_FOLDER_LIMIT + 1):
        (tmp_path / "commands" / "pictures" / f"m{i}.py").write_text("")
    (tmp_path / "commands" / "frame" / "types.py").write_text("from commands.pictures import m0\n")
    problems = command_layout_problems(import_graph(project_modules(tmp_path)), tmp_path)
    assert any("holds 11 modules" in p for p in problems), problems
    assert "commands.frame.types imports commands.pictures.m0" in problems


def handler_place_problems(commands: tuple) -> list[str]:  # type: ignore[type-arg]
    """Commands whose handler lives outside a feature folder, or in a module not named for it."""
    problems = []
    for command in commands:
        module = command.handler.__module__
        family = COMMAND_FAMILIES.get(module)
        if family is not None:
            if command.name not in family:
                problems.append(f"/{command.name} lives in {module}, which holds {sorted(family)}")
            continue
        if _command_folder(module) not in FEATURE_FOLDERS:
            problems.append(f"/{command.name}'s handler is in {module}, outside the command folders {FEATURE_FOLDERS}")
        elif module.rpartition(".")[2] != command.name:
            problems.append(f"/{command.name}'s handler is in {module}, not in a module named {command.name}")
    return problems


def test_each_command_lives_in_the_module_its_name_says() -> None:
    import dataclasses

    from commands import registry

    assert handler_place_problems(registry.COMMANDS) == []
    # ... and the check fails for a handler in the wrong place.
    astray = dataclasses.replace(registry.find("imagine"), handler=registry.find("animate").handler)  # type: ignore[arg-type]
    assert handler_place_problems((astray,)) == ["/imagine's handler is in commands.clips.animate, not in a module named imagine"]
