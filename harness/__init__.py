"""ipsec-interop: an IPsec conformance and interoperability suite with its own IKEv2/ESP/AH stack."""
__version__ = "0.1.0"
