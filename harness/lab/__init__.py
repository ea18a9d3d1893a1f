"""The lab: network namespaces, bridges as segments, tester node, NAT router, capture, labels and cleanup.

    from harness.lab import Lab
    with Lab("direct") as lab:                  # a topology of topologies.json (direct, tunnel, nat, p2p, p2p-tunnel)
        lab.tester.udp[(4, 500)]                # tester sockets, made inside its namespace and kept open
        lab.node("peer").address("net", 6)      # planned addresses (198.18.0.0/15, 2001:db8::/32, per xdist worker)
        node = runtime.start(spec, lab.name, lab.link_specs("peer"))   # a peer's links appear in the lab namespace
        lab.attach("peer"); lab.configure_guest("peer", node.exec)     # bridged, addressed, routed
        cap = lab.capture(tmp_path)             # one pcap per segment; cap.stop(keys=[IpsecSaKeys, ...])
        lab.ping("tester", lab.node("peer").address())
        lab.connect_tcp(mgmt_address, port)     # control traffic over the management segment

Modules: labels (run ids, names, pid records), addressing, topology (+ topologies.json), netns (setns in a
thread), lab (Lab), tester, capture, ping, driver (an IKE endpoint over the tester's sockets), cleanup
(`ipsec-interop clean`), peering (runtime + adapter for a lab node), fixtures (the pytest options and fixtures).
"""
from harness.lab.capture import Capture, read_pcap, write_keys
from harness.lab.lab import Interface, Lab, LinkSpec, Node, Route, Segment, plan
from harness.lab.labels import DOCKER_LABEL, LABEL_PREFIX, current_run_id, new_run_id, worker_index
from harness.lab.tester import Tester
from harness.lab.topology import Topology, topologies, topology

__all__ = ["Lab", "Node", "Interface", "Segment", "Route", "LinkSpec", "Tester", "Capture", "Topology", "plan",
           "topology", "topologies", "read_pcap", "write_keys", "new_run_id", "current_run_id", "worker_index",
           "LABEL_PREFIX", "DOCKER_LABEL"]
