#!/usr/bin/python3
"""PID 1 of the capture guest (User-Mode Linux, hostfs root mounted read-only).

Run by harness/tools/make_kernel_captures.py, never by hand. Standard library only: it runs
under the guest's view of the host's /usr/bin/python3. It reads the plan named by the
CAPTURE_PLAN environment variable (kernel command line KEY=VALUE), loads the IPsec modules,
and for each scenario: two network namespaces joined by a veth pair, the plan's `ip xfrm`
commands, a capture of the protected packets, ICMP echo requests from A to B. It writes
the pcaps and results.json into the plan's output folder (a hostfs mount) and powers off.
"""
import ctypes
import json
import os
import subprocess
import sys
import time
import traceback

LOG = []


def log(msg):
    LOG.append(msg)
    print(msg, flush=True)


def run(argv, check=True, timeout=30):
    """Run a command, log it and its output; raise on failure when check."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True)
    log("$ " + " ".join(argv) + ("\n" + p.stdout.rstrip() if p.stdout.strip() else ""))
    if check and p.returncode:
        raise RuntimeError(f"{argv[0]} exited {p.returncode}")
    return p.stdout


def load_modules(names, root):
    """Load modules and their dependencies from root's modules.dep with finit_module (the guest has no kmod)."""
    deps = {}
    with open(f"{root}/modules.dep") as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[os.path.basename(path)[:-3].replace("-", "_")] = (path, [os.path.basename(d)[:-3].replace("-", "_") for d in rest.split()])
    libc = ctypes.CDLL(None, use_errno=True)
    loaded = set()

    def load(name):
        name = name.replace("-", "_")
        if name in loaded or name not in deps:  # not in modules.dep: built in
            return
        path, needs = deps[name]
        for d in needs:
            load(d)
        fd = os.open(f"{root}/{path}", os.O_RDONLY)
        try:
            if libc.syscall(313, fd, b"", 0) != 0 and ctypes.get_errno() != 17:  # finit_module; EEXIST is fine
                raise OSError(ctypes.get_errno(), f"finit_module {name}")
        finally:
            os.close(fd)
        loaded.add(name)

    for n in names:
        load(n)
    log("modules: " + " ".join(sorted(loaded)))


def ping(ns, src, dst, count, payload):
    """ICMP echo requests from src to dst inside namespace ns; returns how many replies came back."""
    code = r'''
import socket, struct, sys, time, os
src, dst, count, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
v6 = ":" in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
s.bind((src, 0)); s.settimeout(2.0)
if not v6:
    s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: DF clear, fragmenting allowed
def csum(b):
    b += b"\0" * (len(b) % 2); t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
ident, got = os.getpid() & 0xffff, 0
for seq in range(1, count + 1):
    typ = 128 if v6 else 8
    hdr = struct.pack("!BBHHH", typ, 0, 0, ident, seq)
    msg = hdr + payload
    if not v6:
        msg = struct.pack("!BBHHH", typ, 0, csum(msg), ident, seq) + payload
    s.sendto(msg, (dst, 0))
    end = time.time() + 2
    while time.time() < end:
        try:
            data = s.recv(4096)
        except socket.timeout:
            break
        icmp = data if v6 else data[(data[0] & 15) * 4:]
        if icmp[0] == (129 if v6 else 0) and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
            got += 1
            break
    time.sleep(0.2)
print(got)
'''
    out = run(["ip", "netns", "exec", ns, sys.executable, "-c", code, src, dst, str(count), payload.hex()], timeout=60)
    return int(out.strip().splitlines()[-1])


def udp_encap_holder(ns, family):
    """A process in ns holding a UDP 4500 socket with UDP_ENCAP_ESPINUDP, so the kernel decapsulates."""
    code = ("import socket,time;s=socket.socket(socket.%s,socket.SOCK_DGRAM);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            "s.bind(('',4500));s.setsockopt(17,100,2);print('ready',flush=True);time.sleep(600)") % ("AF_INET6" if family == 6 else "AF_INET")
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    return p


def scenario(sc, out_dir):
    a, b = "cap-a", "cap-b"
    for ns in (a, b):
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "link", "add", "veth-a", "netns", a, "address", sc["mac_a"], "type", "veth", "peer", "name", "veth-b", "netns", b, "address", sc["mac_b"]])
    for ns, dev, cmds in ((a, "veth-a", sc["setup_a"]), (b, "veth-b", sc["setup_b"])):
        if sc.get("mtu"):
            run(["ip", "-n", ns, "link", "set", dev, "mtu", str(sc["mtu"])])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
        for c in cmds:
            run(["ip", "-n", ns] + c)
    for ns, cmds in ((a, sc["xfrm_a"]), (b, sc["xfrm_b"])):
        for c in cmds:
            run(["ip", "-n", ns] + c)
    holders = [udp_encap_holder(ns, sc["family"]) for ns in (a, b)] if sc.get("udp_encap") else []
    pcap = os.path.join(out_dir, sc["file"])
    cap = subprocess.Popen(["ip", "netns", "exec", a] + [x.replace("{pcap}", pcap) for x in sc["capture"]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(sc.get("capture_settle", 2.0))
    replies = ping(a, sc["ping_src"], sc["ping_dst"], sc["count"], bytes.fromhex(sc["payload"]))
    if sc.get("stop_capture"):
        time.sleep(1.0)
        cap.terminate()  # tcpdump without -c: stop it (our own child) once the echoes are done
    try:
        cap_out, _ = cap.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        cap.terminate()
        cap_out, _ = cap.communicate(timeout=5)
    log(cap_out.rstrip())
    stats = {ns: run(["ip", "-n", ns, "-s", "xfrm", "state"]) for ns in (a, b)}
    for h in holders:
        h.terminate()
        h.wait(timeout=5)
    for ns in (a, b):
        run(["ip", "netns", "del", ns])
    return {"name": sc["name"], "replies": replies, "capture_exit": cap.returncode, "xfrm_state_stats": stats}


def main():
    plan = json.load(open(os.environ["CAPTURE_PLAN"]))
    out_dir = plan["out_dir"]
    results = {"kernel": " ".join(os.uname()[2:4]), "scenarios": [], "error": None}
    try:
        for fs, target in (("proc", "/proc"), ("sysfs", "/sys"), ("tmpfs", "/run"), ("tmpfs", "/tmp")):
            run(["mount", "-t", fs, fs, target])
        run(["mount", "-t", "hostfs", "-o", out_dir, "hostfs", "/mnt"])
        load_modules(plan["modules"], plan["modules_root"])
        for sc in plan["scenarios"]:
            results["scenarios"].append(scenario(sc, "/mnt"))
    except (OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError):  # PID 1 reports, then powers off
        results["error"] = traceback.format_exc()
        log(results["error"])
    results["log"] = LOG
    try:
        with open("/mnt/results.json", "w") as f:
            json.dump(results, f, indent=1)
    finally:
        os.sync()
        ctypes.CDLL(None).reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF: the UML process exits


if __name__ == "__main__":
    main()
