"""Summarise a scripts/reliability.sh run: one row per scenario, as RELIABILITY.md quotes them.

    python scripts/reliability_summary.py RESULTS_DIR SCENARIO...

Reads the JUnit reports and outputs the script left in RESULTS_DIR, prints a table and
writes summary.md and summary.json next to them.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# What the long tests print about their runs, kept as the scenario's notes.
NOTES = re.compile(
    r"^(after \d+ cycles|restart under \d+ pods|\d+ clients killed|\d+ fuzzed).*", re.MULTILINE
)


def _counts(xml: Path) -> dict[str, float]:
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None, xml
    return {k: float(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped", "time")}


def scenario(out: Path, name: str) -> dict[str, object]:
    absent = out / f"{name}.absent"
    if absent.exists():
        return {"scenario": name, "command": f"pytest {absent.read_text().strip()}", "status": "absent"}
    env = (out / f"{name}.env").read_text().strip() if (out / f"{name}.env").exists() else ""
    files = (out / f"{name}.files").read_text().split() if (out / f"{name}.files").exists() else []
    reports = sorted(out.glob(f"{name}-*.xml"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    runs = [_counts(x) for x in reports]
    passed_runs = sum(
        1 for r in runs if r["failures"] == 0 and r["errors"] == 0 and r["tests"] > r["skipped"]
    )
    notes = []
    for log in sorted(out.glob(f"{name}-*.log")):
        notes += [m.group(0).strip() for m in NOTES.finditer(log.read_text(errors="replace"))]
    row: dict[str, object] = {
        "scenario": name,
        "command": " ".join(filter(None, [env, "pytest", *files])),
        "status": "passed" if runs and passed_runs == len(runs) else "FAILED",
        "runs": len(runs),
        "runs_passed": passed_runs,
        "tests": int(sum(r["tests"] for r in runs)),
        "failed": int(sum(r["failures"] + r["errors"] for r in runs)),
        "skipped": int(sum(r["skipped"] for r in runs)),
        "seconds": round(sum(r["time"] for r in runs)),
        "notes": notes,
    }
    churn = out / "churn.json"
    if name == "churn" and churn.exists():
        row["churn"] = json.loads(churn.read_text())
    return row


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| scenario | command | runs passed | tests (failed, skipped) | time | notes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] == "absent":
            lines.append(f"| {r['scenario']} | `{r['command']}` | absent | — | — | |")
            continue
        notes = "; ".join(str(n) for n in r["notes"])  # type: ignore[union-attr]
        lines.append(
            f"| {r['scenario']} | `{r['command']}` | {r['runs_passed']}/{r['runs']} "
            f"| {r['tests']} ({r['failed']}, {r['skipped']}) | {r['seconds']} s | {notes} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    rows = [scenario(out, name) for name in argv[2:]]
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows)
    (out / "summary.md").write_text(table)
    print(f"\nreliability run in {out}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
