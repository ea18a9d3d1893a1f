#!/usr/bin/env python3
"""The stand-in device's control hook (profile [control]), as an owner's `ssh gw swanctl ...` would be.

Usage: hook.py SOCKET VERB (list-sas | initiate | terminate). It asks the test's relay on the unix socket SOCKET,
which runs the one swanctl command of that verb in the UML guest, and prints what swanctl printed; exit status 1
if the relay reports a failure. Standard library only.
"""
import socket
import sys


def main() -> int:
    path, verb = sys.argv[1], sys.argv[2]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(verb.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status, _, out = data.partition(b"\n")
    sys.stdout.write(out.decode("utf-8", "replace"))
    return 0 if status == b"ok" else 1


if __name__ == "__main__":
    sys.exit(main())
