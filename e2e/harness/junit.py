"""Reading the JUnit reports of a ginkgo suite (critest, e2e_node.test)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SuiteResult:
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # spec name -> the first lines of its failure message
    failed: dict[str, str] = field(default_factory=dict)

    def totals(self) -> str:
        return f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"


SUITE_NODES = (
    "[SynchronizedBeforeSuite]",
    "[SynchronizedAfterSuite]",
    "[BeforeSuite]",
    "[AfterSuite]",
    "[ReportBeforeSuite]",
    "[ReportAfterSuite]",
)


def read_reports(report_dir: Path, message_lines: int = 6) -> SuiteResult:
    result = SuiteResult()
    for xml in sorted(report_dir.glob("*.xml")):
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = case.get("name", "")
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            # The suite's setup and teardown count only when they fail.
            if name.startswith(SUITE_NODES) and failure is None:
                continue
            if case.find("skipped") is not None:
                result.skipped.append(name)
            elif failure is not None:
                message = (failure.get("message") or failure.text or "").strip()
                result.failed[name] = "\n".join(message.splitlines()[:message_lines])
            else:
                result.passed.append(name)
    return result
