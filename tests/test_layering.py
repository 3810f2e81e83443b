"""The house's layering, as docs/architecture.md states it, checked on the source with `ast`.

The page holds the one table (levels, modules) and the list of exceptions; this test parses both
and reads every `import` in fran/ (at any depth, functions included), examples/ and benchmarks/
without executing any of it. Rules:
- a module of fran imports fran modules of a strictly lower level, or of its own package (a row
  names a module or a package: `fran.layers` covers fran/layers/*);
- nothing imports a name with a leading underscore from outside the module or package that owns
  it (`fran.layers._init` is fran.layers' own), neither by `import` nor as an attribute
  (`engine._fold`); dunders (`__version__`) are not private;
- fran imports nothing from examples/, benchmarks/ or tests/;
- every module of fran is in the table, and every exception is still needed;
- nothing under tests/ imports a module of benchmarks/ or puts benchmarks/ on sys.path (the twin
  networks the oracle compares against live in tests/helpers/; benchmarks/ imports them, not the
  other way; a benchmark script is tested only by running it, or by benchmarks/tests/).
Tests may use private names (they test them) and are otherwise not read.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
OUTSIDE = ("examples", "benchmarks", "tests")


def _rows(header: str) -> list[list[str]]:
    """The cells of the markdown table in docs/architecture.md whose header row starts so."""
    lines = PAGE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    return re.findall(r"`([\w./]+)`", cell)


def levels() -> dict[str, int]:
    """{unit: level} from the page's table: a unit is a module or a package of fran."""
    table = {}
    for cells in _rows("| level |"):
        for name in _names(cells[1]):
            table[name] = int(cells[0])
    return table


def exceptions() -> set[tuple[str, str]]:
    """{(importing unit or file, imported unit)} that the page allows against the rules."""
    return {(_names(c[0])[0], _names(c[1])[0]) for c in _rows("| importer |")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def unit_of(module: str, table: dict[str, int]) -> str | None:
    """The longest name in the table that is the module or a package holding it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in table:
            return ".".join(parts[:n])
    return None


def imports(path: Path):
    """(line, dotted name imported, module it lives in) for every import; names bound to modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bound: dict[str, str] = {}  # local name -> dotted fran path, for attribute checks
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node.lineno, alias.name, alias.name))
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                target = dotted if is_module(dotted) else node.module
                found.append((node.lineno, dotted, target))
                bound[alias.asname or alias.name] = dotted
    return tree, bound, found


def attribute_paths(tree: ast.AST, bound: dict[str, str]):
    """(line, dotted path) of every `name.attr...` whose root name was bound by a fran import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and bound.get(value.id, "").startswith("fran"):
                yield node.lineno, ".".join([bound[value.id], *reversed(chain)])


def private_owner(dotted: str) -> str | None:
    """The module or package owning the first private component of a dotted name, or None."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return ".".join(parts[:i])
    return None


def inside(module: str, owner: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def violations() -> tuple[list[str], set[tuple[str, str]]]:
    table, allowed = levels(), exceptions()
    used: set[tuple[str, str]] = set()
    problems = []
    files = sorted((ROOT / "fran").rglob("*.py"))
    for folder in ("examples", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py"))
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        module = module_name(path)
        in_fran = module.split(".")[0] == "fran"
        unit = unit_of(module, table) if in_fran else rel
        if in_fran and unit is None:
            problems.append(f"{rel}: module {module} is not in docs/architecture.md's table")
            continue
        tree, bound, found = imports(path)

        def breach(line, target, why, unit=unit, rel=rel):
            key = (unit, unit_of(target, table) or target)
            if key in allowed:
                used.add(key)
            else:
                problems.append(f"{rel}:{line}: {why}")

        for line, dotted, target in found:
            top = target.split(".")[0]
            if in_fran and top in OUTSIDE:
                breach(line, target, f"fran imports {target} (outside the library)")
            if top != "fran":
                continue
            owner = private_owner(dotted)
            if owner is not None and not inside(module, owner):
                breach(line, target, f"imports {dotted}: private to {owner}")
            if in_fran:
                to = unit_of(target, table)
                if to is None:
                    problems.append(f"{rel}:{line}: imports {target}, not in the table")
                elif to != unit and table[to] >= table[unit]:
                    breach(
                        line,
                        target,
                        f"{unit} (level {table[unit]}) imports {to} (level {table[to]}): "
                        "a module imports only lower levels",
                    )
        for line, dotted in attribute_paths(tree, bound):
            owner = private_owner(dotted)
            if owner is not None and not inside(module, owner):
                breach(line, owner, f"uses {dotted}: private to {owner}")
    return problems, allowed - used


def benchmark_reaches(root: Path | None = None) -> list[str]:
    """Every place under tests/ that imports a module of benchmarks/ (benchmark scripts import
    each other by file name: `import peers`) or puts a path naming benchmarks on sys.path."""
    root = root or ROOT
    stems = {path.stem for path in (root / "benchmarks").glob("*.py")}
    problems = []
    for path in sorted((root / "tests").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        source = path.read_text()
        for node in ast.walk(ast.parse(source, filename=rel)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in stems | {"benchmarks"}:
                    problems.append((rel, node.lineno, f"imports {name} from benchmarks/"))
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("insert", "append")
                and ast.unparse(node.func.value) == "sys.path"
                and "benchmarks" in (ast.get_source_segment(source, node) or "")
            ):
                problems.append((rel, node.lineno, "puts benchmarks/ on sys.path"))
    return [f"{rel}:{line}: {why}" for rel, line, why in sorted(problems)]


def test_the_tests_import_nothing_from_benchmarks():
    problems = benchmark_reaches()
    assert problems == [], "\n".join(problems)


def test_the_benchmark_check_catches_an_import_and_a_path(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "peers.py").write_text("")
    (tmp_path / "tests" / "oracle").mkdir(parents=True)
    (tmp_path / "tests" / "oracle" / "test_x.py").write_text(
        "import sys\nsys.path.insert(0, str(ROOT / 'benchmarks'))\nimport peers\n"
        "from helpers import fran_models\n"
    )
    assert benchmark_reaches(tmp_path) == [
        "tests/oracle/test_x.py:2: puts benchmarks/ on sys.path",
        "tests/oracle/test_x.py:3: imports peers from benchmarks/",
    ]


def test_every_import_follows_the_layering_in_docs_architecture():
    problems, _ = violations()
    assert problems == [], "\n".join(problems)


def test_every_exception_listed_is_still_needed():
    _, unused = violations()
    assert unused == set(), f"no longer needed; remove from docs/architecture.md: {sorted(unused)}"


def test_the_table_names_each_existing_module_once_and_levels_rise():
    rows = _rows("| level |")
    names = [name for cells in rows for name in _names(cells[1])]
    assert len(names) == len(set(names)), names
    assert [int(cells[0]) for cells in rows] == list(range(len(rows)))
    assert "fran" in names and "fran.registry" in names and "fran.engine" in names


def test_the_checker_catches_a_planted_violation(tmp_path, monkeypatch):
    """A lower module importing a higher one, and a private name across packages, both caught."""
    fake = tmp_path / "repo"
    (fake / "docs").mkdir(parents=True)
    (fake / "docs" / "architecture.md").write_text(PAGE.read_text())
    (fake / "fran" / "layers").mkdir(parents=True)
    (fake / "fran" / "__init__.py").write_text("")
    (fake / "fran" / "layers" / "__init__.py").write_text("")
    (fake / "fran" / "layers" / "_init.py").write_text("")
    (fake / "fran" / "tree.py").write_text("from fran import train\n")
    (fake / "fran" / "train.py").write_text("from fran.layers import _init\n")
    monkeypatch.setattr(f"{__name__}.ROOT", fake)
    monkeypatch.setattr(f"{__name__}.PAGE", fake / "docs" / "architecture.md")
    problems, _ = violations()
    assert any(
        p.startswith("fran/tree.py:1: fran.tree (level 0) imports fran.train") for p in problems
    )
    assert any(p.startswith("fran/train.py:1: imports fran.layers._init") for p in problems)
