"""IANA IKEv2 registry tables as JSON data files, read by harness.ike.constants."""
