"""The test suite's time per file, from a JUnit XML report.

    python -m pytest -q --junitxml=/tmp/junit.xml && python benchmarks/test_durations.py /tmp/junit.xml

Writes ``benchmarks/results/test_durations.json`` (tests and seconds per file, the
suite's wall time; the machine and date of the run), which the contributor docs show
and ``tests/conftest.py`` reads to start the longest files first. Under pytest-xdist
a file's seconds are its tests' own times on a worker, and they add up to more than
the wall time.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import sys
import time
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_file(classname: str) -> str:
    """The file of a JUnit ``classname`` (``tests.test_x`` or ``tests.test_x.SomeClass``)."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end]) + ".py"
        if (ROOT / path).exists():
            return path
    return "/".join(parts) + ".py"


def main(report: str, command: str) -> None:
    files: dict[str, dict] = {}
    for case in ET.parse(report).iter("testcase"):
        name = test_file(case.get("classname", ""))
        entry = files.setdefault(name, {"tests": 0, "seconds": 0.0})
        entry["tests"] += 1
        entry["seconds"] += float(case.get("time", 0))
    suites = [float(s.get("time", 0)) for s in ET.parse(report).iter("testsuite")]
    out = ROOT / "benchmarks" / "results" / "test_durations.json"
    out.write_text(json.dumps({
        "command": command,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": time.strftime("%Y-%m-%d"), "wall_seconds": max(suites, default=0.0),
        "files": files}, indent=1))
    total = sum(f["seconds"] for f in files.values())
    print(f"{len(files)} files, {sum(f['tests'] for f in files.values())} tests, "
          f"{total:.0f} s of tests in {max(suites, default=0.0):.0f} s of wall time")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Time per test file from a JUnit report.")
    parser.add_argument("report", help="the JUnit XML of a full run")
    parser.add_argument("--run-command", default="python -m pytest -q --junitxml=REPORT",
                        help="how the report was made (recorded with the results)")
    args = parser.parse_args()
    command = args.run_command
    if "benchmarks/test_durations.py" not in command:
        command += " && python benchmarks/test_durations.py REPORT"
    main(args.report, command)
