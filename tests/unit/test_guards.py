"""Structural guards: rules of DESIGN.md that a code review could miss."""

from __future__ import annotations

import ast
from pathlib import Path

import runkernel

SRC = Path(runkernel.__file__).parent
# Modules that talk SQL on a connection their caller owns (DESIGN invariant 3).
DRIVER_MODULES = [
    "adapters/db/repositories.py",
    "adapters/db/tenancy.py",
    "adapters/db/claims.py",
    "adapters/db/incidents.py",
    "adapters/db/policies.py",
    "adapters/db/traces.py",
    "adapters/db/lessons.py",
    "adapters/db/outbox.py",
    "adapters/db/leases.py",
    "adapters/audit_store/repository.py",
]
FORBIDDEN_CALLS = {"commit", "rollback", "begin", "create_engine", "begin_nested"}


def _calls(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                names.add(func.attr)
            elif isinstance(func, ast.Name):
                names.add(func.id)
    return names


def test_driver_modules_never_own_the_transaction() -> None:
    for module in DRIVER_MODULES:
        offending = _calls(SRC / module) & FORBIDDEN_CALLS
        assert not offending, f"{module} calls {sorted(offending)}; only a unit of work may"


def test_the_guard_sees_a_commit() -> None:
    # The scan must be able to fail: a call it should catch, in a throwaway module.
    tree = "def f(conn):\n    conn.commit()\n"
    calls = {
        n.func.attr
        for n in ast.walk(ast.parse(tree))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    assert calls & FORBIDDEN_CALLS == {"commit"}


def test_no_silent_exception_swallowing() -> None:
    """No ``except: pass`` anywhere in the package."""
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                body = node.body
                silent = len(body) == 1 and isinstance(body[0], ast.Pass)
                assert not silent, f"{path.relative_to(SRC)}:{node.lineno} swallows an exception"


def test_nothing_connects_at_import_time() -> None:
    """Module level code never builds an engine or opens a connection."""
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for stmt in tree.body:
            if isinstance(stmt, (ast.Expr, ast.Assign)) and isinstance(stmt.value, ast.Call):
                func = stmt.value.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert name not in {"create_engine", "open_database", "connect", "build_kernel"}, (
                    f"{path.relative_to(SRC)}:{stmt.lineno} connects at import time"
                )
