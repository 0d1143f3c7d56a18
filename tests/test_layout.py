"""The package's shape, as the README's "How the code is laid out" describes it: imports point one way between layers
(core -> hf -> generation -> train/eval/serve/viz/vllm -> cli), with no cycle and no import of another module's
private ``_name``; no module over 300 lines; no function over 60 lines (docstring not counted). Parsed with ``ast``,
nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "segmask"
LAYERS = {"core": 1, "hf": 2, "generation": 3, "train": 4, "eval": 4, "serve": 4, "viz": 4, "vllm": 4, "cli": 5,
          "bench": 5}
"""Subpackage -> layer. A module may import its own subpackage and lower layers only; the facade modules
``segmask/__init__.py`` and ``__main__.py`` (layer 6) may import anything and nothing imports them."""
FACADE_USERS = ("vllm",)
"""Plugin subpackages that are loaded from outside (vLLM's plugin entry point) and use segmask's public top-level
names (``segmask.encode_chat``): they may import the facade ``segmask``, and no module imports them."""
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> tuple[int, str]:
    """(layer, subpackage) of a ``segmask...`` module name."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return 6, "segmask"
    return LAYERS[parts[1]], parts[1]


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported segmask module, imported names, line) of every import in ``path``, top level or inside functions."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "segmask":
                names = [a.name for a in node.names]
                paths = {n: SRC.parent / f"{target}.{n}".replace(".", "/") for n in names}
                submodules = [f"{target}.{n}" for n in names
                              if paths[n].exists() or paths[n].with_name(paths[n].name + ".py").exists()]
                found += [(m, [], node.lineno) for m in submodules]
                if len(submodules) < len(names):
                    found.append((target, [n for n in names if f"{target}.{n}" not in submodules], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "segmask"]
    return found


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def test_the_import_graph_is_read():
    """The parser sees the layering it checks: hf imports core, the cli imports the layers below it."""
    graph = {m: {t for t, _, _ in imports(p)} for m, p in MODULES.items()}
    assert "segmask.core.masks" in graph["segmask.hf.plan"]
    assert "segmask.hf.hook" in graph["segmask.eval.run"]
    assert len(MODULES) > 40


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_and_skip_private_names(module):
    own_layer, own_package = layer(module)
    for target, names, line in imports(MODULES[module]):
        where = f"{module} line {line} imports {target}"
        target_layer, target_package = layer(target)
        facade = target == "segmask" and own_package in FACADE_USERS
        assert target_package == own_package or target_layer < own_layer or facade, \
            f"{where}: an upward or sideways import"
        assert target_package not in FACADE_USERS or own_package == target_package, f"{where}: a plugin is imported"
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert target == module or not private, f"{where}: private names {private}"


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    # a package __init__ is imported by every import of one of its submodules: the edges that matter are between
    # modules, so an __init__ re-exporting its own submodules is no cycle
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if nxt in packages and node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function from ``def`` to its last line, its docstring not counted."""
    n = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        n -= first.end_lineno - first.lineno + 1
    return n


def test_modules_and_functions_stay_small():
    too_long = []
    for module, path in MODULES.items():
        source = path.read_text()
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = function_lines(node)
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name} (line {node.lineno}): {n} lines")
    assert not too_long, "\n".join(too_long)


def test_the_checks_catch_what_they_forbid(tmp_path, monkeypatch):
    """An upward import, a private import and a cycle in a scratch package are reported."""
    pkg = tmp_path / "segmask"
    (pkg / "core").mkdir(parents=True)
    (pkg / "hf").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "hf" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("from ..hf.b import thing\n")
    (pkg / "hf" / "b.py").write_text("from ..core.a import _secret\n")
    monkeypatch.setattr(f"{__name__}.SRC", pkg)
    monkeypatch.setattr(f"{__name__}.MODULES", {module_name(p): p for p in sorted(pkg.rglob("*.py"))})
    with pytest.raises(AssertionError, match="upward"):
        test_imports_point_down_and_skip_private_names("segmask.core.a")
    with pytest.raises(AssertionError, match="private"):
        test_imports_point_down_and_skip_private_names("segmask.hf.b")
    with pytest.raises(AssertionError, match="cycle"):
        test_no_import_cycles()
    (pkg / "vllm").mkdir()
    (pkg / "vllm" / "__init__.py").write_text("import segmask\nfrom ..core.a import thing\n")
    (pkg / "cli").mkdir()
    (pkg / "cli" / "run.py").write_text("from ..vllm import plugin\n")
    monkeypatch.setattr(f"{__name__}.MODULES", {module_name(p): p for p in sorted(pkg.rglob("*.py"))})
    test_imports_point_down_and_skip_private_names("segmask.vllm")  # the plugin may use the public facade
    with pytest.raises(AssertionError, match="plugin"):
        test_imports_point_down_and_skip_private_names("segmask.cli.run")


def test_public_names_resolve():
    """``import segmask`` gives every name of ``__all__`` and every function the README's API table names."""
    import re

    import segmask

    readme = (SRC.parents[1] / "README.md").read_text()
    api = readme[readme.index("## API"):readme.index("## Supported models")]
    documented = set(re.findall(r"^\| `(\w+)\(", api, re.M)) | set(re.findall(r"`(\w+)\(model\)`", api))
    assert {"segment_mask", "encode_chat", "enable", "load_model"} <= documented
    missing = [n for n in [*segmask.__all__, *documented] if not hasattr(segmask, n)]
    assert not missing


# The benchmark scripts: the package's annex, held to the same rules. They import the package by its public modules
# (no private ``_name``), each other without cycles, never edit ``sys.path`` (a script's own folder is on it when it
# runs; tests get it from pytest's ``pythonpath``), and stay as small as the package's modules.
BENCH = SRC.parents[1] / "benchmarks"
SCRIPTS = {p.stem: p for p in sorted(BENCH.glob("*.py"))}


def script_imports(path: Path) -> tuple[list[str], list[tuple[str, list[str], int]], list[int]]:
    """(sibling scripts imported, segmask imports as (module, names, line), lines that touch ``sys.path``)."""
    siblings, package, sys_path = [], [], []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            sys_path.append(node.lineno)
        modules = ([(node.module or "", [a.name for a in node.names])] if isinstance(node, ast.ImportFrom)
                   else [(a.name, []) for a in node.names] if isinstance(node, ast.Import) else [])
        for module, names in modules:
            if module.split(".")[0] == "segmask":
                package.append((module, names, node.lineno))
            elif module.split(".")[0] in SCRIPTS or module == "tests" or module.startswith("tests."):
                siblings.append(module.split(".")[0])
    return siblings, package, sys_path


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmarks_use_the_public_package_and_leave_sys_path_alone(script):
    siblings, package, sys_path = script_imports(SCRIPTS[script])
    assert not sys_path, f"benchmarks/{script}.py edits sys.path (lines {sys_path})"
    assert "tests" not in siblings, f"benchmarks/{script}.py imports the test suite"
    for module, names, line in package:
        private = [n for n in [*module.split("."), *names] if n.startswith("_") and not n.startswith("__")]
        assert not private, f"benchmarks/{script}.py line {line} imports private {private} of {module}"
        assert module in MODULES or module.rsplit(".", 1)[0] in MODULES, \
            f"benchmarks/{script}.py line {line}: no module {module}"


def test_benchmarks_have_no_import_cycles_and_stay_small():
    graph = {name: set(script_imports(path)[0]) - {name} for name, path in SCRIPTS.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    big = {n: p.read_text().count("\n") for n, p in SCRIPTS.items()}
    assert not {n: k for n, k in big.items() if k > MAX_MODULE_LINES}, "benchmark scripts over 300 lines"


def test_the_benchmark_checks_catch_what_they_forbid(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("import sys\nsys.path.insert(0, '.')\nfrom b import x\n")
    (tmp_path / "b.py").write_text("from a import y\nfrom segmask.core.masks import _private\n")
    monkeypatch.setattr(f"{__name__}.SCRIPTS", {p.stem: p for p in sorted(tmp_path.glob("*.py"))})
    with pytest.raises(AssertionError, match="sys.path"):
        test_benchmarks_use_the_public_package_and_leave_sys_path_alone("a")
    with pytest.raises(AssertionError, match="private"):
        test_benchmarks_use_the_public_package_and_leave_sys_path_alone("b")
    with pytest.raises(AssertionError, match="cycle"):
        test_benchmarks_have_no_import_cycles_and_stay_small()
