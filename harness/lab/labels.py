"""Run ids, resource names and the per-run state directory (pid records) that `ipsec-interop clean` reads."""
from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import LabError

LABEL_PREFIX = "ipsi"
DOCKER_LABEL = "ipsec-interop.run"
RUN_ENV = "IPSEC_INTEROP_RUN"
STATE_ROOT = Path(os.environ.get("IPSEC_INTEROP_STATE", "/run/ipsec-interop"))
_RUN_RE = re.compile(r"^[0-9a-f]{8}$")


def new_run_id() -> str:
    """A fresh run id: 8 lowercase hex characters."""
    return secrets.token_hex(4)


def check_run_id(run: str) -> str:
    """Return run unchanged if it is 8 lowercase hex characters, else raise LabError."""
    if not _RUN_RE.match(run):
        raise LabError(f"run id {run!r}: expected 8 lowercase hex characters")
    return run


def current_run_id() -> str:
    """This process's run id: $IPSEC_INTEROP_RUN (shared by xdist workers), set to a new one if absent."""
    run = os.environ.get(RUN_ENV)
    if not run:
        run = os.environ[RUN_ENV] = new_run_id()
    return check_run_id(run)


def worker_index(env: dict[str, str] | None = None) -> int:
    """The pytest-xdist worker index W: gw<N> -> N, no xdist -> 0."""
    name = (os.environ if env is None else env).get("PYTEST_XDIST_WORKER", "")
    m = re.fullmatch(r"gw(\d+)", name)
    return int(m.group(1)) if m else 0


def resource_name(run: str, *parts: str | int) -> str:
    """`ipsi-<RUN>-<part>-...`: the name of a namespace, container or UML umid of this run."""
    return "-".join([LABEL_PREFIX, check_run_id(run), *map(str, parts)])


def run_of(name: str) -> str | None:
    """The run id inside a resource name made by resource_name(), or None if it is not one of ours."""
    m = re.match(rf"^{LABEL_PREFIX}-([0-9a-f]{{8}})(-|$)", name)
    return m.group(1) if m else None


def state_dir(run: str) -> Path:
    """/run/ipsec-interop/<RUN>: pid records, owners, capture scratch, UML dirs of one run."""
    return STATE_ROOT / check_run_id(run)


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


@dataclass(frozen=True)
class PidRecord:
    """A process the harness started: pid plus start time, so a reused pid is never mistaken for it."""

    pid: int
    start_time: int
    label: str
    argv: tuple[str, ...] = ()

    def alive(self) -> bool:
        """True if the process with this pid is still the one recorded (same start time)."""
        return proc_start_time(self.pid) == self.start_time


def _write_record(directory: Path, pid: int, label: str, argv: tuple[str, ...]) -> Path:
    start = proc_start_time(pid)
    if start is None:
        raise LabError(f"cannot record pid {pid} ({label}): no such process")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(PidRecord(pid, start, label, tuple(argv)))))
    tmp.replace(path)
    return path


def _read_records(directory: Path) -> list[tuple[Path, PidRecord]]:
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            d = json.loads(path.read_text())
            out.append((path, PidRecord(int(d["pid"]), int(d["start_time"]), str(d["label"]), tuple(d.get("argv", ())))))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign file: not a record we can act on
    return out


def record_pid(run: str, pid: int, label: str, argv: tuple[str, ...] | list[str] = ()) -> Path:
    """Record a process this run started (pid + start time) so `clean` can stop exactly it."""
    return _write_record(state_dir(run) / "pids", pid, label, tuple(argv))


def forget_pid(run: str, pid: int) -> None:
    """Drop the record of a process that has been stopped."""
    (state_dir(run) / "pids" / f"{pid}.json").unlink(missing_ok=True)


def pid_records(run: str) -> list[tuple[Path, PidRecord]]:
    """Every process recorded for run, with the file holding its record."""
    return _read_records(state_dir(run) / "pids")


def register_owner(run: str, pid: int | None = None) -> Path:
    """Record a process (default: this one) as an owner of run: while one lives, `clean` leaves the run alone."""
    pid = os.getpid() if pid is None else pid
    return _write_record(state_dir(run) / "owners", pid, "owner", ())


def live_owners(run: str) -> list[PidRecord]:
    """The owners of run that are still alive."""
    return [r for _, r in _read_records(state_dir(run) / "owners") if r.alive()]


def known_runs() -> list[str]:
    """Run ids that have a state directory."""
    if not STATE_ROOT.is_dir():
        return []
    return sorted(p.name for p in STATE_ROOT.iterdir() if p.is_dir() and _RUN_RE.match(p.name))


def release_owner(run: str, pid: int | None = None) -> None:
    """Drop an owner record; when no owner or process record is left, remove the run's state directory."""
    import shutil

    pid = os.getpid() if pid is None else pid
    d = state_dir(run)
    (d / "owners" / f"{pid}.json").unlink(missing_ok=True)
    if not live_owners(run) and not pid_records(run):
        shutil.rmtree(d, ignore_errors=True)
