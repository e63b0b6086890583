"""The ``cachekit`` command: run the demo, inspect, purge and benchmark caches.

Exit codes: 0 success, 1 the operation found nothing (``get`` of a missing
key) or was declined, 2 bad usage or configuration, 3 the server could not be
reached or answered with an error. Errors are one line on stderr, never a
traceback.

Each subcommand lives in its own module of :mod:`cachekit.ops`, whose
``register(command)`` adds it; :data:`COMMANDS` is their order in ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from collections.abc import Sequence
from typing import NoReturn

from cachekit import __version__
from cachekit.exceptions import BackendError
from cachekit.exceptions import CacheKitError
from cachekit.exceptions import ConfigurationError
from cachekit.ops import bench
from cachekit.ops import check
from cachekit.ops import clear
from cachekit.ops import demo
from cachekit.ops import keys
from cachekit.ops import ping
from cachekit.ops import purge
from cachekit.ops import stats
from cachekit.ops.common import EXIT_NOT_FOUND
from cachekit.ops.common import EXIT_OK
from cachekit.ops.common import EXIT_UNAVAILABLE
from cachekit.ops.common import EXIT_USAGE
from cachekit.ops.common import CommandError
from cachekit.ops.common import Register

DESCRIPTION = "Run the cachekit demo; inspect, purge and benchmark caches."
EPILOG = (
    "Exit codes: 0 success, 1 nothing found or declined, 2 bad usage or configuration, "
    "3 server unreachable. Run 'cachekit COMMAND --help' for a command's options."
)

#: Each subcommand's ``register``, in the order ``cachekit --help`` lists them.
COMMANDS: tuple[Callable[[Register], None], ...] = (
    demo.register,
    ping.register,
    stats.register,
    clear.register,
    keys.register,
    purge.register,
    check.register,
    bench.register,
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (plus where to find help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the ``cachekit`` command."""
    parser = _Parser(prog="cachekit", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"cachekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, helptext: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + "."
        )
        made.set_defaults(func=func)
        return made

    for register in COMMANDS:
        register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"cachekit {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except ConfigurationError as exc:
        print(f"cachekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"cachekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except CacheKitError as exc:
        print(f"cachekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:
        return 130
    return code


__all__ = [
    "COMMANDS",
    "DESCRIPTION",
    "EPILOG",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CommandError",
    "build_parser",
    "main",
]
