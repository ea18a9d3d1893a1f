"""Progress of long steps: what is being done, a heartbeat while it lasts, and how long it took."""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HEARTBEAT = 10.0  # seconds between "still doing X" lines: nothing sits silent for longer


def say(line: str) -> None:
    """Print one progress line at once (stdout, flushed), so a pipe or CI log shows it when it happens."""
    print(line, flush=True, file=sys.stdout)


@contextmanager
def step(what: str, out: Callable[[str], None] = say, every: float = HEARTBEAT) -> Iterator[None]:
    """Announce `what`, repeat it every `every` seconds with the time so far, and end with its duration."""
    t0 = time.monotonic()
    out(f"{what} ...")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            out(f"  ... {what}: {time.monotonic() - t0:.0f} s so far")

    thread = threading.Thread(target=beat, name="progress", daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        out(f"{what}: failed after {time.monotonic() - t0:.1f} s")
        raise
    finally:
        stop.set()
        thread.join()
    out(f"{what}: done in {time.monotonic() - t0:.1f} s")
