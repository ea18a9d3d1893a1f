"""Join the results folders of the shards of one run (`ipsec-interop run --shard K/N`) into one: results.json,
junit-interop.xml, allure-results/ and the case evidence, from which the matrix is written once."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.errors import ConfigError
from harness.report.collector import write_allure_metadata
from harness.report.matrix import load_results

RESULTS, JUNIT, ALLURE, EVIDENCE = "results.json", "junit-interop.xml", "allure-results", ("captures",)
METADATA = ("environment.properties", "categories.json")  # written anew from the merged records


def merge_records(shards: dict[Path, list[dict]]) -> list[dict]:
    """All records, in shard order; ConfigError naming both folders when a test ran in two shards."""
    seen: dict[str, Path] = {}
    out = []
    for folder, records in shards.items():
        for r in records:
            if r["nodeid"] in seen:
                raise ConfigError(f"{r['nodeid']} is in both {seen[r['nodeid']]} and {folder}: "
                                  "these are not shards of one run (same K/N split over the same tests)")
            seen[r["nodeid"]] = folder
            out.append(r)
    return out


def merge_junit(paths: list[Path]) -> ET.Element:
    """One <testsuites> holding every shard's <testsuite> elements; ConfigError naming a file that is not JUnit."""
    root = ET.Element("testsuites")
    for p in paths:
        try:
            top = ET.parse(p).getroot()
        except ET.ParseError as e:
            raise ConfigError(f"{p}: not JUnit XML: {e}") from None
        suites = [top] if top.tag == "testsuite" else list(top.iter("testsuite"))
        for s in suites:
            s.set("name", f"{s.get('name', 'pytest')}-{p.parent.name}")
            root.append(s)
    return root


def merge(folders: list[Path], out: Path) -> list[dict]:
    """Merge the shards' folders into out (which must not be one of them); the merged records."""
    if not folders:
        raise ConfigError("report merge: name at least one results folder")
    if out.resolve() in {f.resolve() for f in folders}:
        raise ConfigError(f"report merge: the output folder {out} is one of the inputs")
    for f in folders:
        if not f.is_dir():
            raise ConfigError(f"report merge: {f} is not a folder")
    records = merge_records({f: load_results(f / RESULTS) for f in folders})
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).write_text(json.dumps(records, indent=1, default=str))
    junits = [f / JUNIT for f in folders if (f / JUNIT).exists()]
    if junits:
        ET.ElementTree(merge_junit(junits)).write(out / JUNIT, encoding="utf-8", xml_declaration=True)
    for f in folders:
        allure = f / ALLURE
        if allure.is_dir():
            (out / ALLURE).mkdir(exist_ok=True)
            for item in allure.iterdir():  # results and attachments are named by uuid: no two shards share one
                if item.is_file() and item.name not in METADATA:
                    shutil.copy2(item, out / ALLURE / item.name)
        for sub in EVIDENCE:
            if (f / sub).is_dir():
                shutil.copytree(f / sub, out / sub, dirs_exist_ok=True)
    if (out / ALLURE).is_dir():
        write_allure_metadata(out / ALLURE, records)
    return records
