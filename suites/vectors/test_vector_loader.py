"""harness.vectors: malformed vector files are ConfigErrors naming file, record and key."""
from __future__ import annotations

import json

import pytest

from harness import vectors
from harness.errors import ConfigError


@pytest.fixture
def vdir(tmp_path, monkeypatch):
    monkeypatch.setattr(vectors, "VECTORS_DIR", tmp_path)
    return tmp_path


def _write(vdir, obj):
    (vdir / "x.json").write_text(obj if isinstance(obj, str) else json.dumps(obj))


@pytest.mark.parametrize("content,fragment", [
    ("{", "not JSON"),
    ({"vectors": {}}, "'vectors' missing or not a list"),
    ({"vectors": [1]}, r"vectors\[0\] is not an object"),
    ({"vectors": [{"id": "a", "document": "RFC 1"}]}, r"vectors\[0\]: key 'section'"),
    ({"vectors": [{"id": "a", "document": "RFC 1", "section": "1"}, {"id": "a", "document": "RFC 1", "section": "1"}]}, "duplicate id 'a'"),
])
def test_malformed(vdir, content, fragment):
    _write(vdir, content)
    with pytest.raises(ConfigError, match=fragment):
        vectors.load_vectors("x.json")


def test_missing_file(vdir):
    with pytest.raises(ConfigError, match="cannot read"):
        vectors.load_vectors("absent.json")


def test_filter_and_unhex(vdir):
    _write(vdir, {"vectors": [{"id": "a", "document": "RFC 1", "section": "1", "op": "x", "k": "0a"},
                              {"id": "b", "document": "RFC 1", "section": "1", "op": "y", "k": "zz"}]})
    recs = vectors.load_vectors("x.json", "x")
    assert [r["id"] for r in recs] == ["a"] and vectors.unhex(recs[0], "k") == b"\n"
    with pytest.raises(ConfigError, match="field 'k'"):
        vectors.unhex(vectors.load_vectors("x.json", "y")[0], "k")


def test_every_real_vector_file_loads():
    names = vectors.vector_files("crypto") + vectors.vector_files("kdf")
    assert len(names) >= 13
    for name in names:
        assert vectors.load_vectors(name)
        assert vectors.load_source(name)["document"]
