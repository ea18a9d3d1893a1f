"""`ipsec-interop`: one subcommand per module in harness.commands, each with add_arguments() and run()."""
from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import IpsecInteropError

# name -> one-line help; the module harness.commands.<name> implements it.
COMMANDS: dict[str, str] = {
    "run": "run the interop suites against the reference peers and write the matrix report",
    "setup": "start a Docker daemon without bridge or NAT if none answers, build the peers' images, export UML trees",
    "decrypt": "decrypt ESP, verify AH and decrypt IKE SK/SKF payloads in a capture, given the SA keys (JSON keys file, Wireshark esp_sa or ikev2_decryption_table)",
    "peers": "list the peers built here (versions, images, UML readiness) and the runtimes, with the one auto picks",
    "report": "write a results folder's matrix again, compare two runs (--diff OLD NEW), or join shards (merge DIR...)",
    "clean": "remove what a killed run left: lab namespaces, recorded processes, labelled containers, UML dirs",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="ipsec-interop", description="IPsec conformance and interoperability suite.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        module = importlib.import_module(f"harness.commands.{name}")
        p = sub.add_parser(name, help=help_, description=help_)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: typed errors become one line on stderr and exit status 2, Ctrl-C exit 130."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except IpsecInteropError as e:
        print(f"ipsec-interop {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ipsec-interop {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
