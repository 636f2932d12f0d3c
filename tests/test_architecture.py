"""Guards for the trust boundary (docs/architecture.md): read the source, never import it.

- nothing under sandbox/ imports llmnas;
- the driver (llmnas/) imports from sandbox/ only ``sandbox.protocol``, the data contract;
- ``sandbox.protocol`` itself imports nothing of either side (nor torch): importing it is free;
- no driver module executes or compiles code, imports by name at run time, unpickles (pickle,
  marshal, shelve, ``torch.load`` without ``weights_only=True``, ``np.load`` without
  ``allow_pickle=False``) or writes pickles, unless an entry of ``ALLOWED`` says why that site is safe;
- the driver never loads a module from a file (``spec_from_file_location``, ``runpy``, ``sys.path``).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "llmnas"
SANDBOX = ROOT / "sandbox"
PROTOCOL = "sandbox.protocol"
# Modules both sides import: the data contract, removing a candidate's folder safely, and reading an ONNX
# artifact as data. Each imports only the standard library (and pydantic; the graph reader the onnx
# package, inside its functions), never the worker, the driver or torch.
SHARED = (PROTOCOL, "sandbox.cleanup", "sandbox.graph")

# (file relative to the repo, qualified call) -> why this site is safe. An entry that matches no
# site is an error too: the list must say exactly what is allowed.
ALLOWED: dict[tuple[str, str], str] = {}

# Calls that run code from a string or load a module by a name chosen at run time.
CODE_CALLS = {
    "exec",
    "eval",
    "compile",
    "__import__",
    "builtins.exec",
    "builtins.eval",
    "builtins.compile",
    "builtins.__import__",
    "importlib.import_module",
    "importlib.__import__",
    "importlib.reload",
}
# Calls that unpickle (run code from bytes) whatever the arguments.
UNPICKLE_CALLS = {
    f"{module}.{name}"
    for module in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib")
    for name in ("load", "loads", "Unpickler")
} | {
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "pandas.read_pickle",
    "numpy.lib.format.read_array",
    "torch.jit.load",  # a TorchScript archive a worker wrote: code and pickled data
    "torch.package.PackageImporter",
}
# Calls that write a pickle: someone will load it later, so each site needs a reason.
PICKLE_WRITES = {"pickle.dump", "pickle.dumps", "torch.save", "torch.serialization.save"}
# Strings that load a module from a file path or change where imports are looked up.
FILE_IMPORTS = re.compile(
    r"spec_from_file_location|module_from_spec|exec_module|SourceFileLoader|SourcelessFileLoader"
    r"|\brunpy\b|run_path|run_module|zipimport|sys\.path\.(?:insert|append|extend)|sys\.path\s*\+?="
    r"|importlib\.machinery"
)


def _files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    assert files, f"no Python files under {folder}"
    return files


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _package_of(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts[:-1])


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every module an import statement names (anywhere in the file, functions included), with
    ``from a import b`` also giving ``a.b`` (b may be a submodule) and relative imports resolved."""
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(path, root).split(".")
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


class _Calls(ast.NodeVisitor):
    """Calls with their qualified names, import aliases resolved (``np.load`` is ``numpy.load``)."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.calls: list[tuple[ast.Call, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{node.module or ''}.{alias.name}"

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualify(node.func)
        if name:
            self.calls.append((node, name))
        self.generic_visit(node)

    def qualify(self, expr: ast.expr) -> str | None:
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        parts.append(self.aliases.get(expr.id, expr.id))
        return ".".join(reversed(parts))


def _calls(path: Path) -> list[tuple[ast.Call, str]]:
    visitor = _Calls()
    tree = _tree(path)
    # Aliases first (imports may sit below their use inside functions), then the calls.
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            visitor.visit(node)
    visitor.visit(tree)
    return visitor.calls


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(expr: ast.expr | None, value: object) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is value


def _unsafe(call: ast.Call, name: str) -> str | None:
    """Why this call breaks the boundary, or None."""
    if name in CODE_CALLS:
        return "runs code from a string or imports a module chosen at run time"
    if name in UNPICKLE_CALLS:
        return "unpickles"
    if name in PICKLE_WRITES:
        return "writes a pickle"
    if name in ("torch.load", "torch.serialization.load") and not _is_const(
        _keyword(call, "weights_only"), True
    ):
        return "torch.load without weights_only=True unpickles"
    if name in ("numpy.load", "numpy.lib.npyio.load") and not _is_const(
        _keyword(call, "allow_pickle"), False
    ):
        return "np.load needs allow_pickle=False (arrays travel as plain .npy files)"
    return None


# --------------------------------------------------------------------------- imports
@pytest.mark.parametrize("path", _files(SANDBOX), ids=_rel)
def test_the_sandbox_never_imports_the_driver(path: Path):
    bad = [(line, m) for line, m in _imports(path) if m == "llmnas" or m.startswith("llmnas.")]
    assert not bad, f"{_rel(path)} imports the driver: {bad}"


@pytest.mark.parametrize("path", _files(DRIVER), ids=_rel)
def test_the_driver_imports_only_the_protocol_from_the_sandbox(path: Path):
    bad = [
        (line, m)
        for line, m in _imports(path)
        if (m == "sandbox" or m.startswith("sandbox."))
        and m not in ("sandbox", *SHARED)
        and not m.startswith(tuple(f"{shared}." for shared in SHARED))
    ]
    bare = [
        (node.lineno, alias.name)
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "sandbox"
    ]
    assert not bad + bare, f"{_rel(path)} imports sandbox internals (only {SHARED} are shared): {bad + bare}"


@pytest.mark.parametrize("module", SHARED)
def test_the_shared_modules_import_neither_side(module: str):
    """Importing a shared module (the data contract, the safe remover, the graph reader) must not pull in
    the worker, the driver or torch: only the standard library, pydantic, onnx and each other."""
    path = ROOT / (module.replace(".", "/") + ".py")
    stdlib = set(sys.stdlib_module_names)
    for line, imported in _imports(path):
        top = imported.split(".")[0]
        shared = any(imported == m or imported.startswith(m + ".") for m in SHARED)
        assert shared or top in stdlib or top in ("__future__", "pydantic", "onnx"), (
            f"{module} line {line} imports {imported}: keep the shared modules free of both sides"
        )


# --------------------------------------------------------------------------- code and pickles
def _driver_sites() -> list[tuple[str, int, str, str]]:
    sites = []
    for path in _files(DRIVER):
        for call, name in _calls(path):
            why = _unsafe(call, name)
            if why:
                sites.append((_rel(path), call.lineno, name, why))
    return sites


def test_the_driver_never_executes_imports_by_name_or_unpickles():
    sites = _driver_sites()
    bad = [s for s in sites if (s[0], s[2]) not in ALLOWED]
    assert not bad, "unsafe calls in the driver:\n" + "\n".join(
        f"{file}:{line}: {name}: {why}" for file, line, name, why in bad
    )
    stale = set(ALLOWED) - {(s[0], s[2]) for s in sites}
    assert not stale, f"ALLOWED entries that match no call (remove them): {sorted(stale)}"


def test_the_sandbox_never_unpickles():
    """The zygote runs as root and reads files the driver wrote; the worker reads the shared data.
    Neither may unpickle (running candidate code is the worker's job: exec is allowed there)."""
    bad = []
    for path in _files(SANDBOX):
        for call, name in _calls(path):
            why = _unsafe(call, name)
            if why and name not in CODE_CALLS | PICKLE_WRITES:
                bad.append(f"{_rel(path)}:{call.lineno}: {name}: {why}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", _files(DRIVER), ids=_rel)
def test_the_driver_never_loads_a_module_from_a_file(path: Path):
    """Candidate code reaches the driver as text only: no spec_from_file_location, runpy or sys.path."""
    hits = [
        f"line {n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FILE_IMPORTS.search(line)
    ]
    assert not hits, f"{_rel(path)} loads code from files: {hits}"


ONNX_PARSERS = ("onnx", "onnxruntime")
ONNX_CHECK = "llmnas/results/onnx_check.py"


def _onnx_imports(nodes) -> list[int]:
    return [
        node.lineno
        for node in nodes
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
        if name.split(".")[0] in ONNX_PARSERS
    ]


def test_only_the_onnx_checks_child_parses_a_workers_onnx():
    """A worker's model.onnx is untrusted data: only results/onnx_check.py imports onnx or onnxruntime, and
    only inside functions (they run in its limited child process, never when the driver imports it)."""
    bad = []
    for path in _files(DRIVER):
        tree = _tree(path)
        lines = _onnx_imports(tree.body) if _rel(path) == ONNX_CHECK else _onnx_imports(ast.walk(tree))
        bad += [f"{_rel(path)}:{line}" for line in lines]
    assert not bad, f"onnx/onnxruntime imported outside the check's child: {bad}"
    assert _onnx_imports(ast.walk(_tree(ROOT / ONNX_CHECK))), "the check no longer parses with onnx"


# --------------------------------------------------------------------------- the scanners themselves
SCANNER_PROBE = """
import numpy as np
import pickle as pk
import torch
from importlib import import_module
from torch import load as tload


def f(path, module):
    exec("1")
    eval("1")
    compile("1", "x", "exec")
    __import__(module)
    import_module(module)
    pk.loads(b"")
    torch.load(path)
    tload(path, weights_only=False)
    np.load(path)
    np.load(path, allow_pickle=True)
    torch.load(path, weights_only=True)
    np.load(path, allow_pickle=False)
    torch.save(path, path)
    model.eval()
    re.compile("x")
"""


def test_the_scanners_see_what_they_must(tmp_path: Path):
    probe = tmp_path / "probe.py"
    probe.write_text(SCANNER_PROBE)
    flagged = [name for call, name in _calls(probe) if _unsafe(call, name)]
    assert flagged == [
        "exec",
        "eval",
        "compile",
        "__import__",
        "importlib.import_module",
        "pickle.loads",
        "torch.load",
        "torch.load",
        "numpy.load",
        "numpy.load",
        "torch.save",
    ]
    fake = tmp_path / "llmnas" / "mod.py"
    fake.parent.mkdir()
    fake.write_text("from sandbox import worker\nfrom ..sandbox import limits\nimport sandbox.protocol\n")
    modules = {m for _, m in _imports(fake, tmp_path)}
    assert {"sandbox.worker", "sandbox.limits", "sandbox.protocol"} <= modules
    assert FILE_IMPORTS.search("spec = importlib.util.spec_from_file_location('m', p)")
    assert FILE_IMPORTS.search("sys.path.insert(0, folder)") and FILE_IMPORTS.search("import runpy")


def _module_imports(path: Path) -> set[str]:
    """llmnas modules a file imports, at the top or inside a function: a circle through a function-level
    import is a circle all the same."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmnas"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).is_file() else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("llmnas")}
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_graph() -> dict[str, set[str]]:
    return {_module_name(p): _module_imports(p) for p in DRIVER.rglob("*.py") if "__pycache__" not in p.parts}


def _package(module: str) -> str:
    """llmnas.engine.loop -> llmnas.engine; a top-level module (llmnas.cli, llmnas.metrics) is its own."""
    return ".".join(module.split(".")[:2])


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, imported in _module_graph().items():
        mine = _package(module)
        graph.setdefault(mine, set()).update(p for p in map(_package, imported) if p != mine)
    return graph


def _assert_no_cycle(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt in graph and not state.get(nxt):
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [node])


def test_no_import_cycles_in_the_driver():
    _assert_no_cycle(_module_graph())


# The layers of docs/architecture.md, bottom first: a package imports only packages of lower layers.
LAYERS = (
    ("errors", "safe_text", "version", "metrics"),
    ("config",),
    ("task", "candidate", "execute"),
    ("llm",),
    ("propose",),
    ("runs",),
    ("finetune",),
    ("engine",),
    ("results",),
    ("report",),
    ("run",),
    ("evaluate",),
    ("cli",),
    ("console", ""),  # "": llmnas/__init__.py
)


def test_the_driver_packages_are_the_documented_layers():
    level = {f"llmnas.{name}".rstrip("."): i for i, names in enumerate(LAYERS) for name in names}
    graph = _package_graph()
    assert set(graph) == set(level), "a package is missing from LAYERS (and docs/architecture.md)"
    bad = sorted(f"{p} -> {q}" for p, imported in graph.items() for q in imported if level[q] >= level[p])
    assert not bad, f"imports that are not of a lower layer: {bad}"
    assert graph["llmnas.metrics"] == set(), "metrics.py imports nothing of the driver"


def test_no_import_cycles_between_the_driver_packages():
    """Packages are layers (docs/architecture.md): no package imports one that imports it back, directly or
    not, function-level imports counted. llmnas/metrics.py, the metric rules, is at the bottom."""
    graph = _package_graph()
    _assert_no_cycle(graph)
    with pytest.raises(AssertionError, match="import cycle: .*llmnas.runs -> llmnas.engine"):
        _assert_no_cycle(graph | {"llmnas.runs": graph["llmnas.runs"] | {"llmnas.engine"}})


def test_the_driver_is_grouped_into_packages_of_small_modules():
    """Every driver module lives in a package named for its concept, and stays small enough to read
    (the few larger ones say why in their docstring)."""
    top = {p.name for p in DRIVER.glob("*.py")}
    assert top <= {
        "__init__.py",
        "cli.py",
        "config.py",
        "errors.py",
        "run.py",
        "evaluate.py",
        "safe_text.py",
        "console.py",
        "version.py",
        "metrics.py",
    }
    for path in [*DRIVER.rglob("*.py"), *SANDBOX.glob("*.py")]:
        lines = len(path.read_text().splitlines())
        if lines > 400:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "one cohesive" in doc, f"{path.relative_to(ROOT)} has {lines} lines and no reason given"
