"""Counts and failures of a JUnit XML report: ``python summary.py results.xml...``."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

for path in sys.argv[1:]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    lines = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome = {child.tag: child for child in case}
        bad = outcome.get("failure", outcome.get("error"))
        if bad is not None:
            counts["failed"] += 1
            message = " | ".join((bad.get("message") or "").strip().splitlines()[:2])
            lines.append(f"FAILED  {name}: {message[:240]}")
        elif "skipped" in outcome:
            counts["skipped"] += 1
            lines.append(f"SKIPPED {name}: {(outcome['skipped'].get('message') or '')[:160]}")
        else:
            counts["passed"] += 1
    total = sum(counts.values())
    print(f"{path}: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped of {total}")  # fmt: skip
    print("\n".join(lines))
