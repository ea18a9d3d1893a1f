"""The project's typed errors: everything raised on purpose derives from IpsecInteropError."""
from __future__ import annotations


class IpsecInteropError(Exception):
    """Root of every error the project raises on purpose."""


class ParseError(IpsecInteropError, ValueError):
    """Malformed input: names the structure, the field, its byte offset and what was wrong."""

    def __init__(self, what: str, field: str, offset: int, reason: str) -> None:
        self.what, self.field, self.offset, self.reason = what, field, offset, reason
        super().__init__(f"{what}: {field} at offset {offset}: {reason}")


class UnknownTransform(IpsecInteropError, LookupError):
    """A transform name or IANA number that the registry does not know."""


class KeyMaterialError(IpsecInteropError, ValueError):
    """Keying material of the wrong length or form for its transform."""


class IntegrityError(IpsecInteropError):
    """An ICV or AEAD tag did not verify."""


class KeyExchangeError(IpsecInteropError, ValueError):
    """A key-exchange public value that is malformed or not in the group."""


class ConfigError(IpsecInteropError, ValueError):
    """A configuration, profile or keys file that is invalid; names the file and the key."""


class LabError(IpsecInteropError):
    """The lab (namespaces, runtimes, peers) could not be set up, controlled or torn down."""


class LabUnavailable(LabError):
    """A runtime, image or peer the lab needs is not available on this host: tests skip with this reason."""


class IkeError(IpsecInteropError):
    """An IKEv2 failure mapping to the RFC 7296 s3.10.1 error Notify named by `notify` (to send, or as received)."""

    notify = "INVALID_SYNTAX"

    def __init__(self, message: str, notify: str | None = None, data: bytes = b"") -> None:
        super().__init__(message)
        if notify is not None:
            self.notify = notify
        self.data = data


class AuthenticationFailed(IkeError):
    """The peer's AUTH payload, certificate or identity did not verify (AUTHENTICATION_FAILED)."""

    notify = "AUTHENTICATION_FAILED"


class NoProposalChosen(IkeError):
    """No acceptable proposal, or a chosen proposal the initiator did not offer (NO_PROPOSAL_CHOSEN)."""

    notify = "NO_PROPOSAL_CHOSEN"


class TsUnacceptable(IkeError):
    """The traffic selectors do not intersect the local policy (TS_UNACCEPTABLE)."""

    notify = "TS_UNACCEPTABLE"


class CannotReconfigure(LabError):
    """An external device the harness does not control cannot be reconfigured: tests needing that are skipped."""


class UnknownName(IpsecInteropError, LookupError):
    """A name or number that an IKEv2 IANA registry table (harness/ike/registry) does not hold."""


class IkeParseError(ParseError, IkeError):
    """A malformed IKEv2 message: names payload, field and offset, and the error Notify (`notify`, `data`) to answer with."""

    def __init__(self, payload: str, field: str, offset: int, reason: str,
                 notify: str = "INVALID_SYNTAX", data: bytes = b"") -> None:
        ParseError.__init__(self, f"IKEv2 {payload}", field, offset, reason)
        self.payload, self.notify, self.data = payload, notify, data


class PacketDropped(IpsecInteropError):
    """An inbound ESP/AH packet the receiver discards; `reason` is one of harness.esp.DROP_REASONS."""

    def __init__(self, reason: str, message: str, spi: int | None = None, seq: int | None = None) -> None:
        self.reason, self.spi, self.seq = reason, spi, seq
        Exception.__init__(self, f"{reason}: {message}")


class MalformedPacket(PacketDropped, ParseError):
    """A dropped packet whose structure is wrong: reason "malformed", what/field/offset as ParseError, detail says why."""

    def __init__(self, what: str, field: str, offset: int, reason: str, spi: int | None = None, seq: int | None = None) -> None:
        self.what, self.field, self.offset = what, field, offset
        PacketDropped.__init__(self, "malformed", f"{what}: {field} at offset {offset}: {reason}", spi, seq)
        self.detail = reason


class SequenceNumberOverflow(IpsecInteropError):
    """An SA's sequence number would cycle (RFC 4303 s3.3.3): it must be rekeyed first."""


class PeerFault(IpsecInteropError, AssertionError):
    """The end under test broke or refused what a case requires, or did not answer: the verdict FAILED.

    An AssertionError, so pytest and Allure grade it as a failed check (not a broken harness). `requirement`
    names what was broken (e.g. "RFC 7296 s1.2 MUST"), `notify` the error Notify received, if any.
    """

    def __init__(self, message: str, requirement: str = "", notify: str | None = None) -> None:
        self.requirement, self.notify = requirement, notify
        super().__init__(f"{requirement}: {message}" if requirement else message)


class Refused(PeerFault):
    """The end answered a request with an error Notify (`notify`) where the case needed it accepted."""


class NoAnswer(PeerFault):
    """The end did not answer (or did not reach the expected state) within the case's generous bound."""


class NotEstablished(PeerFault):
    """An end's negotiation ended without the SA the case needed (its log tail says what it did)."""


class DaemonDied(PeerFault):
    """The peer's IKE daemon exited while the case ran (a crash): the verdict FAILED, the lab is rebuilt after it."""


class Unimplemented(IpsecInteropError):
    """The end lacks a feature or transform the case needs: the verdict UNIMPLEMENTED, with this reason."""


class UnsupportedProposal(ConfigError, Unimplemented):
    """A proposal keyword an implementation cannot express or does not support; names the proposal and the keyword."""

    def __init__(self, implementation: str, proposal: str, keyword: str, reason: str) -> None:
        self.implementation, self.proposal, self.keyword, self.reason = implementation, proposal, keyword, reason
        super().__init__(f"{implementation}: proposal {proposal!r}: keyword {keyword!r}: {reason}")


class UnsupportedFeature(ConfigError, Unimplemented):
    """A connection setting an implementation cannot express; names the implementation and the setting."""
