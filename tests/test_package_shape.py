"""The package's shape: the commands sit together in lightning_grelu/cli/ (one file per entry point,
each named in pyproject.toml), and no two modules import each other, even lazily."""

import ast
import tomllib
from pathlib import Path

import networkx as nx

PKG = Path(__file__).resolve().parents[1] / "lightning_grelu"


def imports_of(path: Path) -> set[str]:
    """Every lightning_grelu module this file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lightning_grelu"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("lightning_grelu"))
    return out


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycles_between_modules():
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in files.items():
        for target in imports_of(path):
            if target in files and target != name and not name.startswith(target + "."):
                if files[target].name != "__init__.py":  # a package's __init__ re-exports; not a dependency edge
                    graph.add_edge(name, target)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"modules that import each other: {cycles}"


def test_every_command_is_one_file_in_the_cli_package():
    scripts = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"grelu-train", "grelu-eval", "grelu-sweep", "grelu-reproduce", "grelu-report",
                            "grelu-bench"}
    for command, target in scripts.items():
        module, func = target.split(":")
        assert module == f"lightning_grelu.cli.{command.removeprefix('grelu-')}" and func == "main", (command, target)
        assert (PKG / "cli" / f"{command.removeprefix('grelu-')}.py").is_file()
    top = sorted(p.stem for p in PKG.glob("*.py") if p.stem.endswith("_cli") or p.stem == "cli")
    assert not top, f"commands outside lightning_grelu/cli/: {top}"


def test_the_readme_group_table_lists_every_option_of_every_group():
    import re

    readme = (PKG.parent / "README.md").read_text()
    for group in ("model", "data", "trainer", "logger", "callbacks", "experiment"):
        row = next(ln for ln in readme.splitlines() if ln.startswith(f"| `{group}/` |"))
        listed = set(re.findall(r"`([a-z0-9_]+)`", row))
        options = {p.stem for p in (PKG / "conf" / group).glob("*.yaml")}
        assert options <= listed, f"README's {group}/ row lacks {sorted(options - listed)}"


def test_the_width_searches_are_descriptions_over_the_one_engine():
    """The atlas, fig2a and grelu-sweep's frontier mode import the width-search engine (lightning_grelu.scan) and
    define no search of their own: no loop over widths that decides the next one, no second P_GRID."""
    users = {"atlas": PKG / "reproduce" / "atlas.py", "fig2a": PKG / "reproduce" / "fig2a.py",
             "frontier": PKG / "sweeps" / "frontier.py"}
    for name, path in users.items():
        assert any(m.startswith("lightning_grelu.scan") for m in imports_of(path)), name
        tree = ast.parse(path.read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert not defined & {"search", "bisect", "cell_frontier", "converges", "needed", "m_all", "m_50"}, name
    grids = [p for p in PKG.rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "P_GRID" for t in n.targets)]
    assert grids == [PKG / "scan" / "grid.py"]
