"""The lab: network namespaces, bridges as segments, tester node, NAT router, capture, labels and cleanup.

    from harness.lab import Lab
    with Lab("direct") as lab:              # topology name from topologies.json
        lab.tester.udp[(4, 500)]            # sockets live in the tester namespace
        cap = lab.capture(tmp_path)         # one pcap per segment
        lab.ping("tester", lab.node("peer").address())
"""
from harness.lab.capture import Capture, read_pcap, write_keys
from harness.lab.lab import Interface, Lab, LinkSpec, Node, Route, Segment, plan
from harness.lab.labels import DOCKER_LABEL, LABEL_PREFIX, current_run_id, new_run_id, worker_index
from harness.lab.tester import Tester
from harness.lab.topology import Topology, topologies, topology

__all__ = ["Lab", "Node", "Interface", "Segment", "Route", "LinkSpec", "Tester", "Capture", "Topology", "plan",
           "topology", "topologies", "read_pcap", "write_keys", "new_run_id", "current_run_id", "worker_index",
           "LABEL_PREFIX", "DOCKER_LABEL"]
