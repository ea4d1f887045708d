"""Routes reach the models only through the service (issue 11 deliverable 4): parse, call, render."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROUTES = sorted((Path(__file__).resolve().parents[2] / "app" / "api" / "routes").glob("*.py"))


@pytest.mark.parametrize("path", ROUTES, ids=lambda p: p.name)
def test_a_route_module_never_touches_the_repository(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "app.repository" not in imported
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "RepositoryDep" not in names and "repository" not in attributes, path.name
