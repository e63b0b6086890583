"""Shared benchmark machinery: rotate the systems' order each round, report medians and ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Result:
    """The median time per operation of one system on one scenario."""

    scenario: str
    system: str
    seconds_per_op: float


def time_per_op(operation: Callable[[], object], number: int) -> float:
    """Run ``operation`` ``number`` times; return seconds per call."""
    start = time.perf_counter()
    for _ in range(number):
        operation()
    return (time.perf_counter() - start) / number


def measure(
    scenario: str,
    systems: Sequence[tuple[str, Callable[[], object]]],
    *,
    number: int,
    rounds: int = 7,
) -> list[Result]:
    """Time every system ``rounds`` times, rotating their order each round; keep medians."""
    samples: dict[str, list[float]] = {name: [] for name, _ in systems}
    for _name, operation in systems:  # warm up each once
        time_per_op(operation, max(number // 10, 1))
    for round_no in range(rounds):
        shift = round_no % len(systems)
        for name, operation in [*systems[shift:], *systems[:shift]]:
            samples[name].append(time_per_op(operation, number))
    return [Result(scenario, name, statistics.median(times)) for name, times in samples.items()]


def report(results: Sequence[Result], baseline: str, title: str) -> str:
    """Format a table of medians with each system's ratio to ``baseline`` (ours) and back."""
    lines = [f"## {title}", "", f"{'scenario':<28} {'system':<34} {'median':>10} {'ours / this':>12}"]
    scenarios: dict[str, list[Result]] = {}
    for result in results:
        scenarios.setdefault(result.scenario, []).append(result)
    for scenario, rows in scenarios.items():
        ours = next(r.seconds_per_op for r in rows if r.system == baseline)
        for row in rows:
            lines.append(
                f"{scenario:<28} {row.system:<34} {row.seconds_per_op * 1e6:>8.3f}µs "
                f"{ours / row.seconds_per_op:>11.2f}x"
            )
        lines.append("")
    return "\n".join(lines)
