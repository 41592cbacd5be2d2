"""requirements.txt pins every package the code imports, so a fresh machine gets what the tests ran against."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions

from core import config

#: Top-level names that are this project's own code.
LOCAL = {"core", "pages", "tests", "widgets", "benchmarks", "app", "ui"}


def imported_modules() -> set[str]:
    """Top-level names of every module imported anywhere in the project's Python files (inside functions too)."""
    names: set[str] = set()
    for path in config.ROOT.rglob("*.py"):
        if any(part.startswith(".") for part in path.relative_to(config.ROOT).parts):
            continue  # the virtual environment, caches
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - LOCAL - set(sys.stdlib_module_names)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_pinned():
    pinned = {_normal(line.split("==")[0]) for line in (config.ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
              if "==" in line and not line.lstrip().startswith("#")}
    distributions = packages_distributions()
    unpinned = {module: distributions.get(module, [module]) for module in imported_modules()
                if not {_normal(d) for d in distributions.get(module, [module])} & pinned}
    assert unpinned == {}, f"imported but not pinned in requirements.txt: {unpinned}"
