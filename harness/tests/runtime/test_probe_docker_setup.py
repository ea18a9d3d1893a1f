"""The probe's SA and verdict, and the container arguments."""
from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from harness.errors import LabError
from harness.runtime import docker as docker_rt
from harness.runtime import get_runtime, images, probe
from harness.runtime.base import NodeSpec


def test_probe_sas_use_lab_addresses_and_esp() -> None:
    for i in range(len(probe.PROBE_ALGORITHMS)):
        argv = probe.esp_state_argv(i)
        assert argv[:3] == ["xfrm", "state", "add"] and argv[argv.index("proto") + 1] == "esp"
        for key in ("src", "dst"):
            assert ip_address(argv[argv.index(key) + 1]) in ip_network("198.18.0.0/15")
    assert "rfc4106(gcm(aes))" in probe.esp_state_argv(1)


def test_probe_without_root_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe.os, "geteuid", lambda: 1000)
    ok, why = probe.probe_esp()
    assert not ok and "not root" in why


def test_describe_names_kernel_and_choice() -> None:
    r = probe.ProbeResult(False, "Error: Requested type not found.", "6.18.0", "uml")
    assert r.describe() == "host kernel 6.18.0 cannot install an ESP SA (Error: Requested type not found.): runtime auto -> uml"
    assert "installs ESP SAs" in probe.ProbeResult(True, "", "6.1", "docker").describe()


def test_unknown_runtime() -> None:
    with pytest.raises(LabError, match="unknown runtime"):
        get_runtime("qemu")


def test_container_has_no_network_and_carries_the_run_label() -> None:
    info = images.ImageInfo("strongswan-5.9", "strongswan", "bookworm", "5.9.8", "sha256:1", "h", "ipsec-interop/strongswan-5.9")
    kw = docker_rt.container_kwargs(NodeSpec("direct-peer", "strongswan-5.9", "strongswan", labels={"x": "y"}, env={"E": "1"}),
                                    "ipsi-0123abcd-0-direct-peer", "0123abcd", info)
    assert kw["network_mode"] == "none" and kw["image"] == "sha256:1" and kw["name"] == "ipsi-0123abcd-0-direct-peer"
    assert kw["labels"]["ipsec-interop.run"] == "0123abcd" and kw["labels"]["x"] == "y"
    assert "privileged" not in kw and "SYS_MODULE" not in kw["cap_add"] and "NET_ADMIN" in kw["cap_add"]
    assert kw["environment"] == {"IPSI_RUNTIME": "docker", "E": "1"}
    assert kw["sysctls"]["net.ipv6.conf.default.disable_ipv6"] == "0"
