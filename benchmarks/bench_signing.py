"""What signed values cost: pickle alone against pickle plus an HMAC-SHA256 tag.

Run from the repository root::

    python -m benchmarks.bench_signing

Times, in one run with the order rotated each round, ``dumps`` and ``loads`` of a
50-field dict, a 10 KiB and a 100 KiB bytes value through :class:`PickleSerializer`
and through :class:`SignedSerializer` around it (reading a value signed with the
current key, and with the older of two rotated keys, which costs a second HMAC),
and ``Cache.set``/``get`` of a nested dict (a value local memory pickles) on
``locmem://`` with and without ``signing_keys``. The last column is the signed
time divided by the row's: the signed row is 1.00, the unsigned rows say how many
times slower signing makes each operation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from benchmarks._harness import Result
from benchmarks._harness import measure
from benchmarks._harness import report
from cachekit import from_url
from cachekit.serializers import PickleSerializer
from cachekit.signing import SignedSerializer

NEW_KEY = "n" * 32
OLD_KEY = "o" * 32
VALUES: dict[str, Any] = {
    "50-field dict": {f"field{i}": i for i in range(50)},
    "10 KiB bytes": b"x" * 10_240,
    "100 KiB bytes": b"x" * 102_400,
}
NESTED = {"user": 42, "roles": ["admin", "staff"], "prefs": {"lang": "en", "tz": "UTC"}}


def _serializer_systems(value: Any) -> dict[str, dict[str, Callable[[], object]]]:
    plain = PickleSerializer()
    signed = SignedSerializer(PickleSerializer(), [NEW_KEY, OLD_KEY])
    old_signed = SignedSerializer(PickleSerializer(), OLD_KEY).dumps(value)
    plain_bytes, signed_bytes = plain.dumps(value), signed.dumps(value)
    return {
        "dumps": {"signed": lambda: signed.dumps(value), "pickle": lambda: plain.dumps(value)},
        "loads": {
            "signed": lambda: signed.loads(signed_bytes),
            "signed, old key": lambda: signed.loads(old_signed),
            "pickle": lambda: plain.loads(plain_bytes),
        },
    }


def _cache_systems() -> dict[str, dict[str, Callable[[], object]]]:
    plain = from_url("locmem://bench-signing-plain?key_prefix=bench")
    signed = from_url("locmem://bench-signing?key_prefix=bench", signing_keys=[NEW_KEY])
    plain.set("hit", NESTED, timeout=3600)
    signed.set("hit", NESTED, timeout=3600)
    return {
        "Cache.get hit": {"signed": lambda: signed.get("hit"), "pickle": lambda: plain.get("hit")},
        "Cache.set": {
            "signed": lambda: signed.set("w", NESTED, timeout=3600),
            "pickle": lambda: plain.set("w", NESTED, timeout=3600),
        },
    }


def run(number: int, rounds: int = 7) -> list[Result]:
    """Measure every operation; ``number`` calls per sample."""
    results: list[Result] = []
    for label, value in VALUES.items():
        for operation, systems in _serializer_systems(value).items():
            results += measure(f"{operation} ({label})", list(systems.items()), number=number, rounds=rounds)
    for operation, systems in _cache_systems().items():
        results += measure(operation, list(systems.items()), number=number, rounds=rounds)
    return results


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(report(run(number), "signed", "signing: time per operation, medians"))


if __name__ == "__main__":
    main()
