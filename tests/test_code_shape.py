"""No function in pipeline/ or models/ over 60 lines (tools/long_functions.py), but the ones still listed here."""

from __future__ import annotations

from pathlib import Path

from tests.tool_modules import load_tool

REPO = Path(__file__).resolve().parent.parent

# Functions still over the limit, in files another change owns; remove a name when its function is cut.
PENDING: set[str] = set()  # functions allowed over the limit while a cut is under way (none now)


def test_no_function_over_sixty_lines_but_the_pending_ones() -> None:
    found = load_tool("long_functions").long_functions(REPO)
    over = {f"{f.path}:{f.name}" for f in found}
    assert over - PENDING == set(), [str(f) for f in found if f"{f.path}:{f.name}" not in PENDING]


def test_checker_measures_def_to_last_line(tmp_path: Path) -> None:
    package = tmp_path / "models"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (package / "m.py").write_text(f"class C:\n    def long(self):\n{body.replace('    ', '        ')}\n\n"
                                  f"def short():\n    return 1\n")
    found = load_tool("long_functions").long_functions(tmp_path, ("models",), limit=60)
    assert [(f.name, f.length) for f in found] == [("C.long", 61)]
