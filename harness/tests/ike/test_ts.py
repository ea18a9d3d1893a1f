"""Traffic selectors and narrowing (RFC 7296 s2.9, s3.13)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from harness.errors import ConfigError, TsUnacceptable
from harness.ike.ts import TrafficSelector as TS, check_narrowed, narrow


def test_of_and_str():
    ts = TS.of("198.18.1.0/24")
    assert (ts.ts_type, ts.start_addr, ts.end_addr) == (7, bytes([198, 18, 1, 0]), bytes([198, 18, 1, 255]))
    assert str(ts) == "198.18.1.0/24" and str(TS.of("2001:db8::1", 17, (500, 500))) == "2001:db8::1[17/500-500]"
    assert TS.of("198.18.0.1-198.18.0.9").covers_address("198.18.0.5")
    for bad in ("198.18.0.9-198.18.0.1", "198.18.0.1-2001:db8::1", "nonsense"):
        with pytest.raises(ConfigError):
            TS.of(bad)


@pytest.mark.rfc(7296, "2.9", "MUST")
def test_narrow_to_intersection():
    n = narrow([TS.of("198.18.0.0/16")], [TS.of("198.18.5.0/24", 6, (80, 443))])
    assert n.selectors == (TS.of("198.18.5.0/24", 6, (80, 443)),) and n.narrowed and not n.additional_possible
    same = narrow([TS.of("198.18.5.0/24")], [TS.of("198.18.0.0/16")])
    assert same.selectors == (TS.of("198.18.5.0/24"),) and not same.narrowed


@pytest.mark.rfc(7296, "2.9", "MUST")
def test_ts_unacceptable():
    with pytest.raises(TsUnacceptable) as e:
        narrow([TS.of("198.19.0.0/24")], [TS.of("198.18.0.0/24")])
    assert e.value.notify == "TS_UNACCEPTABLE"
    with pytest.raises(TsUnacceptable):
        narrow([TS.of("2001:db8::/64")], [TS.of("198.18.0.0/15")])
    with pytest.raises(TsUnacceptable):
        narrow([TS.of("198.18.0.0/24", 17)], [TS.of("198.18.0.0/24", 6)])


@pytest.mark.rfc(7296, "2.9", "SHOULD")
def test_additional_ts_possible_when_single_pair():
    proposed = [TS.of("198.18.0.0/16")]
    policy = [TS.of("198.18.1.0/24"), TS.of("198.18.2.0/24")]
    assert narrow(proposed, policy).selectors == tuple(policy)
    one = narrow(proposed, policy, single=True)
    assert one.selectors == (policy[0],) and one.additional_possible


def test_initiator_checks_narrowing():
    check_narrowed([TS.of("198.18.0.0/16")], [TS.of("198.18.3.0/24")])
    with pytest.raises(TsUnacceptable):
        check_narrowed([TS.of("198.18.0.0/24")], [TS.of("198.18.0.0/23")])


addr = st.integers(0, 2**17 - 1).map(lambda n: (0xC6120000 + n).to_bytes(4, "big"))


@given(st.tuples(addr, addr), st.tuples(addr, addr), st.tuples(st.integers(0, 65535), st.integers(0, 65535)))
def test_intersection_is_contained_in_both(a, b, ports):
    x = TS(7, 0, 0, 65535, *sorted(a))
    y = TS(7, 0, min(ports), max(ports), *sorted(b))
    z = x.intersect(y)
    if z is None:
        assert max(x.start, y.start) > min(x.end, y.end)
    else:
        assert x.contains(z) and y.contains(z) and z == y.intersect(x)


def test_parsing_is_memoised_without_keeping_errors():
    from harness.addresses import ip_address

    assert TS.of("198.18.0.1") is TS.of("198.18.0.1")
    assert TS.of("198.18.0.1", 17, [1, 2]) == TS.of("198.18.0.1", 17, (1, 2))
    for _ in range(2):
        with pytest.raises(ConfigError):
            TS.of("198.18.0.300")
        with pytest.raises(ValueError):
            ip_address("198.18.0.300")
        with pytest.raises(ValueError):
            ip_address(["not hashable"])
    assert ip_address("2001:db8::1") is ip_address("2001:db8::1")
