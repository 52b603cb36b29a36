"""The package's shape: stages import only downwards, no import cycle, no private name across modules,
no stage imports a command module, and `ecgtool --help` / `import ecgtool` stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "toolkit" / "ecgtool"
#: the dependency direction of DESIGN.md: a stage may import its own level and those below
LEVEL = {"core": 0, "data": 1, "models": 1, "baseline": 1, "train": 2, "evaluate": 2, "runtime": 2,
         "compress": 3, "export": 3, "bench": 4, "report": 4, "deploy": 4, "search": 4, "pipeline": 4, "cli": 5}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every ecgtool import in a file, at any depth."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecgtool"):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append(("." * node.level + (node.module or ""), [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("ecgtool")]
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = _modules()


def _resolve(module: str, names: list[str]) -> list[str]:
    """The ecgtool modules an import statement binds: `from pkg import submodule` names the submodule."""
    targets = []
    for n in names:
        if f"{module}.{n}" in MODULES:
            targets.append(f"{module}.{n}")
    return targets or [module]


def test_no_relative_imports_and_stages_import_downwards():
    bad = []
    for name, path in MODULES.items():
        src = _stage(name)
        for module, names, line in _imports(path):
            if module.startswith("."):
                bad.append(f"{path.name}:{line}: relative import {module}")
                continue
            for target in _resolve(module, names):
                dst = _stage(target)
                if src in LEVEL and dst in LEVEL and LEVEL[dst] > LEVEL[src]:
                    bad.append(f"{name}:{line} ({src}, level {LEVEL[src]}) imports {target} ({dst}, level {LEVEL[dst]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, names, _ in _imports(path):
            for target in _resolve(module, names):
                if target in graph and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    # a package's __init__ re-exporting its own submodules is not a cycle of the stages
    for name in graph:
        graph[name] = {t for t in graph[name] if not (t.startswith(name + ".") and MODULES[name].name == "__init__.py")}
    seen, stack, cycles = set(), [], []

    def visit(n: str) -> None:
        if n in stack:
            cycles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for t in sorted(graph[n]):
            visit(t)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles[:10])


def test_no_private_name_imported_across_modules_and_no_stage_imports_a_command_module():
    bad = []
    for name, path in MODULES.items():
        for module, names, line in _imports(path):
            bad += [f"{name}:{line}: imports {module}.{n}" for n in names if n.startswith("_") and n != "__version__"]
            if not name.startswith(("ecgtool.cli", "ecgtool.__main__")) and module.startswith("ecgtool.cli"):
                bad.append(f"{name}:{line}: a stage imports the command line module {module}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("code", ["import ecgtool"] + [
    f"import sys; sys.argv = ['ecgtool', '{flag}']\nfrom ecgtool.cli.main import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    for flag in ("--help", "--version")])
def test_help_and_import_load_no_heavy_library(code):
    probe = code + "\nimport sys\nprint(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'scipy', 'openvino', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_every_command_listed_in_help_imports():
    from click.testing import CliRunner

    from ecgtool.cli.main import COMMANDS, DATA_COMMANDS, main

    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for name, (_, help_line) in COMMANDS.items():
        assert name in r.output and help_line in r.output
    for group, table in ((None, COMMANDS), ("data", DATA_COMMANDS)):
        for name in table:
            args = ([group] if group else []) + [name, "--help"]
            res = CliRunner().invoke(main, args)
            assert res.exit_code == 0, (args, res.output)
