"""The adapter of an external device (--runtime external): the peer protocol for a box the harness does not control.

The device is configured and operated by its owner; all the harness knows is its profile
(harness.runtime.external). So every method that would configure, command or read the device
raises CannotReconfigure naming the profile file and what was needed, which the lab's plugin
turns into a skip; version() is what the profile declares, logs() says that none can be read.
It lives beside the other adapters (the peer protocol's home) and reads only the parsed Profile.
"""
from __future__ import annotations

import time

from harness.errors import CannotReconfigure, NoAnswer
from harness.peers import device_control, device_fit
from harness.peers.algorithms import Algorithms
from harness.peers.base import IkeSaRecord
from harness.peers.connection import Connection
from harness.peers.xfrm import XfrmPolicy, XfrmState
from harness.runtime.external import Profile

OWNER = "the device is configured by its owner"


class ExternalAdapter:
    """PeerAdapter of a device described by a profile: reports what the profile says and refuses the rest."""

    implementation = "external"

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.loaded: str | None = None

    @property
    def reports_state(self) -> bool:
        """True if the profile gives a hook that lists the device's SAs (control.list_sas)."""
        return bool(self.profile.control.list_sas)

    kernel_keys = False  # a device never hands out its keys: the built-in end's are the capture's

    def fit(self, device: Connection, builtin: Connection, device_initiates: bool) -> Connection:
        """The built-in end's connection for a case whose device side is `device`; CannotReconfigure naming the
        profile key if the device as declared cannot be it (harness.peers.device_fit)."""
        out = device_fit.fit(self.profile, device, builtin, device_initiates)
        self.loaded = device.name
        return out

    def _refuse(self, what: str, why: str = OWNER) -> CannotReconfigure:
        """The error for something the harness cannot do to the device: names the profile file, what and why."""
        return CannotReconfigure(f"profile {self.profile.path}: cannot {what} ({why})")

    def start(self) -> None:
        """Nothing to start: the device runs on its own."""

    def load(self, connection: Connection) -> None:
        """Accepted only as what the device already is, once fit() checked it; refused otherwise."""
        if self.loaded != connection.name:
            raise self._refuse(f"load connection {connection.name!r} into an external device")

    def unload(self, name: str) -> None:
        """Forget the case's connection (the device keeps its own; the built-in end deletes the SAs it made)."""
        if self.loaded != name:
            raise self._refuse(f"unload connection {name!r} from an external device")
        self.loaded = None

    def initiate(self, name: str, timeout: float = 30.0) -> IkeSaRecord:
        """Run control.initiate and wait (bounded) for an established IKE SA in control.list_sas."""
        hook = self.profile.control.initiate
        if not hook or not self.reports_state:
            key = "control.initiate" if not hook else "control.list_sas"
            raise self._refuse(f"make an external device initiate {name!r}", f"{key} is not set")
        device_control.run_hook(hook, self.profile.control.timeout, "initiate")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sas := [s for s in self.list_sas() if s.established and s.children]:
                return sas[-1]
            time.sleep(0.2)
        raise NoAnswer(f"{self.profile.name}: control.initiate ran, no established IKE SA within {timeout:.0f} s")

    def initiate_ike(self, name: str, timeout: float = 30.0) -> IkeSaRecord:
        """Refused: the harness cannot make an external device initiate."""
        raise self._refuse(f"make an external device initiate {name!r} childless", "the harness cannot command it")

    def create_child(self, name: str, timeout: float = 30.0) -> None:
        """Refused: the harness cannot make an external device create a Child SA."""
        raise self._refuse(f"make an external device create a Child SA of {name!r}", "the harness cannot command it")

    def terminate(self, name: str, timeout: float = 30.0) -> None:
        """Run control.terminate; refused without it."""
        if not self.profile.control.terminate:
            raise self._refuse(f"make an external device terminate {name!r}", "control.terminate is not set")
        device_control.run_hook(self.profile.control.terminate, self.profile.control.timeout, "terminate")

    def rekey(self, name: str, what: str = "child") -> None:
        """Refused: the harness cannot make an external device rekey."""
        raise self._refuse(f"make an external device rekey the {what} SA of {name!r}", "the harness cannot command it")

    def delete_child(self, name: str, spi_in: int) -> None:
        """Refused: the harness cannot make an external device delete a Child SA."""
        raise self._refuse(f"make an external device delete the Child SA 0x{spi_in:08x} of {name!r}",
                           "the harness cannot command it")

    def list_sas(self) -> list[IkeSaRecord]:
        """The device's SAs from control.list_sas (untrusted text, parsed leniently); refused without the hook."""
        c = self.profile.control
        if not c.list_sas:
            raise self._refuse("list the SAs of an external device", "control.list_sas is not set")
        return device_control.parse_swanctl(device_control.run_hook(c.list_sas, c.timeout, "list_sas"),
                                            self.loaded or "")

    def xfrm_state(self) -> list[XfrmState]:
        """Refused: the harness cannot read an external device's kernel SAs."""
        raise self._refuse("read the kernel SAs of an external device", "the harness cannot read its state")

    def xfrm_policy(self) -> list[XfrmPolicy]:
        """Refused: the harness cannot read an external device's kernel policies."""
        raise self._refuse("read the kernel policies of an external device", "the harness cannot read its state")

    def run(self, argv: list[str], timeout: float = 30.0) -> str:
        """Refused: the harness cannot run commands on an external device (its traffic, kernel state, sockets)."""
        raise self._refuse(f"run {' '.join(argv[:3])}... on an external device", "the harness has no shell on it")

    def drop_half_open(self, address: str) -> None:
        """Refused: the harness cannot clear an external device's half-open IKE SAs."""
        raise self._refuse(f"clear the half-open IKE SAs of {address} on an external device", "no profile key does")

    def cannot(self, verb: str) -> str | None:
        """Why the device cannot be made to do verb (rekey, terminate, initiate, delete_child), or None if it can."""
        hooks = {"initiate": self.profile.control.initiate, "terminate": self.profile.control.terminate}
        if hooks.get(verb):
            return None
        key = f"control.{verb}" if verb in hooks else "control"
        return f"profile {self.profile.path}: {key}: the case needs the device to {verb} on command"

    def logs(self) -> str:
        """No log can be read from the device: a line that says so and names the profile."""
        return f"no log: {self.profile.name} is an external device (profile {self.profile.path}); ask its owner for its logs\n"

    def algorithms(self) -> Algorithms:
        """Refused: the profile does not list the device's algorithms (its proposals say what to offer)."""
        raise self._refuse("read the algorithm list of an external device", "the profile names proposals, not a list")

    def version(self) -> str:
        """The name and version the profile declares, e.g. 'vendor-gw 7.2.1'."""
        return f"{self.profile.name} {self.profile.version}"

    def stop(self) -> None:
        """Nothing to stop: the harness did not start the device."""
