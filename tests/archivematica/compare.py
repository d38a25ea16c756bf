"""Compare two JUnit reports of Archivematica's tests: stock, then amworker.

Prints the counts and every test that passed with stock but not with
amworker; exits 1 if there is any, if either run collected nothing, or if
the stand-in report shows the amworker run did not use amworker's modules.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET


def outcomes(path: str) -> dict[str, str]:
    """Test id -> passed / failed / error / skipped."""
    found: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            found[test_id] = "failed"
        elif "error" in kinds:
            found[test_id] = "error"
        elif "skipped" in kinds:
            found[test_id] = "skipped"
        else:
            found[test_id] = "passed"
    return found


#: The job-API modules the amworker run must have used.
EXPECTED_MODULES = {"client.job": "worker.client.job", "custom_handlers": "worker.utils.custom_handlers"}


def main(stock_path: str, amworker_path: str, modules_path: str) -> int:
    with open(modules_path, encoding="utf-8") as handle:
        used = json.load(handle)
    print(f"amworker run used: {used}")
    if used != EXPECTED_MODULES:
        print(f"the stand-in did not take: expected {EXPECTED_MODULES}")
        return 1
    stock, ours = outcomes(stock_path), outcomes(amworker_path)
    for name, results in (("stock", stock), ("amworker", ours)):
        passed = sum(1 for r in results.values() if r == "passed")
        print(f"{name}: {passed} passed of {len(results)} collected")
    worse = sorted(t for t, r in stock.items() if r == "passed" and ours.get(t) != "passed")
    better = sorted(t for t, r in ours.items() if r == "passed" and stock.get(t) != "passed")
    for test_id in worse:
        print(f"REGRESSION (passes with stock, {ours.get(test_id, 'missing')} with amworker): {test_id}")
    for test_id in better:
        print(f"passes only with amworker: {test_id}")
    if not stock or not ours:
        print("a run collected no tests")
        return 1
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
