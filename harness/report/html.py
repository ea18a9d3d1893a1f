"""The Allure HTML report: one self-contained index.html from an allure-results folder, making no outside request.

The tool is Allure Report 2 (the npm package allure-commandline, pinned below, run by Java): its
`generate --single-file` writes one page that opens from file:// and, with ALLURE_NO_ANALYTICS=true, embeds no
analytics script. Allure Report 3 (npm `allure`) was measured too: its single file renders from file:// but every
report embeds an analytics script fetched from an outside address, with no switch to leave it out.
`harness/run.sh` installs the pinned version into `.tools/allure` (reinstalled only when the pin changes).
Every page written is checked by harness.report.offline before it is kept.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from harness.report.offline import outside_references

ALLURE_VERSION = "2.46.1"  # harness/run.sh reads this line: the version it installs into .tools/allure
RESULTS, REPORT = "allure-results", "allure-report"
TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "allure"
BINARY = "node_modules/allure-commandline/dist/bin/allure"
TIMEOUT = 600.0  # seconds: 4000 results took well under a minute here


class ReportToolMissing(ConfigError):
    """The Allure command line (or the Java runtime it needs) is not installed: the report is skipped, saying how to get it."""


@dataclass(frozen=True)
class HtmlReport:
    """A written report: its page, size in bytes and the seconds the tool took."""

    page: Path
    size: int
    seconds: float


def find_allure() -> Path:
    """The Allure 2 command: $IPSEC_INTEROP_ALLURE, else .tools/allure (harness/run.sh installs it), else `allure` on
    PATH when it is version 2; ReportToolMissing saying how to install it otherwise."""
    named = os.environ.get("IPSEC_INTEROP_ALLURE")
    candidates = [Path(named)] if named else [TOOLS / BINARY]
    if not named and (on_path := shutil.which("allure")):
        candidates.append(Path(on_path))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
                raise ReportToolMissing("the Allure command line needs a Java runtime (Debian: default-jre-headless)")
            version = allure_version(c)
            if version.startswith("2."):
                return c
            if named:
                raise ReportToolMissing(f"{c} is Allure {version or '(no version)'}, not Allure 2: Allure 3 reports "
                                        "fetch an analytics script from an outside address")
    raise ReportToolMissing(f"Allure {ALLURE_VERSION} is not installed: `bash harness/run.sh interop` installs it, or "
                            f"`npm install --prefix {TOOLS} allure-commandline@{ALLURE_VERSION}` (needs Java)")


def allure_version(binary: Path) -> str:
    """What `allure --version` prints (its last line), or '' when it does not run."""
    try:
        p = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "ALLURE_NO_ANALYTICS": "true"})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [ln.strip() for ln in p.stdout.splitlines() if re.fullmatch(r"\d+\.\d+\.\d+\S*", ln.strip())]
    return lines[-1] if lines else ""


def generate(results: Path, out: Path, name: str = "ipsec-interop", allure: Path | None = None) -> HtmlReport:
    """Write out/index.html from the results folder: one self-contained page; ReportToolMissing without the tool,
    ConfigError when the results are missing, the tool fails, or the page would make an outside request."""
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise ConfigError(f"{results}: no Allure results (did pytest run with --alluredir?)")
    binary = allure or find_allure()
    env = {**os.environ, "ALLURE_NO_ANALYTICS": "true"}
    t0 = time.perf_counter()
    try:
        p = subprocess.run([str(binary), "generate", "--single-file", "--clean", "--name", name, "-o", str(out),
                            str(results)], capture_output=True, text=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"allure generate took over {TIMEOUT:.0f} s on {results}") from None
    seconds = time.perf_counter() - t0
    page = out / "index.html"
    if p.returncode != 0 or not page.is_file():
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise ConfigError(f"allure generate failed (exit {p.returncode}) on {results}:\n{tail}")
    found = outside_references(page.read_text(errors="replace"))
    if found:
        page.unlink()
        raise ConfigError(f"the Allure report would make outside requests ({', '.join(found[:5])}): not written; "
                          f"was ALLURE_NO_ANALYTICS honoured by {binary}?")
    return HtmlReport(page, page.stat().st_size, seconds)


def write_for(folder: Path) -> str:
    """Write folder/allure-report/index.html from folder/allure-results; the line saying where it is, or why not."""
    try:
        r = generate(folder / RESULTS, folder / REPORT)
    except ConfigError as e:
        return f"allure report: not written: {e}"
    return f"allure report: {r.page.resolve()} ({r.size / 1e6:.1f} MB, {r.seconds:.1f} s)"
