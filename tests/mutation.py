"""Mutation testing on demand: ``python -m tests.mutation <target> [...]``.

Each target (``[tool.cachekit.mutation.targets.*]`` in ``pyproject.toml``) names
source files and a small, fast test selection. The runner makes one small edit
at a time to a file's syntax tree -- the edits issue 23 names: flip a
comparison, drop a statement, swap ``and``/``or``, drop a ``not``, change a
constant -- runs the selection against it, and reports the edits no test
noticed::

    $ .venv/bin/python -m tests.mutation merge
    merge: killed 95 / survived 2 / total 97 (equivalent excluded 4) -> 97.9% caught

Why not mutmut: mutmut 3 copies the tree into ``mutants/`` and runs one test
selection configured for the whole project, which clashes with three packages,
server fixtures and a checkout shared by several people. This runner never
writes a source file: a forked child imports the mutated module from memory
(a :mod:`sys.meta_path` finder) and runs :func:`pytest.main` on the target's
selection, so a mutant costs one fork plus the selected tests, not an
interpreter start.

Edits a test cannot tell apart from the original ("equivalent mutants") are
listed with the reason in ``tests/mutation_equivalent.toml`` by mutant id and
left out of the score. Never run in CI: it is for reading survivors.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import importlib.abc
import importlib.machinery
import importlib.util
import os
import random
import select
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from types import CodeType
from types import ModuleType

import tomllib

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT_FILE = ROOT / "tests" / "mutation_equivalent.toml"

_COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_DROPPABLE = (
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Expr,
    ast.Return,
    ast.Raise,
    ast.Delete,
    ast.Break,
    ast.Continue,
)
_LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})


@dataclass(frozen=True)
class Mutant:
    """One small edit of one source file."""

    #: Stable across unrelated edits: file, enclosing function, kind, original code, occurrence.
    id: str
    path: str
    lineno: int
    kind: str
    #: What the edit does, for the report.
    description: str
    #: Position of the edited node in :func:`ast.walk` order, and which variant.
    node_index: int
    #: Whether the node sits in an ``except`` clause (a failure path).
    in_handler: bool = False


@dataclass
class Target:
    """A set of source files and the tests that should notice every edit of them."""

    name: str
    paths: list[str]
    tests: list[str]
    #: Only mutate inside these functions or classes (qualified name prefixes; with a
    #: ``:except`` suffix, only their ``except`` clauses); everything when empty.
    functions: list[str] = field(default_factory=list)
    sample: int | None = None
    timeout: float | None = None


@dataclass
class Result:
    """Outcome counts for one target."""

    killed: list[Mutant] = field(default_factory=list)
    survived: list[Mutant] = field(default_factory=list)
    timeouts: list[Mutant] = field(default_factory=list)
    equivalent: list[Mutant] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return len(self.killed) + len(self.survived) + len(self.timeouts)

    @property
    def caught(self) -> float:
        return 100.0 * (len(self.killed) + len(self.timeouts)) / self.scored if self.scored else 100.0


# -- finding mutants --------------------------------------------------------


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_log_call(node: ast.AST) -> bool:
    """``logger.info(...)`` and friends: dropping or rewording one changes no behaviour."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "log":
        return True  # log = logger.warning if ... else logger.debug; log(...)
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _LOG_METHODS
        and isinstance(node.func.value, ast.Name)
        and "log" in node.func.value.id.lower()
    )


def _tail_returns(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """``return``/``return None`` statements after which control leaves the function anyway."""
    if not body:
        return
    last = body[-1]
    if isinstance(last, ast.Return):
        if last.value is None or (isinstance(last.value, ast.Constant) and last.value.value is None):
            yield last
    elif isinstance(last, ast.If):
        yield from _tail_returns(last.body)
        yield from _tail_returns(last.orelse)
    elif isinstance(last, ast.Try) and not last.finalbody:
        yield from _tail_returns(last.orelse or last.body)
        for handler in last.handlers:
            yield from _tail_returns(handler.body)


def _never_mutated(node: ast.AST) -> bool:
    """Imports, ``if TYPE_CHECKING:`` blocks, ``__all__`` and log calls."""
    if isinstance(node, (ast.Import, ast.ImportFrom)) or _is_log_call(node):
        return True
    if isinstance(node, ast.Expr) and _is_log_call(node.value):
        return True
    if isinstance(node, ast.If):
        return "TYPE_CHECKING" in ast.unparse(node.test)
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    return False


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, imports, TYPE_CHECKING,
    ``__all__``, log calls and exception messages (their wording is not a rule)."""
    skipped: set[int] = set()

    def skip(node: ast.AST | None) -> None:
        if node is not None:
            skipped.update(id(child) for child in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # Dropping a ``return None`` the function would fall off the end after anyway.
            skipped.update(id(stmt) for stmt in _tail_returns(node.body))
        if (
            isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and isinstance(body, list)
            and _is_docstring(body[0])
        ):
            skip(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip(node.returns)
            for parameter in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
                skip(parameter.annotation)
            for extra in (node.args.vararg, node.args.kwarg):
                if extra is not None:
                    skip(extra.annotation)
        elif isinstance(node, ast.AnnAssign):
            skip(node.annotation)
        elif _never_mutated(node):
            skip(node)
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            # The raise itself stays mutable (dropping it is a real edit); its message does not.
            for arg in (*node.exc.args, *(k.value for k in node.exc.keywords)):
                if isinstance(arg, (ast.Constant, ast.JoinedStr)):
                    skip(arg)
        elif isinstance(node, ast.JoinedStr):
            # f-string pieces: text, not rules (the expressions inside are still mutated).
            for value in node.values:
                if isinstance(value, ast.Constant):
                    skip(value)
    return skipped


def _qualnames(tree: ast.Module) -> dict[int, str]:
    names: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}" if prefix else child.name
            names[id(child)] = name or "<module>"
            visit(child, name)

    visit(tree, "")
    return names


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).splitlines()[0] if not isinstance(node, ast.cmpop) else type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _variants(node: ast.AST, parent_body: bool) -> Iterator[tuple[str, str]]:
    """Yield ``(kind, description)`` for each edit of ``node`` (applied by :func:`_apply`)."""
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            swap = _COMPARE_SWAP.get(type(op))
            if swap is not None:
                yield f"compare{index}", f"{type(op).__name__} -> {swap.__name__}"
    elif isinstance(node, ast.BoolOp):
        yield "boolop", "and -> or" if isinstance(node.op, ast.And) else "or -> and"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not", "drop not"
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield "const", f"{value} -> {not value}"
        elif isinstance(value, int):
            yield "const", f"{value} -> {value + 1}"
        elif isinstance(value, float):
            yield "const", f"{value} -> {value + 1}" if value else "0.0 -> 1.0"
        elif isinstance(value, str) and value:
            yield "const", f"{value!r} -> 'XX' + ... + 'XX'"
        elif isinstance(value, str):
            yield "const", "'' -> 'XX'"
    if (
        parent_body
        and isinstance(node, _DROPPABLE)
        and not (isinstance(node, ast.AnnAssign) and node.value is None)
    ):
        yield "drop", "statement -> pass"


def find_mutants(path: str) -> list[Mutant]:
    """Every edit the runner makes to ``path`` (relative to the project root)."""
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    skipped = _skipped_nodes(tree)
    names = _qualnames(tree)
    in_body: set[int] = set()
    for node in ast.walk(tree):
        for field_name in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field_name, None)
            if isinstance(stmts, list):
                in_body.update(id(s) for s in stmts if isinstance(s, ast.stmt))
    handlers: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            handlers.update(id(child) for child in ast.walk(node))
    mutants: list[Mutant] = []
    seen: Counter[str] = Counter()
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skipped:
            continue
        for kind, description in _variants(node, id(node) in in_body):
            base = f"{path}::{names.get(id(node), '<module>')}::{kind}::{_short(node)}"
            mutant_id = f"{base}@{seen[base]}"
            seen[base] += 1
            lineno = getattr(node, "lineno", 0)
            mutants.append(Mutant(mutant_id, path, lineno, kind, description, index, id(node) in handlers))
    return mutants


def _apply(tree: ast.Module, mutant: Mutant) -> ast.Module:
    """Return a copy of ``tree`` with ``mutant``'s edit made."""
    tree = copy.deepcopy(tree)
    parents: dict[int, tuple[ast.AST, str, int | None]] = {}
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if isinstance(value, list):
                for position, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        parents[id(item)] = (parent, name, position)
            elif isinstance(value, ast.AST):
                parents[id(value)] = (parent, name, None)
    node = next(n for i, n in enumerate(ast.walk(tree)) if i == mutant.node_index)
    replacement: ast.AST
    if mutant.kind.startswith("compare"):
        assert isinstance(node, ast.Compare)
        op_index = int(mutant.kind.removeprefix("compare"))
        node.ops[op_index] = _COMPARE_SWAP[type(node.ops[op_index])]()
        return tree
    if mutant.kind == "boolop":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return tree
    if mutant.kind == "not":
        assert isinstance(node, ast.UnaryOp)
        replacement = node.operand
    elif mutant.kind == "const":
        assert isinstance(node, ast.Constant)
        value = node.value
        new: str | int | float | bool
        if isinstance(value, bool):
            new = not value
        elif isinstance(value, (int, float)):
            new = value + 1
        else:
            assert isinstance(value, str)
            new = f"XX{value}XX" if value else "XX"
        replacement = ast.Constant(new)
    else:
        replacement = ast.Pass()
    parent, field_name, slot = parents[id(node)]
    ast.copy_location(replacement, node)
    if slot is None:
        setattr(parent, field_name, replacement)
    else:
        getattr(parent, field_name)[slot] = replacement
    return tree


def module_name(path: str) -> str:
    """``sessions/stores/_merge.py`` -> ``sessions.stores._merge``."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def mutated_code(mutant: Mutant) -> CodeType:
    """Compile the mutated module (line numbers kept, so tracebacks point at the edit)."""
    tree = ast.parse((ROOT / mutant.path).read_text(), filename=mutant.path)
    mutated = ast.fix_missing_locations(_apply(tree, mutant))
    return compile(mutated, str(ROOT / mutant.path), "exec")


# -- running ----------------------------------------------------------------


class _MutantLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves one module from a mutated code object instead of its file."""

    def __init__(self, name: str, code: CodeType) -> None:
        self.name = name
        self.code = code

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=self.code.co_filename)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__file__ = self.code.co_filename
        exec(self.code, module.__dict__)


def _pytest_args(target: Target) -> list[str]:
    return [
        *target.tests,
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "--no-header",
        "-W",
        "ignore::pytest.PytestUnraisableExceptionWarning",
    ]


def _run_child(target: Target, mutant: Mutant | None) -> int:
    """In a forked child: install the mutant (if any), run the selection, return pytest's code."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    if not os.environ.get("MUTATION_VERBOSE"):
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    os.environ.pop("CI", None)  # a skip is not a kill, nor a failure here
    import pytest

    if mutant is not None:
        sys.meta_path.insert(0, _MutantLoader(module_name(mutant.path), mutated_code(mutant)))
    return int(pytest.main(_pytest_args(target)))


def run_one(target: Target, mutant: Mutant | None, timeout: float) -> str:
    """Run the selection in a forked child; return ``"killed"``, ``"survived"`` or ``"timeout"``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        code = 3
        try:
            os.setpgid(0, 0)
            code = _run_child(target, mutant)
        except BaseException:
            if os.environ.get("MUTATION_VERBOSE"):
                import traceback

                traceback.print_exc()
            code = 3
        finally:
            os.write(write_end, bytes([code & 0xFF]))
            os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], timeout)
    code_bytes = os.read(read_end, 1) if ready else b""
    os.close(read_end)
    if not code_bytes:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        os.waitpid(pid, 0)
        return "timeout"
    os.waitpid(pid, 0)
    # 0: all passed; 5: nothing collected (an edit that empties the selection is still noticed
    # by the unmutated baseline check, so treat it as killed); anything else: a test failed.
    return "survived" if code_bytes[0] == 0 else "killed"


def load_targets() -> dict[str, Target]:
    """The targets configured in ``pyproject.toml``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    raw = config["tool"]["cachekit"]["mutation"]["targets"]
    return {
        name: Target(
            name,
            list(t["paths"]),
            list(t["tests"]),
            list(t.get("functions", [])),
            t.get("sample"),
            t.get("timeout"),
        )
        for name, t in raw.items()
    }


def load_equivalent() -> dict[str, str]:
    """Mutant ids marked equivalent, with the reason."""
    if not EQUIVALENT_FILE.exists():
        return {}
    entries = tomllib.loads(EQUIVALENT_FILE.read_text()).get("equivalent", [])
    return {entry["id"]: entry["why"] for entry in entries}


def _preimport() -> None:
    """Import pytest and third-party libraries once in the parent, so each fork starts warm.

    Nothing of cachekit, sessions or middleware is imported here: the child must
    import the mutated module fresh.
    """
    import pytest  # noqa: F401

    # Not pytest plugins (hypothesis, fakeredis): pytest must import those itself to rewrite them.
    for name in ("itsdangerous", "redis", "pymemcache", "json", "email.utils", "zlib", "hashlib"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for loaded in list(sys.modules):
        if loaded.split(".")[0] in {"cachekit", "sessions", "middleware"}:
            raise RuntimeError(f"{loaded} imported before forking; the mutant would not take effect")


def _selected(target: Target, mutant: Mutant) -> bool:
    if not target.functions:
        return True
    qualname = mutant.id.split("::")[1]
    for entry in target.functions:
        name, _, scope = entry.partition(":")
        inside = qualname == name or qualname.startswith(name + ".")
        if inside and (scope != "except" or mutant.in_handler):
            return True
    return False


def run_target(target: Target, *, sample: int | None, seed: int, only: str | None, show: bool) -> Result:
    """Run every (or a sample of the) mutant(s) of ``target`` and print the survivors."""
    equivalent = load_equivalent()
    mutants = [m for path in target.paths for m in find_mutants(path) if _selected(target, m)]
    if only:
        mutants = [m for m in mutants if only in m.id]
    result = Result()
    result.equivalent = [m for m in mutants if m.id in equivalent]
    known = {m.id for m in mutants}
    for stale in sorted(i for i in equivalent if i.split("::")[0] in target.paths and i not in known):
        if not only:
            print(f"  note: equivalent entry matches no mutant any more (code changed?): {stale}")
    todo = [m for m in mutants if m.id not in equivalent]
    limit = sample if sample is not None else target.sample
    if limit is not None and limit < len(todo):
        todo = random.Random(seed).sample(todo, limit)
    todo.sort(key=lambda m: (m.path, m.lineno))
    started = time.monotonic()
    if run_one(target, None, 600) != "survived":
        raise SystemExit(f"{target.name}: the test selection fails without any mutant; fix that first")
    baseline = time.monotonic() - started
    timeout = target.timeout or max(15.0, 5 * baseline)
    print(
        f"{target.name}: {len(todo)} mutants to run ({len(mutants)} found, {len(result.equivalent)} "
        f"equivalent{', sampled' if len(todo) < len(mutants) - len(result.equivalent) else ''}); "
        f"baseline {baseline:.1f}s",
        flush=True,
    )
    for number, mutant in enumerate(todo, 1):
        outcome = run_one(target, mutant, timeout)
        getattr(result, outcome if outcome != "timeout" else "timeouts").append(mutant)
        if outcome == "survived":
            print(f"  SURVIVED {mutant.path}:{mutant.lineno} {mutant.description}\n           {mutant.id}")
        elif show:
            print(f"  {outcome} {mutant.path}:{mutant.lineno} {mutant.description}")
        if number % 25 == 0:
            print(f"  ... {number}/{len(todo)}", flush=True)
    if run_one(target, None, 600) != "survived":
        # The tree changed under the run (someone else's edit broke an import): the kills
        # since then mean nothing. Run again on a stable copy (docs/testing.md).
        raise SystemExit(f"{target.name}: the unmutated selection fails after the run; results are void")
    caught = len(result.killed) + len(result.timeouts)
    print(
        f"{target.name}: killed {caught} / survived {len(result.survived)} / total {result.scored} "
        f"(equivalent excluded {len(result.equivalent)}, timeouts "
        f"{len(result.timeouts)}) -> {result.caught:.1f}% caught in {time.monotonic() - started:.0f}s",
        flush=True,
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m tests.mutation [--list] [--sample N] target ...``."""
    targets = load_targets()
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"one or more of: {', '.join(targets)} (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants without running them")
    parser.add_argument("--sample", type=int, help="run only N mutants per target, picked at random")
    parser.add_argument("--seed", type=int, default=23, help="seed for --sample")
    parser.add_argument("--only", help="run only mutants whose id contains this text")
    parser.add_argument("--show", action="store_true", help="print killed mutants too")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(targets)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(targets)}")
    chosen = [targets[name] for name in args.targets or targets]
    if args.list:
        equivalent = load_equivalent()
        for target in chosen:
            for path in target.paths:
                found = [m for m in find_mutants(path) if _selected(target, m)]
                for mutant in sorted(found, key=lambda m: m.lineno):
                    mark = "  (equivalent)" if mutant.id in equivalent else ""
                    print(f"{mutant.path}:{mutant.lineno} {mutant.description}  {mutant.id}{mark}")
        return 0
    os.chdir(ROOT)
    _preimport()
    results = [
        run_target(target, sample=args.sample, seed=args.seed, only=args.only, show=args.show)
        for target in chosen
    ]
    if len(results) > 1:
        print("\n| target | killed | survived | equivalent | caught |\n|---|---|---|---|---|")
        for target, result in zip(chosen, results, strict=True):
            print(
                f"| {target.name} | {len(result.killed) + len(result.timeouts)} | {len(result.survived)} "
                f"| {len(result.equivalent)} | {result.caught:.1f}% |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
