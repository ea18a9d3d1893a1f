"""Make captures of real Linux kernel ESP/AH traffic, with the keys, for vectors/captures/.

    python3 -m harness.tools.make_kernel_captures [--out vectors/captures]

Boots one User-Mode Linux guest (the lab's UML kernel, harness/runtime/uml_kernel.py, its own kernel with esp4/ah4/esp6/ah6
modules) whose root is the host's filesystem through hostfs, read-only. Inside it
(harness/tools/uml_guest_init.py) two network namespaces joined by a veth pair get manual
`ip xfrm` SAs with fresh random keys, A pings B, and tcpdump/dumpcap in A record the
protected packets. Nothing touches the host's network: the guest has no network device.
Addresses: 198.18.0.0/15 and 2001:db8::/32 only. The guest powers itself off; if it does
not within --timeout, this script halts it through its mconsole and kills its pid.

Writes per scenario NAME.pcap(ng) and NAME.keys.json, and manifest.json (kernel version,
the exact `ip xfrm` and capture commands, expected counts, ping payload).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.errors import LabUnavailable
from harness.keys import IpsecSaKeys, dump_keys
from harness.runtime import uml_kernel
from harness.tools.pcapio import read_capture

REPO = Path(__file__).resolve().parents[2]
GUEST_INIT = Path(__file__).resolve().parent / "uml_guest_init.py"
MODULES = ["ipv6", "veth", "xfrm_user", "esp4", "ah4", "esp6", "ah6", "xfrm4_tunnel", "xfrm6_tunnel", "tunnel4", "tunnel6",
           "gcm", "ghash_generic", "ctr", "seqiv", "echainiv", "authenc", "authencesn", "cbc", "hmac", "sha512_generic",
           "sha1_generic", "drbg", "jitterentropy_rng", "chacha20poly1305", "chacha_generic", "poly1305_generic"]
PAYLOAD = b"ipsec-interop kernel capture ".ljust(48, b".")
COUNT = 3

# (our transform names) -> `ip xfrm state` algorithm arguments, given the key bytes
V4 = dict(family=4, a="198.18.1.1", b="198.18.1.2", prefix="24", host="32", inner_a="198.18.11.1", inner_b="198.18.12.1")
V6 = dict(family=6, a="2001:db8:1::1", b="2001:db8:1::2", prefix="64", host="128", inner_a="2001:db8:11::1", inner_b="2001:db8:12::1")

SCENARIOS = [
    # name, addressing, protocol, mode, encryption, encryption key bytes, integrity, udp_encap, capture tool
    ("esp-aes-gcm-16-128-transport-v4", V4, "esp", "transport", "ENCR_AES_GCM_16", 20, None, False, "tcpdump"),
    ("esp-aes-cbc-128-sha256-tunnel-v4-sll", V4, "esp", "tunnel", "ENCR_AES_CBC", 16, "AUTH_HMAC_SHA2_256_128", False, "tcpdump-any"),
    ("esp-chacha20-poly1305-transport-v4", V4, "esp", "transport", "ENCR_CHACHA20_POLY1305", 36, None, False, "dumpcap"),
    ("esp-null-sha256-transport-v4", V4, "esp", "transport", "ENCR_NULL", 0, "AUTH_HMAC_SHA2_256_128", False, "tcpdump"),
    ("esp-aes-gcm-16-256-udpencap-tunnel-v4", V4, "esp", "tunnel", "ENCR_AES_GCM_16", 36, None, True, "tcpdump"),
    ("ah-sha256-transport-v4", V4, "ah", "transport", None, 0, "AUTH_HMAC_SHA2_256_128", False, "tcpdump"),
    ("ah-sha1-tunnel-v4", V4, "ah", "tunnel", None, 0, "AUTH_HMAC_SHA1_96", False, "tcpdump"),
    ("esp-aes-cbc-256-sha512-transport-v6", V6, "esp", "transport", "ENCR_AES_CBC", 32, "AUTH_HMAC_SHA2_512_256", False, "tcpdump"),
    ("ah-sha256-tunnel-v6", V6, "ah", "tunnel", None, 0, "AUTH_HMAC_SHA2_256_128", False, "tcpdump"),
    # 1300-byte echoes over a 1000-byte-MTU link, DF clear: the kernel fragments the ESP packets (RFC 4301 s8.1)
    ("esp-aes-gcm-16-128-tunnel-v4-fragmented", V4, "esp", "tunnel", "ENCR_AES_GCM_16", 20, None, False, "tcpdump-nocount",
     {"mtu": 1000, "payload_size": 1300}),
    # no `flag align4`: Linux pads IPv4 AH to 64 bits (ICV 16 + 4 bytes padding), as for IPv6
    ("ah-sha256-transport-v4-align8", V4, "ah", "transport", None, 0, "AUTH_HMAC_SHA2_256_128", False, "tcpdump", {"align4": False}),
]

_AUTH = {"AUTH_HMAC_SHA2_256_128": ("hmac(sha256)", 32, 128), "AUTH_HMAC_SHA2_512_256": ("hmac(sha512)", 64, 256),
         "AUTH_HMAC_SHA1_96": ("hmac(sha1)", 20, 96)}


def xfrm_algorithms(sa: IpsecSaKeys) -> list[str]:
    """The algorithm part of `ip xfrm state add` for an SA."""
    out: list[str] = []
    if sa.encryption in ("ENCR_AES_GCM_16", "ENCR_CHACHA20_POLY1305"):
        name = "rfc4106(gcm(aes))" if sa.encryption == "ENCR_AES_GCM_16" else "rfc7539esp(chacha20,poly1305)"
        return ["aead", name, "0x" + sa.encryption_key.hex(), "128"]
    if sa.encryption == "ENCR_AES_CBC":
        out += ["enc", "cbc(aes)", "0x" + sa.encryption_key.hex()]
    elif sa.encryption == "ENCR_NULL":
        out += ["enc", "ecb(cipher_null)", ""]
    name, _, bits = _AUTH[sa.integrity or ""]
    return out + ["auth-trunc", name, "0x" + sa.integrity_key.hex(), str(bits)]


def build_scenario(index: int, name, addr, proto, mode, encryption, enc_len, integrity, udp_encap, tool,
                   extra: dict | None = None) -> tuple[dict, list[IpsecSaKeys]]:
    """The guest's plan for one scenario and the two SAs (A->B, B->A) with fresh keys."""
    extra = extra or {}
    payload = (PAYLOAD * 64)[: extra.get("payload_size", len(PAYLOAD))]
    a, b = addr["a"], addr["b"]
    sas = []
    for n, (src, dst) in enumerate(((a, b), (b, a))):
        sas.append(IpsecSaKeys(proto, 0xC0DE0000 | (index << 8) | (0xAB if n == 0 else 0xBA), src, dst, mode, encryption,
                               os.urandom(enc_len) if encryption else b"", integrity,
                               os.urandom(_AUTH[integrity][1]) if integrity else b""))
    sel_a, sel_b = (addr["inner_a"], addr["inner_b"]) if mode == "tunnel" else (a, b)
    xfrm = []
    for sa in sas:
        cmd = ["xfrm", "state", "add", "src", sa.src, "dst", sa.dst, "proto", proto, "spi", f"0x{sa.spi:08x}", "reqid", "1",
               "mode", mode] + xfrm_algorithms(sa)
        if proto == "ah" and addr["family"] == 4 and extra.get("align4", True):
            cmd += ["flag", "align4"]
        if udp_encap:
            cmd += ["encap", "espinudp", "4500", "4500", "0.0.0.0"]
        xfrm.append(cmd)
    tmpl = ["proto", proto, "reqid", "1", "mode", mode]

    def policy(src_sel, dst_sel, direction, t_src, t_dst):
        return ["xfrm", "policy", "add", "src", f"{src_sel}/{addr['host']}", "dst", f"{dst_sel}/{addr['host']}", "dir", direction,
                "tmpl", "src", t_src, "dst", t_dst] + tmpl

    xfrm_a = xfrm + [policy(sel_a, sel_b, "out", a, b), policy(sel_b, sel_a, "in", b, a)]
    xfrm_b = xfrm + [policy(sel_b, sel_a, "out", b, a), policy(sel_a, sel_b, "in", a, b)]
    mac_a, mac_b = "02:00:5e:10:00:01", "02:00:5e:10:00:02"
    nodad = ["nodad"] if addr["family"] == 6 else []
    setup_a = [["addr", "add", f"{a}/{addr['prefix']}", "dev", "veth-a"] + nodad, ["neigh", "replace", b, "lladdr", mac_b, "dev", "veth-a", "nud", "permanent"]]
    setup_b = [["addr", "add", f"{b}/{addr['prefix']}", "dev", "veth-b"] + nodad, ["neigh", "replace", a, "lladdr", mac_a, "dev", "veth-b", "nud", "permanent"]]
    if mode == "tunnel":
        setup_a += [["addr", "add", f"{addr['inner_a']}/{addr['host']}", "dev", "lo"] + nodad, ["route", "add", f"{addr['inner_b']}/{addr['host']}", "dev", "veth-a", "src", addr["inner_a"]]]
        setup_b += [["addr", "add", f"{addr['inner_b']}/{addr['host']}", "dev", "lo"] + nodad, ["route", "add", f"{addr['inner_a']}/{addr['host']}", "dev", "veth-b", "src", addr["inner_b"]]]
    filt = "udp port 4500" if udp_encap else proto
    suffix = ".pcapng" if tool == "dumpcap" else ".pcap"
    capture = {"tcpdump": ["tcpdump", "-i", "veth-a", "-n", "-U", "-c", str(2 * COUNT), "-w", "{pcap}", filt],
               "tcpdump-any": ["tcpdump", "-i", "any", "-n", "-U", "-c", str(2 * COUNT), "-w", "{pcap}", filt],
               "tcpdump-nocount": ["tcpdump", "-i", "veth-a", "-n", "-U", "-w", "{pcap}", filt],
               "dumpcap": ["dumpcap", "-q", "-i", "veth-a", "-c", str(2 * COUNT), "-f", filt, "-w", "{pcap}"]}[tool]
    plan = dict(name=name, file=name + suffix, family=addr["family"], mac_a=mac_a, mac_b=mac_b, setup_a=setup_a, setup_b=setup_b,
                xfrm_a=xfrm_a, xfrm_b=xfrm_b, udp_encap=udp_encap, capture=capture, count=COUNT, payload=payload.hex(),
                ping_src=sel_a, ping_dst=sel_b, mtu=extra.get("mtu"), stop_capture=tool == "tcpdump-nocount")
    return plan, sas


def _shell(argv: list[str]) -> str:
    return " ".join(a if a and all(c.isalnum() or c in "-_./:=,+" for c in a) else f"'{a}'" for a in argv)


def boot(plan_path: Path, work: Path, timeout: float) -> None:
    """Run the guest to completion; halt and kill it (by pid) if it overstays."""
    umid = f"ipsec-interop-caps-{os.getpid()}"
    argv = [str(uml_kernel.current().binary), f"umid={umid}", f"uml_dir={work}", "mem=384M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
            f"init={GUEST_INIT}", "con=null", "ssl=null", "con0=null,fd:1", f"CAPTURE_PLAN={plan_path}"]
    log = open(work / "guest.log", "w")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"guest overstayed {timeout}s: halting it", file=sys.stderr)
        try:
            subprocess.run(["uml_mconsole", str(work / umid / "mconsole"), "halt"], timeout=10, capture_output=True)
        except subprocess.TimeoutExpired:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this script started for the guest
            proc.wait(timeout=10)
    finally:
        log.close()


def main(argv: list[str] | None = None) -> int:
    """Make the captures; exit 1 if a scenario got no replies or the guest failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "vectors" / "captures")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--only", action="append", help="scenario name (repeatable); default all")
    args = ap.parse_args(argv)
    try:
        kernel = uml_kernel.current()
    except LabUnavailable as e:
        print(e, file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ipsec-interop-uml-"))
    (work / "out").mkdir()
    try:
        scenarios, keys = [], {}
        for i, sc in enumerate(SCENARIOS):
            if args.only and sc[0] not in args.only:
                continue
            plan, sas = build_scenario(i, *sc)
            scenarios.append(plan)
            keys[plan["name"]] = sas
        plan_path = work / "plan.json"
        plan_path.write_text(json.dumps({"out_dir": str(work / "out"), "modules": MODULES,
                                         "modules_root": str(kernel.modules), "scenarios": scenarios}, indent=1))
        boot(plan_path, work, args.timeout)
        res_path = work / "out" / "results.json"
        if not res_path.exists():
            print(f"guest wrote no results; its console log:\n{(work / 'guest.log').read_text()[-4000:]}", file=sys.stderr)
            return 1
        results = json.loads(res_path.read_text())
        if results["error"]:
            print("\n".join(results["log"][-30:]), file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        manifest_path = args.out / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"captures": {}}
        manifest["kernel"] = results["kernel"]
        manifest["made_by"] = "python3 -m harness.tools.make_kernel_captures (User-Mode Linux guest, see README.md)"
        ok = True
        for plan, res in zip(scenarios, results["scenarios"]):
            name = plan["name"]
            if res["replies"] != plan["count"]:
                print(f"{name}: {res['replies']} of {plan['count']} echo replies", file=sys.stderr)
                ok = False
            if not (work / "out" / plan["file"]).exists():
                print(f"{name}: no capture file; guest log:\n" + "\n".join(line for line in results["log"] if "xfrm" not in line)[-3000:], file=sys.stderr)
                return 1
            shutil.copy(work / "out" / plan["file"], args.out / plan["file"])
            dump_keys(keys[name], args.out / f"{name}.keys.json")
            manifest["captures"][name] = {
                "file": plan["file"], "keys": f"{name}.keys.json", "kernel": results["kernel"],
                "commands_a": [_shell(["ip"] + c) for c in plan["setup_a"] + plan["xfrm_a"]],
                "commands_b": [_shell(["ip"] + c) for c in plan["setup_b"] + plan["xfrm_b"]],
                "udp_encap_socket": plan["udp_encap"],
                "capture": _shell([x.replace("{pcap}", plan["file"]) for x in plan["capture"]]),
                "echo": {"src": plan["ping_src"], "dst": plan["ping_dst"], "count": plan["count"], "payload": plan["payload"]},
                "mtu": plan["mtu"],
                "expected": {"packets": len(read_capture(args.out / plan["file"])), "echo_packets": 2 * plan["count"],
                             "replies": res["replies"]},
            }
            print(f"{name}: {res['replies']}/{plan['count']} replies -> {args.out / plan['file']}")
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
