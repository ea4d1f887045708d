"""``python -m bench.stress`` (``make stress``): the reliability suite, one line of counts per script.

Each script starts its own server (``python -m app``) with the settings it needs and prints its
counts and PASS/FAIL; the exit code is 1 if any failed. ``--quick`` runs each at a small size
(what ``tests/app/test_stress.py`` runs in CI). Run one alone: ``python -m bench.stress.fuzz``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench.stress import fuzz, isolation, memory, reload, sigterm, slow_clients

RAW = argparse.RawDescriptionHelpFormatter
FULL: dict[str, tuple[Callable[[list[str]], bool], list[str]]] = {
    "fuzz": (fuzz.main, []),
    "isolation": (isolation.main, []),
    "reload": (reload.main, []),
    "slow_clients": (slow_clients.main, []),
    "sigterm": (sigterm.main, []),
    "memory": (memory.main, []),
}
QUICK: dict[str, list[str]] = {
    "fuzz": ["--requests", "300", "--examples", "10"],
    "isolation": ["--requests", "400", "--concurrency", "16"],
    "reload": ["--cycles", "3", "--concurrency", "8"],
    "slow_clients": ["--idle", "30", "--headers", "10", "--bodies", "10"],
    "sigterm": ["--clients", "8", "--before", "1"],
    "memory": ["--concurrency", "3", "--body-mib", "4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--quick", action="store_true", help="small sizes (the CI version)")
    parser.add_argument("--only", nargs="*", choices=sorted(FULL), help="run only these")
    args = parser.parse_args()
    failed = []
    for name, (run, argv) in FULL.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        ok = run(QUICK[name] if args.quick else argv)
        print(f"  ({name}: {time.perf_counter() - started:.0f} s)", flush=True)
        if not ok:
            failed.append(name)
    print(f"stress: {'FAILED: ' + ', '.join(failed) if failed else 'all passed'}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
