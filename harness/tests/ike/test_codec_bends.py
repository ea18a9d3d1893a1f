"""Data-driven bent messages (vectors/ike/bent_messages.json): each bend and the decoder's verdict, lenient and strict."""
from __future__ import annotations

import pytest

from harness.errors import IkeParseError
from harness.ike.bend import Bend
from harness.ike.message import Message
from harness.vectors import as_params, load_vectors, unhex

VECTORS = load_vectors("ike/bent_messages.json")


@pytest.mark.parametrize("record", as_params(VECTORS))
def test_bent_message(record):
    base = Message.decode(unhex(record, "datagram"), strict=True)
    assert base.encode() == unhex(record, "datagram")  # the template itself is clean
    datagram = base.encode([Bend.from_dict(b) for b in record["bends"]])
    expect = record["expect"]
    if expect["result"] == "error":
        for strict in (False, True):
            with pytest.raises(IkeParseError) as e:
                Message.decode(datagram, strict)
            err = e.value
            assert (err.payload, err.field, err.notify) == (expect["payload"], expect["field"], expect["notify"])
            assert 0 <= err.offset <= len(datagram)
            assert err.data == bytes.fromhex(expect.get("data", ""))
        return
    m = Message.decode(datagram)
    assert sorted({f.rule for f in m.findings}) == sorted(set(expect["findings"]))
    if "payloads" in expect:
        assert [p.name for p in m.payloads] == expect["payloads"]
    if "message_id" in expect:
        assert m.header.message_id == expect["message_id"]
    if expect["strict"] == "ok":
        Message.decode(datagram, strict=True)
    else:
        with pytest.raises(IkeParseError):
            Message.decode(datagram, strict=True)
