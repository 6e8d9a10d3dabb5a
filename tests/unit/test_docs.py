"""The README and docs/ are where a newcomer learns the commands, settings and layout: each test
here fails when they drift from the code (no servers, no subprocesses)."""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import importlib
import importlib.util
import re
import time
import types
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from hospital_stream.cli import main
from hospital_stream.settings import documented_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "hospital_stream"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
SPAN = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")  # a code span may wrap onto the next line
COMMAND = re.compile(r"hospital-stream\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?")


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def code_blocks(page_text: str) -> list[str]:
    return FENCE.findall(page_text)


def prose(page_text: str) -> str:
    """The page without its fenced code blocks."""
    return FENCE.sub("", page_text)


def code_spans(page_text: str) -> list[str]:
    return [span.replace("\n", " ") for span in SPAN.findall(prose(page_text))]


def code(page_text: str) -> list[str]:
    """Every piece of code the page shows: its code blocks and its code spans."""
    return code_blocks(page_text) + code_spans(page_text)


def relative(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# --- settings ---------------------------------------------------------------------------------


def _gen_settings() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gen_settings", DOCS / "gen_settings.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_is_in_the_settings_page_with_its_default():
    rows = text(DOCS / "settings.md").splitlines()
    for name, default, _ in documented_settings():
        row = next((line for line in rows if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is missing from docs/settings.md"
        shown = f"`{default}`" if default else "(empty)"
        assert row.split(" | ")[1] == shown, row


def test_the_settings_page_is_what_gen_settings_writes_now():
    assert text(DOCS / "settings.md") == _gen_settings().render(), (
        "docs/settings.md is out of date: run python docs/gen_settings.py"
    )


def test_gen_settings_formats_a_row_like_the_table():
    render = _gen_settings().render
    page = render([("HOSPITAL_X", "", "a <prefix> or a|b"), ("HOSPITAL_Y", "7", "seven")])
    assert "| `HOSPITAL_X` | (empty) | a `<prefix>` or a\\|b |\n" in page
    assert "| `HOSPITAL_Y` | `7` | seven |\n" in page


# --- commands ---------------------------------------------------------------------------------


def shown_commands() -> set[tuple[str, Path, str, str | None]]:
    """(command line, page, command, subcommand) for every ``hospital-stream ...`` shown as code."""
    found = set()
    for page in PAGES:
        for piece in code(text(page)):
            for match in COMMAND.finditer(piece):
                found.add((match.group(0), page, match.group(1), match.group(2)))
    return found


def test_the_docs_show_commands():
    shown = {(command, sub) for _, _, command, sub in shown_commands()}
    assert ("run", None) in {(c, None) for c, _ in shown} and ("stack", "env") in shown


def test_every_command_the_docs_show_exists():
    for line, page, command, sub in sorted(shown_commands(), key=str):
        assert command in main.commands, f"{relative(page)} shows {line!r}: no command {command!r}"
        group = main.commands[command]
        if isinstance(group, click.Group):
            assert sub in group.commands, f"{relative(page)} shows {line!r}: no {command} {sub!r}"


def _mentions(page_text: str, words: str) -> bool:
    return re.search(rf"(`|hospital-stream ){re.escape(words)}\b", page_text) is not None


def test_every_command_and_subcommand_is_in_the_operations_page():
    operations = text(DOCS / "operations.md")
    for name, command in main.commands.items():
        assert _mentions(operations, name), f"docs/operations.md does not mention {name}"
        for sub in getattr(command, "commands", {}):
            assert _mentions(operations, f"{name} {sub}"), f"docs/operations.md lacks {name} {sub}"


# --- the package layout -----------------------------------------------------------------------


def layout_table() -> set[str]:
    """The paths in the first column of docs/architecture.md's "Package layout" table."""
    page = text(DOCS / "architecture.md")
    start = page.index("### Package layout")
    end = re.compile(r"^#", re.MULTILINE).search(page, start + 1)
    section = page[start : end.start() if end else len(page)]
    return {
        span
        for line in section.splitlines()
        if line.startswith("| `")
        for span in re.findall(r"`([^`]+)`", line.split(" | ")[0])
    }


def modules_on_disk() -> set[str]:
    """Every module of the package beside these tests, by its path under hospital_stream/."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }


def test_every_module_is_in_the_layout_table():
    missing = sorted(modules_on_disk() - layout_table())
    assert not missing, f"docs/architecture.md's package layout lacks {missing}"


def test_the_layout_table_names_only_modules_that_exist():
    gone = sorted(p for p in layout_table() if p.endswith(".py") and not (PACKAGE / p).is_file())
    gone += sorted(p for p in layout_table() if p.endswith("/") and not (PACKAGE / p).is_dir())
    assert not gone, f"docs/architecture.md's package layout names what is not there: {gone}"


# --- cited tests ------------------------------------------------------------------------------

CITED_FILE = re.compile(r"^(tests/[\w/.-]+)(?:::(\w+))?$")
CITED_NAME = re.compile(r"^(test_\w+)$")


def cited_tests() -> set[tuple[Path, str, str | None]]:
    """(page, file or None, test name or None) for each test the pages cite in a code span."""
    cited = set()
    for page in PAGES:
        for span in code_spans(text(page)):
            if m := CITED_FILE.match(span):
                cited.add((page, m.group(1), m.group(2)))
            elif m := CITED_NAME.match(span):
                cited.add((page, "", m.group(1)))
    return cited


def _is_skip(mark: ast.expr) -> bool:
    """A pytest.mark.skip, or a skipif whose condition is not about Chromium being installed."""
    call = mark.func if isinstance(mark, ast.Call) else mark
    name = ast.unparse(call)
    if name.endswith("mark.skip"):
        return True
    return name.endswith("mark.skipif") and "chromium" not in ast.unparse(mark).lower()


def _always_skipped(parametrize: ast.Call) -> bool:
    """Every case of a parametrize is a pytest.param marked skip (some cases still run: not)."""
    if len(parametrize.args) < 2 or not isinstance(parametrize.args[1], ast.List | ast.Tuple):
        return False
    cases = parametrize.args[1].elts

    def skipped(case: ast.expr) -> bool:
        if not (isinstance(case, ast.Call) and ast.unparse(case.func).endswith("param")):
            return False
        marks = [k.value for k in case.keywords if k.arg == "marks"]
        flat = [m for v in marks for m in (v.elts if isinstance(v, ast.List | ast.Tuple) else [v])]
        return any(_is_skip(m) for m in flat)

    return bool(cases) and all(skipped(case) for case in cases)


def _test_functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
            yield node


def _skip_reason(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    module_marks = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
    ]
    marks = [m for v in module_marks for m in (v.elts if isinstance(v, ast.List | ast.Tuple) else [v])]
    for mark in [*marks, *function.decorator_list]:
        if _is_skip(mark):
            return ast.unparse(mark)
        if (
            isinstance(mark, ast.Call)
            and ast.unparse(mark.func).endswith("parametrize")
            and _always_skipped(mark)
        ):
            return "every case of " + ast.unparse(mark.func)
    return None


def _all_tests() -> dict[str, list[tuple[str, str | None]]]:
    """test name -> [(file, why it is skipped or None)] over the whole tests tree."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in _test_functions(tree):
            found.setdefault(function.name, []).append((relative(path), _skip_reason(tree, function)))
    return found


def test_the_docs_cite_tests():
    assert any(name for _, _, name in cited_tests())


def test_every_cited_test_exists_and_is_not_skipped():
    tests = _all_tests()
    for page, file, name in sorted(cited_tests(), key=str):
        where = relative(page)
        if file:
            assert (ROOT / file).exists(), f"{where} cites {file}, which does not exist"
        if name is None:
            continue
        places = [(f, skip) for f, skip in tests.get(name, []) if not file or f == file]
        assert places, f"{where} cites {file + '::' if file else ''}{name}, which is not in the tests"
        running = [f for f, skip in places if skip is None]
        assert running, f"{where} cites {name}, which is skipped: {places}"


def test_the_skip_rules_are_right():
    tree = ast.parse(
        "import pytest\n"
        "@pytest.mark.skip(reason='x')\ndef test_a(): pass\n"
        "@pytest.mark.skipif(not CHROMIUM.exists(), reason='no chromium')\ndef test_b(): pass\n"
        "@pytest.mark.skipif(os.geteuid() != 0, reason='root')\ndef test_c(): pass\n"
        "@pytest.mark.parametrize('v', ['a', pytest.param('b', marks=pytest.mark.skip())])\n"
        "def test_d(v): pass\n"
        "@pytest.mark.parametrize('v', [pytest.param('b', marks=[pytest.mark.skip(reason='y')])])\n"
        "def test_e(v): pass\n"
    )
    reasons = {f.name: _skip_reason(tree, f) for f in _test_functions(tree)}
    assert reasons["test_b"] is None and reasons["test_d"] is None
    assert all(reasons[n] for n in ("test_a", "test_c", "test_e"))


# --- the README's shape and the links ---------------------------------------------------------


def test_the_two_commands_are_the_readmes_first_section():
    readme = text(README)
    sections = re.split(r"^## ", prose(readme), flags=re.MULTILINE)
    assert sections[1].startswith("The two commands\n"), "the first section is not 'The two commands'"
    first = readme[readme.index("## The two commands") :]
    first = first[: first.index("\n## ")]
    assert "make demo" in first and "make test" in first
    assert "Both do all set-up" in first


def test_the_readme_is_an_entrance_page():
    assert len(text(README).splitlines()) <= 260


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a page."""
    headings = re.findall(r"^#+ (.+)$", prose(text(page)), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_points_at_something_that_exists():
    for page in PAGES:
        for target in LINK.findall(prose(text(page))):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{relative(page)} links to {target}, which does not exist"
            if anchor and file.suffix == ".md":
                assert anchor in anchors(file), f"{relative(page)} links to {target}: no such heading"


# --- the progress line ------------------------------------------------------------------------


def _progress_module() -> types.ModuleType:
    """The module holding ``Progress``, the line ``run`` prints: the run supervisor."""
    return importlib.import_module("hospital_stream.devstack.supervisor")


def shape(line: str) -> str:
    """A line with its figures replaced by N, so a real line and an example compare."""
    return re.sub(r"\d(?:[\d,]*\d)?(?:\.\d+)?", "N", line.strip())


@pytest.fixture
def progress_lines(monkeypatch, capsys) -> list[str]:
    """A progress line and a summary line printed by the real ``Progress``, on a fake database."""
    module = _progress_module()
    progress_class = module.Progress
    stored = {"day": 11}

    class Connection:
        def execute(self, *args: object) -> Connection:
            return self

        def fetchone(self) -> tuple[int, int]:
            return (1_000_000, 1_204_000_000)

    @contextlib.contextmanager
    def connect(url: str, **kwargs: object) -> Iterator[Connection]:
        yield Connection()

    fake = types.SimpleNamespace(
        connect=connect,
        last_complete_day=lambda conn: stored["day"],
        table_row_counts=lambda conn: {"icd10_codes": 95, "wards": 45, "patients": 5_000_000},
    )
    monkeypatch.setattr(module, "db", fake)  # no plan is passed, so no simulated sample either
    settings = types.SimpleNamespace(
        start_date=dt.date(2020, 1, 1), database_url="postgresql://fake/hospital", schedule_days=864
    )
    progress = progress_class(settings, 0, 864)
    progress.tty, progress.planned_bytes, progress.started = False, 4.811e9, time.monotonic() - 6.15
    capsys.readouterr()
    progress.report()
    stored["day"] = 863
    progress.summary()
    return [line for line in capsys.readouterr().out.splitlines() if line]


def doc_lines(marker: str) -> list[tuple[Path, str]]:
    return [
        (page, line)
        for page in (README, DOCS / "operations.md")
        for block in code_blocks(text(page))
        for line in block.splitlines()
        if marker in line
    ]


def test_the_progress_line_shown_is_the_one_run_prints(progress_lines):
    real = next(line for line in progress_lines if "days stored" in line)
    shown = doc_lines("days stored")
    assert shown, "neither the README nor docs/operations.md shows a progress line"
    for page, line in shown:
        assert shape(line) == shape(real), f"{relative(page)} shows\n  {line}\nbut run prints\n  {real}"


def test_the_summary_line_shown_is_the_one_run_prints(progress_lines):
    real = next(line for line in progress_lines if line.startswith("stored day"))
    for page, line in doc_lines("; rows: "):
        head, _, rows = line.partition("; rows: ")
        real_head, _, _real_rows = real.partition("; rows: ")
        assert shape(head) == shape(real_head), f"{relative(page)} shows {line!r}, run prints {real!r}"
        assert re.fullmatch(r"(\w+ N, )*(\w+ N|\.\.\.)", shape(rows)), f"{relative(page)}: {line!r}"
