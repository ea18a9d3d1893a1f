"""The case layer without a lab: pairs of ends, case tables, and the built-in end's configuration from a Connection."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cases.ends import PairSpec, pair_specs
from harness.cases.table import Expect, load_table, table_params
from harness.errors import ConfigError
from harness.ike.auth import Identity as IkeIdentity
from harness.ike.proposals import parse_proposals
from harness.ike.ts import TrafficSelector
from harness.peers.builtin import ike_config
from harness.peers.connection import connection_from_dict

PEERS = ["strongswan-5.9", "strongswan-6.0", "libreswan-4.10", "libreswan-5.2"]
SUITES = Path(__file__).resolve().parents[3] / "suites"


def test_every_pair_of_ends_both_ways() -> None:
    specs = pair_specs(PEERS, ("builtin>peer", "peer>builtin", "peer>peer"), "direct")
    ids = [s.id for s in specs]
    assert len(ids) == len(set(ids)) == 4 * 2 + 4 * 2
    assert "builtin>strongswan-5.9" in ids and "libreswan-5.2>builtin" in ids
    assert "strongswan-6.0>libreswan-4.10" in ids and "libreswan-4.10>strongswan-6.0" in ids
    assert not any(s.initiator.startswith("strongswan") and s.responder.startswith("strongswan") for s in specs)


def test_a_pair_names_its_column_role_lab_and_nodes() -> None:
    s = PairSpec("libreswan-4.10", "strongswan-6.0", "peer>peer", "direct")
    assert (s.column, s.role, s.lab_topology) == ("strongswan-6.0+libreswan-4.10", "libreswan>strongswan", "p2p")
    assert s.nodes() == {"strongswan-6.0": "left", "libreswan-4.10": "right"}
    b = PairSpec("builtin", "libreswan-5.2", "builtin>peer", "tunnel")
    assert (b.column, b.role, b.lab_topology, b.nodes()) == ("libreswan-5.2", "builtin>peer", "tunnel",
                                                             {"builtin": "tester", "libreswan-5.2": "peer"})
    assert PairSpec("strongswan-5.9", "libreswan-5.2", "peer>peer", "tunnel").lab_topology == "p2p-tunnel"
    with pytest.raises(ConfigError, match="no peer_pair"):
        PairSpec("strongswan-5.9", "libreswan-5.2", "peer>peer", "nat").lab_topology


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ConfigError, match="'peer>peers' is not one of"):
        pair_specs(PEERS, ("peer>peers",), "direct")


def _table(tmp_path: Path, cases: object) -> Path:
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"_source": "test", "cases": cases}))
    return p


def test_a_table_row_becomes_a_param_with_its_id_and_requirement(tmp_path: Path) -> None:
    p = _table(tmp_path, [{"id": "esp-gcm", "rfc": [4303, "2.3", "MUST"], "connection": {"mode": "tunnel"},
                           "expect": "refused:NO_PROPOSAL_CHOSEN", "ends": ["builtin>peer"]}])
    (row,) = load_table(p)
    assert (row.id, str(row.requirement), row.expect) == ("esp-gcm", "RFC 4303 s2.3 MUST", Expect("refused", "NO_PROPOSAL_CHOSEN"))
    assert row.responder == {}
    (param,) = table_params(p)
    assert param.id == "esp-gcm"
    assert [(m.name, m.args) for m in param.marks] == [("rfc", (4303, "2.3", "MUST")), ("ends", ("builtin>peer",))]
    (row,) = load_table(_table(tmp_path, [{"id": "b", "rfc": [7296, "2.7", "MUST"], "responder": {"child_proposals": ["aes128gcm16"]}}]))
    assert row.responder == {"child_proposals": ["aes128gcm16"]}
    (row,) = load_table(_table(tmp_path, [{"id": "c", "rfc": [7296, "2.5", "MUST"], "expect": "answered:UNSUPPORTED_CRITICAL_PAYLOAD",
                                           "bends": [{"op": "insert_unknown", "critical": True, "data": "00", "inner": True}]}]))
    assert row.expect == Expect("answered", "UNSUPPORTED_CRITICAL_PAYLOAD") and row.bends[0].data == b"\x00"


@pytest.mark.parametrize("cases,what", [
    ([{"id": "Bad Id", "rfc": [4303, "2.3", "MUST"]}], r"cases\[0\]: id: must match"),
    ([{"id": "a", "rfc": [4303, "2.3", "OUGHT"]}], r"cases\[0\] \(a\): rfc: must be"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"], "expect": "refused"}], r"expect: 'refused' is not"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"], "ends": ["x"]}], r"ends: must be a list of"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"], "colour": 1}], r"unknown key 'colour'"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"], "responder": ["aes128"]}], r"\(a\): responder: must be an object"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"], "expect": "dropped"}], r"\(a\): expect 'dropped' needs bends"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"], "bends": [{"op": "truncate"}]}], r"\(a\): expect 'established' is not what"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"], "expect": "dropped", "bends": [{"op": "bend_it"}]}],
     r"\(a\): bends: bend: unknown op 'bend_it'"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"], "expect": "dropped:why"}], r"expect: 'dropped:why' is not"),
    ([{"id": "a", "rfc": [4303, "2.3", "MUST"]}, {"id": "a", "rfc": [4303, "2.3", "MUST"]}], r"id 'a' appears twice"),
    ([{"id": "a", "rfc": [7296, "2.9", "MUST"], "connection": {"local_ts": ["198.18.0.0/24"]}}],
     r"\(a\): connection.local_ts: must be .* own, other, segment, spare .* not \['198.18.0.0/24'\]"),
    ([{"id": "a", "rfc": [7296, "2.9", "MUST"], "selectors": {"local": ["own"]}}], r"\(a\): selectors.local: must be"),
    ([{"id": "a", "rfc": [7296, "2.9", "MUST"], "expect": "refused:TS_UNACCEPTABLE", "selectors": {"local_ts": ["own"]}}],
     r"\(a\): selectors: only an established row"),
    ([{"id": "a", "rfc": [7296, "2.9", "MUST"], "connection": {"local_ts": ["own[udp/port]"]}}],
     r"\(a\): connection.local_ts: must be .* with \[PROTOCOL\] or \[PROTOCOL/PORT\]"),
    ([{"id": "a", "rfc": [7427, "3", "MUST"], "key": "rsa1024"}], r"\(a\): key: must be one of rsa2048, .* not 'rsa1024'"),
])
def test_a_bad_table_names_file_row_and_key(tmp_path: Path, cases: object, what: str) -> None:
    with pytest.raises(ConfigError, match=what):
        load_table(_table(tmp_path, cases))


PLACED = {"own": "198.18.0.2/32", "other": "198.18.0.3/32", "segment": "198.18.0.0/24", "spare": "198.18.0.250/32"}


def test_a_row_names_selectors_by_their_place_in_the_lab(tmp_path: Path) -> None:
    (row,) = load_table(_table(tmp_path, [{"id": "n", "rfc": [7296, "2.9", "MAY"],
                                           "connection": {"mode": "tunnel", "local_ts": ["segment"], "remote_ts": ["segment"]},
                                           "responder": {"local_ts": ["own"], "remote_ts": ["other"]},
                                           "selectors": {"local_ts": ["own"], "remote_ts": ["other"]}}]))
    assert row.selectors == {"local_ts": ("own",), "remote_ts": ("other",)}
    assert row.connection["local_ts"] == ["segment"] and row.responder["remote_ts"] == ["other"]


def test_the_projects_tables_load() -> None:
    tables = [t for t in sorted(SUITES.glob("*/*.json")) if isinstance(d := json.loads(t.read_text()), dict) and "cases" in d]
    assert tables, "no case table found under suites/"
    for t in tables:
        for row in load_table(t):
            # a row with a key kind authenticates by certificates the case issues: only their PEM shape is checked here
            pem = {k: f"-----BEGIN {k}-----" for k in ("cert_pem", "key_pem", "ca_pem")}
            auth = {"method": "pubkey", **pem} if row.key else {"psk": "p" * 20}
            for fields in (row.connection, {**row.connection, **row.responder}):
                fields = {**fields, **{k: [PLACED[t.partition("[")[0]] + t[len(t.partition("[")[0]):] for t in fields[k]] for k in ("local_ts", "remote_ts") if k in fields}}
                fields["auth"] = {**auth, **fields.get("auth", {})}
                connection_from_dict({"name": "x", "local_addr": "198.18.0.2", "remote_addr": "198.18.0.3", **fields},
                                     f"{t} ({row.id})")


def test_the_builtin_configuration_is_the_connection_parsed_once() -> None:
    c = connection_from_dict({"name": "x", "local_addr": "198.18.0.2", "remote_addr": "198.18.0.3",
                              "auth": {"psk": "0123456789abcdef0123"}, "local_id": "gw.example",
                              "ike_proposals": ["aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256"],
                              "child_proposals": ["aes128gcm16"], "mode": "tunnel", "remote_ts": ["198.18.5.0/24"]})
    cfg = ike_config(c, window_size=4)
    assert cfg.ike_proposals == list(c.ike_offer) == parse_proposals("aes256-sha256-modp2048,aes128gcm16-prfsha256-ecp256", "ike")
    assert cfg.ike_proposals[0] is c.ike_offer[0], "the Connection's parsed proposals, not a second parse"
    assert cfg.local_id == IkeIdentity.of("gw.example") and cfg.remote_id is None
    assert cfg.psk == b"0123456789abcdef0123" and cfg.mode == "tunnel" and cfg.window_size == 4
    assert cfg.remote_ts == [TrafficSelector.of("198.18.5.0/24")] and cfg.local_ts == [TrafficSelector.of("198.18.0.2/32")]
    with pytest.raises(ConfigError, match="'windowsize' is not an IkeConfig field"):
        ike_config(c, windowsize=4)


class _Listed:
    """An adapter whose own algorithm list is a recorded one (or that cannot say, like an external device)."""

    def __init__(self, algorithms: object) -> None:
        self._algs = algorithms
        self.events: list[object] = []  # the built-in end's IKE events (a Pair reads this case's from its start)

    def algorithms(self) -> object:
        if isinstance(self._algs, Exception):
            raise self._algs
        return self._algs


def test_a_transform_an_end_does_not_list_is_unimplemented_before_anything_is_loaded() -> None:
    from harness.cases.pair import End, Pair
    from harness.errors import CannotReconfigure, Unimplemented
    from harness.peers.algorithms import builtin_algorithms, parse_whack_status

    lsw = parse_whack_status((Path(__file__).parents[1] / "peers/data/algorithms/libreswan-5.2.whack-status.txt").read_text())
    spec = PairSpec("builtin", "libreswan-5.2", "builtin>peer")
    ends = {"builtin": End("builtin", "tester", _Listed(builtin_algorithms())), "libreswan-5.2": End("libreswan-5.2", "peer", _Listed(lsw))}
    pair = Pair(spec, None, ends, None, Path("/nonexistent"))
    base = {"name": "case", "local_addr": "198.18.0.1", "remote_addr": "198.18.0.2", "auth": {"psk": "x" * 20}}
    pair.require_algorithms(connection_from_dict({**base, "ike_proposals": ["aes128gcm16-prfsha256-ecp256"]}, "t"))
    with pytest.raises(Unimplemented, match=r"libreswan-5.2 does not list KE:CURVE448 for the IKE SA \(its own list: ipsec whack --status\)"):
        pair.require_algorithms(connection_from_dict({**base, "ike_proposals": ["aes128gcm16-prfsha256-x448"]}, "t"))
    # one proposal it lists in full is enough
    pair.require_algorithms(connection_from_dict({**base, "ike_proposals": ["aes128gcm16-prfsha256-x448", "aes128-sha256-modp2048"]}, "t"))
    ends["libreswan-5.2"] = End("libreswan-5.2", "peer", _Listed(CannotReconfigure("profile p: cannot read")))
    pair = Pair(spec, None, ends, None, Path("/nonexistent"))
    pair.require_algorithms(connection_from_dict({**base, "ike_proposals": ["aes128gcm16-prfsha256-x448"]}, "t"))


def test_a_selector_token_is_read_from_the_side_of_its_end() -> None:
    from harness.cases.ends import pair_specs
    from harness.cases.pair import End, Pair
    from harness.lab import Lab

    spec = next(iter(pair_specs(["strongswan-6.0", "libreswan-5.2"], ("peer>peer",), "direct")))
    lab = Lab(spec.lab_topology, run="0000abcd", worker=3)  # planned, not built: addresses only
    pair = Pair(spec, lab, {n: End(n, node, None) for n, node in spec.nodes().items()}, None, Path("/nonexistent"))
    left, right = (lab.node(spec.nodes()[e.name]).address() for e in pair.ends)
    assert [pair.selector(t, pair.initiator) for t in ("own", "other", "segment", "spare")] == \
        [f"{left}/32", f"{right}/32", "198.18.24.0/24", "198.18.24.250/32"]
    assert [pair.selector(t, pair.responder, 6) for t in ("own", "other")] == \
        [f"{lab.node(spec.nodes()[pair.responder.name]).address(version=6)}/128",
         f"{lab.node(spec.nodes()[pair.initiator.name]).address(version=6)}/128"]
    assert pair._placed({"mode": "tunnel", "local_ts": ["segment"]}, pair.responder, 6) == \
        {"mode": "tunnel", "local_ts": ["2001:db8:3::/64"]}


def test_a_4in6_row_has_ipv6_outer_addresses_and_ipv4_selectors(tmp_path: Path) -> None:
    """A tunnel row whose inner family is not the outer one (RFC 4301 s5.1.2.1): from_row(row, 6, inner=4) gives the
    IPv6 addresses of both ends and their IPv4 host prefixes as selectors, and the traffic takes the inner family."""
    from harness.cases.ends import pair_specs
    from harness.cases.pair import End, Pair
    from harness.lab import Lab

    (row,) = load_table(_table(tmp_path, [{"id": "gcm-tunnel-4in6", "rfc": [4301, "5.1.2.1", "MUST"],
                                           "connection": {"mode": "tunnel", "local_ts": ["own"], "remote_ts": ["other"]}}]))
    spec = next(iter(pair_specs(["strongswan-6.0", "libreswan-5.2"], ("peer>peer",), "direct")))
    lab = Lab(spec.lab_topology, run="0000abcd", worker=3)  # planned, not built: addresses only
    pair = Pair(spec, lab, {n: End(n, node, None) for n, node in spec.nodes().items()}, None, Path("/nonexistent"))
    node = {e: lab.node(spec.nodes()[e.name]) for e in pair.ends}
    conn = pair.from_row(row, 6, inner=4)
    assert (conn.local_addr, conn.remote_addr) == (node[pair.initiator].address(version=6), node[pair.responder].address(version=6))
    assert (conn.local_ts, conn.remote_ts) == ((f"{node[pair.initiator].address()}/32",), (f"{node[pair.responder].address()}/32",))
    pair.conn = conn
    assert pair.inner_version() == 4 and pair._version() == 6
    pair.conn = pair.from_row(row, 4, inner=6)
    assert pair.inner_version() == 6 and pair._version() == 4
    pair.conn = pair.from_row(row, 6)
    assert pair.inner_version() == 6


class _Sas:
    """An end that reports the given IKE SA records."""

    def __init__(self, *sas: object) -> None:
        self.sas, self.events = list(sas), []

    def list_sas(self) -> list:
        return self.sas


def test_childless_means_one_ike_sa_at_each_end_the_same_and_no_child_sa() -> None:
    from harness.cases.pair import End, Pair
    from harness.peers.base import ChildSaRecord, IkeSaRecord

    def ike(spi_i=1, spi_r=2, children=()):  # type: ignore[no-untyped-def]
        return IkeSaRecord("case", "ESTABLISHED", "198.18.0.1", "198.18.0.2", spi_i, spi_r, children=list(children))

    def pair(a, b):  # type: ignore[no-untyped-def]
        spec = PairSpec("builtin", "libreswan-5.2", "builtin>peer")
        return Pair(spec, None, {"builtin": End("builtin", "tester", a), "libreswan-5.2": End("libreswan-5.2", "peer", b)},
                    None, Path("/nonexistent"))

    child = ChildSaRecord("case", "ESP", "transport", 0x1000, 0x2000, "INSTALLED")
    assert pair(_Sas(ike()), _Sas(ike()))._childless()
    assert pair(_Sas(ike()), _Sas(ike(None, None)))._childless()  # Libreswan's whack names no IKE SPIs
    assert not pair(_Sas(ike()), _Sas(ike(children=[child])))._childless()
    assert not pair(_Sas(ike()), _Sas(ike(3, 4)))._childless()
    assert not pair(_Sas(ike()), _Sas())._childless()


def test_row_params_checks_a_suites_own_rows(tmp_path) -> None:
    """A data-plane table's rows: id, rfc and ends checked as a case table's, the suite's own keys let through,
    anything else a ConfigError naming the file, the row and the key."""
    from harness.cases.table import row_params

    path = tmp_path / "t.json"
    path.write_text(json.dumps({"_source": "test", "rows": [
        {"id": "a", "rfc": [4303, "3.4.3", "MUST"], "ends": ["builtin>peer"], "window": 64}]}))
    (param,) = row_params(path, {"window"})
    assert param.id == "a" and param.values[0]["window"] == 64
    assert [m.name for m in param.marks] == ["rfc", "ends"]
    for rows, message in (([{"id": "a", "rfc": [4303, "3.4.3", "MUST"], "size": 1}], "rows[0] (a): unknown key 'size'"),
                          ([{"id": "a", "rfc": [4303, "3.4.3", "OFTEN"]}], "rows[0] (a): rfc: must be"),
                          ([{"id": "A b", "rfc": [4303, "3.4.3", "MUST"]}], "rows[0]: id: must match"),
                          ([{"id": "a", "rfc": [4303, "1", "MAY"]}] * 2, "rows[1]: id 'a' appears twice")):
        path.write_text(json.dumps({"_source": "test", "rows": rows}))
        with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
            row_params(path, {"window"})
    with pytest.raises(ConfigError, match="expected"):
        row_params(path, set(), section="host_rows")
