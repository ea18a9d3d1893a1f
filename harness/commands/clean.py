"""`ipsec-interop clean`: remove what a killed run left (namespaces, recorded processes, containers, UML dirs)."""
from __future__ import annotations

import argparse

from harness.lab.cleanup import clean


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--run RUN to limit to one run; --force to clean runs whose owner process still lives."""
    parser.add_argument("--run", metavar="RUN", help="only this run id (8 hex characters)")
    parser.add_argument("--force", action="store_true", help="also clean runs whose test session is still alive")


def run(args: argparse.Namespace) -> int:
    """Clean and print each thing removed; 'nothing to clean' when there was nothing."""
    removed = clean(run=args.run, force=args.force)
    if not removed:
        print("nothing to clean")
    return 0
