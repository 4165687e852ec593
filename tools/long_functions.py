"""List the functions of `pipeline/` and `models/` longer than a limit (def line to last line, decorators excluded).

Usage: `python tools/long_functions.py [--limit 60] [ROOT ...]`; prints `path:line name length`, longest first,
and exits 1 when any function passes the limit. `tests/test_code_shape.py` runs the same check.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOTS = ("pipeline", "models")
DEFAULT_LIMIT = 60


@dataclass(frozen=True)
class LongFunction:
    path: str
    line: int
    name: str
    length: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.name} {self.length}"


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.AST]]:
    found: list[tuple[str, ast.AST]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            found.append((name, node))
            found.extend(_functions(node, f"{name}."))
        elif isinstance(node, ast.ClassDef):
            found.extend(_functions(node, f"{prefix}{node.name}."))
        else:
            found.extend(_functions(node, prefix))
    return found


def long_functions(repo: Path, roots: tuple[str, ...] = DEFAULT_ROOTS,
                   limit: int = DEFAULT_LIMIT) -> list[LongFunction]:
    """Every function under `roots` (relative to `repo`) whose def-to-last-line span passes `limit`."""
    result: list[LongFunction] = []
    for root in roots:
        for path in sorted((repo / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for name, node in _functions(tree):
                length = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
                if length > limit:
                    relative = path.relative_to(repo).as_posix()
                    result.append(LongFunction(relative, node.lineno, name, length))  # type: ignore[attr-defined]
    return sorted(result, key=lambda f: (-f.length, f.path, f.line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", default=list(DEFAULT_ROOTS))
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parent.parent
    found = long_functions(repo, tuple(args.roots), args.limit)
    for function in found:
        print(function)
    print(f"{len(found)} function(s) over {args.limit} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
