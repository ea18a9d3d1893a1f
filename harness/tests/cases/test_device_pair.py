"""A pair whose peer end is an external device: the case fitted to its profile, and judged by what can be read."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.ends import PairSpec
from harness.cases.pair import End, Pair
from harness.errors import CannotReconfigure
from harness.peers.base import ChildSaRecord, IkeSaRecord
from harness.peers.connection import connection_from_dict, mirrored
from harness.peers.external import ExternalAdapter
from harness.runtime.profile import load_profile

PROFILE = """
version = "1"
[address]
ipv4 = "198.18.0.2"
[identity]
local = "gw.example.net"
remote = "tester.example.net"
[credentials]
psk = "device psk"
[proposals]
ike = ["aes128gcm16-prfsha256-ecp256"]
esp = ["aes128gcm16"]
"""


class _Builtin:
    """The built-in end as far as these checks read it: its SAs and what was loaded."""

    def __init__(self, *sas: IkeSaRecord) -> None:
        self.sas, self.events, self.loaded = list(sas), [], []

    def list_sas(self) -> list[IkeSaRecord]:
        return self.sas

    def load(self, conn) -> None:  # noqa: ANN001
        self.loaded.append(conn)

    def algorithms(self):  # noqa: ANN201
        raise CannotReconfigure("not judged here")


def _pair(tmp_path: Path, builtin: _Builtin, extra: str = "") -> Pair:
    path = tmp_path / "gw.toml"
    path.write_text(PROFILE + extra)
    spec = PairSpec("builtin", "gw", "builtin>peer")
    return Pair(spec, None, {"builtin": End("builtin", "tester", builtin), "gw": End("gw", "peer", ExternalAdapter(load_profile(path)))},
                None, Path("/nonexistent"))


def _conn(**fields):  # noqa: ANN003, ANN202
    return connection_from_dict({"name": "case", "local_addr": "198.18.0.1", "remote_addr": "198.18.0.2",
                                 "auth": {"psk": "case psk"}, **fields})


def test_the_builtin_end_loads_the_devices_identities_and_psk(tmp_path: Path) -> None:
    b = _Builtin()
    pair = _pair(tmp_path, b)
    pair.load(_conn(), mirrored(_conn()))
    (loaded,) = b.loaded
    assert (loaded.auth.psk, loaded.local_id.value, loaded.remote_id.value) == ("device psk", "tester.example.net",
                                                                                "gw.example.net")
    assert pair.conn is not None and pair.conn.auth.psk == "device psk"
    assert not pair.responder.reads and pair.responder.device


def test_a_case_the_profile_does_not_declare_is_refused_before_anything_is_loaded(tmp_path: Path) -> None:
    b = _Builtin()
    with pytest.raises(CannotReconfigure, match=r"gw.toml: features.modes: the case needs tunnel mode"):
        _pair(tmp_path, b).load(_conn(mode="tunnel"), mirrored(_conn(mode="tunnel")))
    assert b.loaded == []


def test_an_unreadable_device_is_judged_by_the_builtin_ends_child_sa(tmp_path: Path) -> None:
    child = ChildSaRecord("case", "ESP", "transport", 0x1000, 0x2000, "INSTALLED")
    ike = IkeSaRecord("case", "ESTABLISHED", "198.18.0.1", "198.18.0.2", 1, 2, children=[child])
    pair = _pair(tmp_path, _Builtin(ike))
    pair.conn = _conn()
    assert pair._established()
    assert not _pair(tmp_path, _Builtin())._established()


def test_a_command_the_device_cannot_take_is_a_skip_naming_the_key(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _Builtin())
    with pytest.raises(CannotReconfigure, match=r"gw.toml: control: the case needs the device to rekey on command"):
        pair.needs(pair.responder, "rekey")
    with pytest.raises(CannotReconfigure, match=r"control.terminate"):
        pair.needs(pair.responder, "terminate")
    pair.needs(pair.initiator, "rekey")  # the built-in end can
    hooked = _pair(tmp_path, _Builtin(), '[control]\nterminate = ["true"]\n')
    hooked.needs(hooked.responder, "terminate")
