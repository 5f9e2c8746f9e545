"""The index owns SQL: no module of the package outside the index modules holds an SQL
statement in a string (docstrings aside), so every query has one home and a name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import ccfcache

PACKAGE = Path(ccfcache.__file__).parent
INDEX_MODULES = {"index.py", "index_fast.py"}
SQL = re.compile(
    r"\bSELECT\b[\s\S]+\bFROM\b|\bINSERT\s+(OR\s+[A-Z]+\s+)?INTO\b|\bUPDATE\s+(OR\s+[A-Z]+\s+)?"
    r"\w+\s+SET\b|\bDELETE\s+FROM\b|\bCREATE\s+(UNIQUE\s+)?(TABLE|INDEX|VIEW|TRIGGER)\b"
    r"|\bDROP\s+(TABLE|INDEX)\b|\bPRAGMA\s+\w+|\bBEGIN\s+(IMMEDIATE|EXCLUSIVE)\b"
)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal (f-string parts joined) that looks like SQL."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in skip:
                continue
            text = node.value
        else:
            continue
        if SQL.search(text):
            found.append((node.lineno, text))
    return found


def test_the_detector_sees_sql_and_not_prose() -> None:
    assert sql_strings('q = "SELECT id FROM versions WHERE name = ?"')
    assert sql_strings('q = f"DELETE FROM {table} WHERE x = ?"')
    assert sql_strings('q = ("UPDATE OR IGNORE versions "\n "SET xxh3 = ?")')
    assert sql_strings('q = "INSERT INTO blobs (xxh3) VALUES (?)"')
    assert sql_strings('c.execute("PRAGMA integrity_check")')
    assert not sql_strings('"""Select the rows from the index."""')
    assert not sql_strings('msg = "select a source from the list"')


@pytest.mark.parametrize("module", sorted(
    str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name not in INDEX_MODULES))
def test_no_sql_outside_the_index(module: str) -> None:
    found = sql_strings((PACKAGE / module).read_text(encoding="utf-8"))
    assert not found, (
        f"ccfcache/{module} holds SQL (line {found[0][0]}: {found[0][1][:60]!r}); "
        "add a named method to ccfcache/index.py instead")
