"""The package's architecture, checked: the floors of docs/architecture.md, no import cycle, one device rule."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch

from robustprune._device import resolve_device

ROOT = Path(__file__).resolve().parents[1] / "robustprune"

#: docs/architecture.md: a module imports only from its own floor or below.
#: cli -> bench -> pipeline/al -> runconfig/rundir -> train, data, signals, selection, noise, evaluate, models
#: -> _io, _validation, _device, _version, _registry, seeding, distributed.
FLOORS = {
    "_io": 0, "_validation": 0, "_device": 0, "_version": 0, "_registry": 0, "_provenance": 0, "seeding": 0,
    "distributed": 0,
    "selection": 1, "data": 1, "train": 1, "models": 1, "signals": 1, "probe": 1, "noise": 1, "evaluate": 1,
    "examples": 1, "encoders": 1,
    "protocols": 2, "runconfig": 2, "explain": 2, "rundir": 2,
    "pipeline": 3, "stages": 3, "warmup": 3, "al": 3,
    "bench": 4,
    "cli": 5, "__main__": 5,
}  # fmt: skip


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in ROOT.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every robustprune module ``path`` imports, at module level or inside functions."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES)
    return {m for m in found if m in MODULES}


GRAPH = {m: _imports(p) for m, p in MODULES.items()}


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_has_a_floor():
    assert [m for m in MODULES if m != "robustprune" and _floor(m) is None] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "robustprune"))
def test_no_module_imports_from_a_floor_above_it(module):
    mine = _floor(module)
    above = sorted(m for m in GRAPH[module] if m != "robustprune" and _floor(m) > mine)
    assert above == [], f"{module} (floor {mine}) imports {above}"


def test_the_lower_floors_never_import_the_package_root():
    # ``import robustprune`` from inside the library would run the public API's imports: a hidden cycle
    offenders = sorted(m for m in MODULES if m != "robustprune" and _floor(m) <= 3 and "robustprune" in GRAPH[m])
    assert offenders == []


#: Inside the selection layer (docs/architecture.md): the public face (registry, result, budget) imports no
#: machinery and no method; the machinery (``core``) imports no method; a method module imports machinery and
#: the public face, never another method family; nothing but the package and ``api`` sit above the methods.
_SELECTION_FACE = ("robustprune.selection.registry", "robustprune.selection.result", "robustprune.selection.budget")


def _selection_part(module: str) -> str:
    parts = module.split(".")
    if module in _SELECTION_FACE:
        return "face"
    if len(parts) > 2 and parts[2] == "core":
        return "core"
    if len(parts) > 3 and parts[2] == "methods":
        return "methods." + parts[3]  # one family (a module, or a package such as prune4rel/)
    return "other"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("robustprune.selection.")))
def test_selection_keeps_machinery_apart_from_methods(module):
    mine = _selection_part(module)
    theirs = {m: _selection_part(m) for m in GRAPH[module] if m.startswith("robustprune.selection.")}
    if mine == "face":
        bad = [m for m, part in theirs.items() if part != "face"]
    elif mine == "core":
        bad = [m for m, part in theirs.items() if part not in ("face", "core")]
    elif mine.startswith("methods."):
        bad = [m for m, part in theirs.items() if part.startswith("methods.") and part != mine or part == "other"]
    else:
        bad = []
    assert bad == [], f"{module} ({mine}) imports {sorted(bad)}"


def test_the_selection_layout_tells_machinery_from_methods_by_path():
    # every registered method lives under selection/methods/, and nothing under selection/core/ registers one
    from robustprune.selection.registry import get_method, list_methods

    homes = {name: get_method(name).func.__module__ for name in list_methods()}
    assert all(mod.startswith("robustprune.selection.methods.") for mod in homes.values()), homes
    registering = sorted(
        m
        for m, path in MODULES.items()
        if m.startswith("robustprune.selection.core") and "@register(" in path.read_text()
    )
    assert registering == []


def test_no_import_cycle():
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


def test_resolve_device_is_one_rule():
    cpu_or_cuda = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == cpu_or_cuda and resolve_device("auto").type == cpu_or_cuda
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("robustprune"):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and f"{node.module}.{alias.name}" not in MODULES:  # a private module is fine
                        offenders.append(f"{name}: from {node.module} import {alias.name}")
    assert offenders == []


def test_every_registry_looks_names_up_by_one_rule():
    from robustprune._registry import Registry
    from robustprune.data import get_dataset_info
    from robustprune.models import get_model_info
    from robustprune.selection.registry import get_method
    from robustprune.train.learners import get_learner_class

    assert (
        get_dataset_info(" Fashion_MNIST ").name == "fashion-mnist"
        and get_dataset_info("FMNIST").name == "fashion-mnist"
    )
    assert get_method("PRUNE4REL-AUTO").name == "prune4rel_auto"
    assert get_model_info("Small-CNN").name == "small_cnn"
    assert get_learner_class("SOP+").name == "sop" and get_learner_class("divide-mix").name == "dividemix"
    for lookup, kind in ((get_dataset_info, "dataset"), (get_method, "selection method"), (get_model_info, "model"),
                         (get_learner_class, "learner")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^unknown {kind} 'nope'; known "):
            lookup("nope")
    reg: Registry[int] = Registry("thing")
    reg.add("a-b", 1, aliases=("x",))
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("A_B", 2)
    assert reg.get("X") == 1 and reg.aliases("a_b") == ("x",)
    reg.remove("x")
    assert "a-b" not in reg and len(reg) == 0
