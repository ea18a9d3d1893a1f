"""The docker runtime: a peer's image as a container on the host kernel, network_mode none, links as veth pairs.

The container runs the image's agent as PID 1 with NET_ADMIN, NET_RAW (IKE, xfrm, raw sockets) and
SYS_ADMIN (only to make its own /proc/sys/net writable). Each LinkSpec becomes a veth pair created inside
the lab namespace: `host_ifname` stays there, its peer goes straight into the container's namespace (by
the container's pid) as `guest_ifname` with `mac`. Control is the agent's unix socket reached through
/proc/<pid>/root. The container carries the label ipsec-interop.run=<RUN>; stop() removes it by id.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

from harness.errors import LabError, LabUnavailable
from harness.lab import labels
from harness.runtime import images
from harness.runtime.agent import AgentChannel, AgentNode
from harness.runtime.base import LinkSpec, NodeSpec, Runtime
from harness.lab.netns import run_in as in_netns

try:
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    _DOCKER_ERRORS: tuple[type[BaseException], ...] = (DockerException, RequestException, OSError)
except ImportError:  # the docker SDK is missing: the runtime reports itself unavailable
    _DOCKER_ERRORS = (OSError,)

AGENT_SOCKET = "run/ipsi-agent.sock"
READY_TIMEOUT = 60.0
CAPS = ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]
# docker turns IPv6 off in a network_mode=none container; the lab gives every link an IPv6 address
SYSCTLS = {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.default.disable_ipv6": "0"}


def container_kwargs(spec: NodeSpec, name: str, run: str, info: images.ImageInfo) -> dict[str, Any]:
    """The docker SDK create() arguments for spec (pure, for tests): no network, labels, caps, env."""
    lab_labels = {labels.DOCKER_LABEL: run, "ipsec-interop.node": spec.name, "ipsec-interop.role": spec.role,
                  "ipsec-interop.peer-name": info.name, **dict(spec.labels)}
    return dict(image=info.image_id, name=name, hostname=spec.name[:63], detach=True, network_mode="none",
                cap_add=list(CAPS), labels=lab_labels, environment={"IPSI_RUNTIME": "docker", **dict(spec.env)},
                sysctls=dict(SYSCTLS), init=False, tty=False, stdin_open=False)


def add_veths(lab_netns: str, pid: int, links: Sequence[LinkSpec]) -> None:
    """Create each link as a veth pair in lab_netns whose peer end lands in the netns of pid, named and addressed."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    def body() -> None:
        with IPRoute() as ipr:
            for link in links:
                try:
                    ipr.link("add", ifname=link.host_ifname, kind="veth",
                             peer={"ifname": link.guest_ifname, "address": link.mac, "net_ns_pid": pid})
                except NetlinkError as e:
                    raise LabError(f"veth {link.host_ifname} <-> {link.guest_ifname} (pid {pid}) in {lab_netns}: "
                                   f"netlink error {e.code}: {e}") from None

    in_netns(lab_netns, body)


def delete_links(lab_netns: str, links: Sequence[LinkSpec]) -> None:
    """Delete the lab ends of links now (the kernel removes them with the container's namespace, but later)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    def body() -> None:
        with IPRoute() as ipr:
            for link in links:
                for index in ipr.link_lookup(ifname=link.host_ifname):
                    try:
                        ipr.link("del", index=index)
                    except NetlinkError as e:
                        if e.code != 19:  # ENODEV: gone meanwhile
                            raise LabError(f"deleting {link.host_ifname} in {lab_netns}: {e}") from None

    try:
        in_netns(lab_netns, body)
    except LabError as e:
        if "does not exist" not in str(e):  # the lab namespace is gone: so are its links
            raise


class DockerNode(AgentNode):
    """A running container."""

    runtime = "docker"

    def __init__(self, client: Any, container: Any, name: str, spec: NodeSpec, info: images.ImageInfo) -> None:
        self.client, self.container, self.name, self.run = client, container, name, spec.run or ""
        self.image, self.version, self.role = info.name, info.version, spec.role
        self.kernel = ""
        self.pid = 0
        self.lab_netns = ""
        self.links: list[LinkSpec] = []
        self.timings: dict[str, float] = {}
        self._stopped = False

    @property
    def alive(self) -> bool:
        """True while the container runs."""
        if self._stopped:
            return False
        try:
            self.container.reload()
        except _DOCKER_ERRORS:
            return False
        return bool(self.container.attrs["State"]["Running"])

    def logs(self) -> str:
        """The container's output (the agent's log)."""
        try:
            return self.container.logs().decode(errors="replace")
        except _DOCKER_ERRORS as e:
            return f"(no logs: {e})"

    def connect(self, timeout: float) -> None:
        """Connect to the agent's socket inside the container and wait for its ready frame."""
        path = f"/proc/{self.pid}/root/{AGENT_SOCKET}"
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() >= deadline or not self.alive:
                    raise LabError(f"{self.name}: agent socket never appeared ({path})\n--- log tail ---\n"
                                   f"{self.logs()[-4000:]}") from None
                time.sleep(0.02)
        self.channel = AgentChannel(sock, self.name, self.logs)
        ready = self.channel.wait_ready(max(1.0, deadline - time.monotonic()), lambda: self.alive)
        self.kernel = str(ready.get("kernel", ""))

    def stop(self) -> None:
        """Remove the container by id (idempotent); its veth ends in the lab namespace go with its namespace."""
        if self._stopped:
            return
        self._stopped = True
        if getattr(self, "channel", None):
            self.channel.close()
        from docker.errors import APIError, NotFound

        try:
            self.container.remove(force=True)
        except NotFound:
            pass
        except APIError as e:
            raise LabError(f"{self.name}: removing container {self.container.id[:12]}: {e}") from None
        if self.links:
            delete_links(self.lab_netns, self.links)


class DockerRuntime(Runtime):
    """Containers on the host kernel."""

    name = "docker"

    def __init__(self, **_: object) -> None:
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The docker SDK client (LabUnavailable if no daemon answers)."""
        if self._client is None:
            self._client = images.docker_client()
        return self._client

    def unavailable(self) -> str | None:
        """Why containers cannot start here (no daemon), or None."""
        try:
            self.client
        except LabUnavailable as e:
            return str(e)
        return None

    def start(self, spec: NodeSpec, lab_netns: str, links: Sequence[LinkSpec]) -> DockerNode:
        """Create and start the container, hand it its veths, wait for its agent."""
        from docker.errors import APIError, ImageNotFound

        t0 = time.monotonic()
        run = labels.check_run_id(spec.run or labels.current_run_id())
        worker = labels.worker_index() if spec.worker is None else spec.worker
        name = labels.resource_name(run, worker, spec.name)
        info = images.find_image(spec.image, self.client)
        spec = NodeSpec(spec.name, spec.image, spec.role, spec.labels, spec.env, run, worker, spec.ready_timeout)
        try:
            container = self.client.containers.run(**container_kwargs(spec, name, run, info))
        except (APIError, ImageNotFound) as e:
            raise LabError(f"{name}: docker could not start {info.name}: {e}") from None
        node = DockerNode(self.client, container, name, spec, info)
        try:
            container.reload()
            node.pid = int(container.attrs["State"]["Pid"])
            if not node.pid:
                raise LabError(f"{name}: container exited at once\n{node.logs()[-4000:]}")
            node.timings["container"] = time.monotonic() - t0
            node.lab_netns, node.links = lab_netns, list(links)
            add_veths(lab_netns, node.pid, links)
            node.connect(spec.ready_timeout or READY_TIMEOUT)
        except BaseException:
            node.stop()
            raise
        node.timings["ready"] = time.monotonic() - t0
        return node


RUNTIME_CLASS = DockerRuntime
