"""The mutation runner (``python -m tests.mutation``) finds the edits it should, and only those.

Running mutants forks pytest and takes minutes, so it stays on demand (docs/testing.md);
this checks the pure parts: which nodes are edited, what each edit does, the configuration.
"""

from __future__ import annotations

import ast
import shlex
import textwrap
from pathlib import Path

import pytest

from tests import mutation

SAMPLE = '''
"""A module docstring: never edited."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)
__all__ = ["rule"]


def rule(a: int, b: int = 3) -> bool:
    """A docstring: never edited."""
    if a < b and not a:
        return True
    logger.info("not a rule: %s", a)
    if a is None:
        raise ValueError(f"message {a}")
    try:
        a += 1
    except TypeError:
        return None
'''


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(mutation, "ROOT", tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "sample.py").write_text(textwrap.dedent(SAMPLE))
    return "pkg/sample.py"


def test_finds_the_issue_23_kinds_of_edit_and_nothing_else(sample: str) -> None:
    found = {(m.kind, m.description) for m in mutation.find_mutants(sample)}
    assert found == {
        ("const", "3 -> 4"),  # the default of b
        ("compare0", "Lt -> LtE"),
        ("boolop", "and -> or"),
        ("not", "drop not"),
        ("const", "True -> False"),
        ("drop", "statement -> pass"),  # return True, raise, a += 1, logger = ...
        ("compare0", "Is -> IsNot"),
        ("const", "1 -> 2"),
    }
    drops = [m for m in mutation.find_mutants(sample) if m.kind == "drop"]
    assert len(drops) == 4  # neither the docstrings, the log call, nor a return None at the end


def test_each_edit_does_what_it_says(sample: str) -> None:
    tree = ast.parse((mutation.ROOT / sample).read_text())
    edited = {
        m.description: ast.unparse(mutation._apply(tree, m))
        for m in mutation.find_mutants(sample)
        if m.kind != "drop" and m.description != "3 -> 4"
    }
    assert "if a <= b and (not a):" in edited["Lt -> LtE"]
    assert "if a < b or not a:" in edited["and -> or"]
    assert "if a < b and a:" in edited["drop not"]
    assert "return False" in edited["True -> False"]
    assert "if a is not None:" in edited["Is -> IsNot"]
    assert "a += 2" in edited["1 -> 2"]
    assert ast.unparse(tree) == ast.unparse(ast.parse((mutation.ROOT / sample).read_text()))  # untouched


def test_ids_are_stable_and_unique(sample: str) -> None:
    first = [m.id for m in mutation.find_mutants(sample)]
    assert len(set(first)) == len(first)
    assert first == [m.id for m in mutation.find_mutants(sample)]
    assert all(i.startswith("pkg/sample.py::rule::") or "::<module>::" in i for i in first)


def test_mutated_module_compiles_with_its_line_numbers(sample: str) -> None:
    mutant = next(m for m in mutation.find_mutants(sample) if m.kind == "boolop")
    code = mutation.mutated_code(mutant)
    namespace: dict[str, object] = {"__name__": "pkg.sample"}
    exec(code, namespace)
    rule = namespace["rule"]
    assert callable(rule)
    assert rule(0, 1) is True
    assert rule(2, 3) is True  # with "or" the first half alone is enough
    assert mutation.module_name(sample) == "pkg.sample"


def test_function_filter_with_except_scope(sample: str) -> None:
    target = mutation.Target("t", [sample], [], functions=["rule:except"])
    selected = [m for m in mutation.find_mutants(sample) if mutation._selected(target, m)]
    assert selected == []  # the only statement in the except clause is a final return None
    everything = mutation.Target("t", [sample], [], functions=["rule"])
    assert all(mutation._selected(everything, m) for m in mutation.find_mutants(sample) if "::rule::" in m.id)


def test_configured_targets_name_existing_files() -> None:
    targets = mutation.load_targets()
    assert {"merge", "cookie", "locmem", "session-rules", "failure-policy", "http"} <= set(targets)
    for target in targets.values():
        for path in target.paths:
            assert (mutation.ROOT / path).is_file(), path
        for arg in target.tests:
            if arg.startswith("tests/"):
                assert (mutation.ROOT / arg.split("::")[0]).exists(), arg
        assert shlex.join(target.tests)


def test_equivalent_entries_have_reasons() -> None:
    for mutant_id, why in mutation.load_equivalent().items():
        assert mutant_id.count("::") == 3, mutant_id
        assert len(why) > 10, mutant_id
