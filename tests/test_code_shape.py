"""Code shape: no Python file over 600 lines, no function over 60 lines without a stated reason.

A function may be longer when the line before its ``def`` (or before its first decorator), or the
``def`` line itself, carries a comment ``# one piece: <why it must stay whole>``. ruff keeps the
same shape by branches and statements (C901, PLR0915 in pyproject.toml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("lstm_core", "tasks", "tools", "tests")
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60
MARK = "# one piece:"

# Nothing is allowed over the limits without a '# one piece:' comment (issue 22's split has landed).
ALLOWED_LONG_FILES: set[str] = set()
ALLOWED_LONG_FUNCTIONS: set[str] = set()


def python_files():
    for folder in FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def functions(tree: ast.AST, prefix: str = ""):
    """``(qualified name, node)`` of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def says_why(lines: list[str], node) -> bool:
    """A ``# one piece:`` comment on the def line, a decorator line or the line above them."""
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return any(MARK in lines[n - 1] for n in range(max(first - 1, 1), node.lineno + 1))


def long_functions(path: Path) -> dict[str, int]:
    """``{qualified name: lines}`` of the functions in ``path`` over the limit without a reason."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = {}
    for name, node in functions(ast.parse(text, str(path))):
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES and not says_why(lines, node):
            found[name] = length
    return found


def test_no_python_file_is_over_600_lines():
    too_long = {}
    for path in python_files():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > MAX_FILE_LINES:
            too_long[path.relative_to(ROOT).as_posix()] = count
    unexpected = {name: count for name, count in too_long.items() if name not in ALLOWED_LONG_FILES}
    assert not unexpected, f"files over {MAX_FILE_LINES} lines (split them by concern): {unexpected}"
    assert not ALLOWED_LONG_FILES - set(too_long), f"no longer long, drop from the allow-list: {ALLOWED_LONG_FILES - set(too_long)}"


def test_no_function_is_over_60_lines_without_saying_why():
    too_long, seen = {}, set()
    for path in python_files():
        for name, length in long_functions(path).items():
            key = f"{path.relative_to(ROOT).as_posix()}::{name}"
            seen.add(key)
            if key not in ALLOWED_LONG_FUNCTIONS:
                too_long[key] = length
    assert not too_long, (f"functions over {MAX_FUNCTION_LINES} lines: split them, or put '{MARK} <why>' on the "
                          f"line above the def: {too_long}")
    assert not ALLOWED_LONG_FUNCTIONS - seen, f"no longer long, drop from the allow-list: {ALLOWED_LONG_FUNCTIONS - seen}"


@pytest.mark.parametrize("marked, expected", [(False, {"f": 61}), (True, {})])
def test_the_check_counts_lines_and_honours_the_comment(tmp_path, marked, expected):
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    mark = "# one piece: a table of cases\n" if marked else ""
    path = tmp_path / "m.py"
    path.write_text(f"import functools\n\n\n{mark}@functools.cache\ndef f():\n{body}\n\ndef g():\n    return 1\n")
    assert long_functions(path) == expected
