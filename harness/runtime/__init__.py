"""Runtimes that start reference peers: docker (host kernel), uml (User-Mode Linux kernel), external (a profile)."""
from harness.runtime.base import DEFAULT_EXEC_TIMEOUT, RUNTIMES, ExecResult, LinkSpec, Node, NodeSpec, Runtime, get_runtime

__all__ = ["DEFAULT_EXEC_TIMEOUT", "RUNTIMES", "ExecResult", "LinkSpec", "Node", "NodeSpec", "Runtime", "get_runtime"]
