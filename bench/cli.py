"""``python -m bench``: run every workload, print the table, write the results."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bench import report
from bench.run import DEFAULT_MARIADB_URL, run
from bench.sizes import SIZES

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, write ``latest.md``, ``latest.png`` and ``latest.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full (make bench) or tiny (the smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--mariadb-url", default=DEFAULT_MARIADB_URL,
                        help="W6 counts here too; 'none' to skip")
    parser.add_argument("--soak", type=float, metavar="SECONDS",
                        help="run only the soak (>= 600 for the real one): mixed load for "
                        "SECONDS, writing soak.md, soak.png and soak.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s",
                        stream=sys.stderr)
    if args.soak is not None:
        return _soak(args.soak, args.out)
    raw = run(SIZES[args.size], mariadb_url=None if args.mariadb_url == "none" else args.mariadb_url)
    found = report.rows(raw)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(raw, indent=1))
    report.chart(raw, args.out / "latest.png")
    command = "make bench" if args.size == "full" else f"python -m bench --size {args.size}"
    (args.out / "latest.md").write_text(report.markdown(raw, found, "latest.png", command))
    print(report.table(found))
    print(f"\nwritten: {args.out / 'latest.md'}, {args.out / 'latest.png'}")
    return 0


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

