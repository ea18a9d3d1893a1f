"""`ipsec-interop report`: write the matrix of a results folder again, compare two runs (--diff), or join shards (merge)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import ConfigError
from harness.report import html, matrix, regression
from harness.report.merge import JUNIT, RESULTS, merge


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", type=Path, metavar="DIR",
                   help="a results folder (default: reports), or `merge` and the shards' folders")
    p.add_argument("--diff", nargs=2, type=Path, metavar=("OLD", "NEW"),
                   help="compare two results folders; exit status 1 when NEW fails a test OLD did not")
    p.add_argument("--out", type=Path, default=None,
                   help="where merge writes (default: reports/merged) or where --diff writes regression.md/.html "
                        "(default: NEW)")


def write_reports(folder: Path, table: bool = False) -> None:
    """Write the matrix pages and the Allure page of a results folder and print their paths with the JUnit file's (the
    matrix itself with table, else its totals): what `run`, `report` and `report merge` all end with."""
    m = matrix.build(matrix.load_results(folder / RESULTS))
    page = matrix.write(m, folder)
    print("\n" + matrix.to_markdown(m) if table else ", ".join(f"{k}: {n}" for k, n in sorted(m.totals.items())))
    print(f"interop matrix: {page.resolve()}")
    if (folder / JUNIT).exists():
        print(f"junit: {(folder / JUNIT).resolve()}")
    if (folder / html.RESULTS).is_dir():
        print(f"allure results: {(folder / html.RESULTS).resolve()}")
        print(html.write_for(folder))


def run(args: argparse.Namespace) -> int:
    folders: list[Path] = list(args.folders)
    if args.diff:
        if folders:
            raise ConfigError("report --diff OLD NEW takes no other folder")
        old, new = args.diff
        r = regression.compare(matrix.load_results(old / RESULTS), matrix.load_results(new / RESULTS))
        out = args.out or new
        out.mkdir(parents=True, exist_ok=True)
        (out / "regression.md").write_text(regression.to_markdown(r))
        (out / "regression.html").write_text(regression.to_html(r, str(old), str(new)))
        print(regression.to_text(r), end="")
        print(f"regression report: {(out / 'regression.html').resolve()}")
        return 1 if r.regressed else 0
    if folders and str(folders[0]) == "merge":  # `report merge DIR...` (a folder named merge: ./merge)
        out = args.out or Path("reports/merged")
        records = merge(folders[1:], out)
        print(f"merged {len(records)} results from {len(folders) - 1} folders into {out}")
        write_reports(out)
        return 0
    if len(folders) > 1:
        raise ConfigError(f"report takes one results folder (or `merge DIR...`), not {len(folders)}")
    write_reports(folders[0] if folders else Path("reports"))
    return 0
