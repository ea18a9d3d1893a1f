"""Whether a case can run against an external device as its profile declares it, and the built-in end's side of it.

A case describes the connection it wants the device to hold (the device's side) and the built-in end's. The device
cannot be reconfigured, so the case runs only when what it wants is what the profile declares, or makes no
difference to the outcome; otherwise CannotReconfigure names the profile key that would let it run (a skip).
The built-in end then speaks to the device with the device's identities and credentials from the profile.

Proposals: the negotiation with the device as declared must come out as it would with the case's device: the same
transforms chosen (harness.ike.proposals.select, the KE payload's group preferred, as RFC 7296 s1.3 lets a responder),
or a refusal both ways; so established cases establish, and the refusals a case expects are refusals.
"""
from __future__ import annotations

import dataclasses
from ipaddress import ip_address, ip_network

from harness.crypto import TransformType
from harness.errors import CannotReconfigure, ConfigError, NoProposalChosen
from harness.ike.proposals import Proposal, parse_proposal, select
from harness.peers.connection import Auth, Connection, Identity, Lifetimes
from harness.runtime.profile import Profile

DEFAULT = Connection("default", "198.18.0.1", "198.18.0.2", Auth())  # the defaults a case did not change


def _refuse(profile: Profile, key: str, why: str) -> CannotReconfigure:
    return CannotReconfigure(f"profile {profile.path}: {key}: {why}")


def identity(value: str) -> Identity:
    """An IKE identity from the profile's text: an address, a DN (has '='), an email (has '@'), else an FQDN."""
    try:
        ip = ip_address(value)
        return Identity(f"ipv{ip.version}", str(ip))
    except ValueError:
        pass
    if "=" in value:
        return Identity("dn", value)
    return Identity("email" if "@" in value.lstrip("@") else "fqdn", value)


def _declared(profile: Profile, kind: str) -> list[Proposal]:
    return [parse_proposal(t, kind, i + 1) for i, t in enumerate(profile.proposals.get(kind, ()))]


def _outcome(offered: tuple[Proposal, ...] | list[Proposal], local: tuple[Proposal, ...] | list[Proposal],
             prefer_ke: int | None) -> frozenset[object] | None:
    """What a responder holding `local` chooses from `offered` (its transforms), None for NO_PROPOSAL_CHOSEN."""
    try:
        return frozenset(select(list(offered), list(local), prefer_ke).transforms)
    except NoProposalChosen:
        return None


def _first_ke(offer: tuple[Proposal, ...] | list[Proposal]) -> int | None:
    kes = offer[0].of_type(TransformType.KE) if offer else []
    return kes[0].id if kes else None


def _check_proposals(profile: Profile, kind: str, case_device: tuple[Proposal, ...], builtin: tuple[Proposal, ...],
                     device_initiates: bool) -> None:
    """The negotiation with the device as declared must come out as with the case's device: the same choice (by
    harness.ike.proposals.select, the KE payload's group preferred), or a refusal both ways."""
    declared = _declared(profile, kind)
    if device_initiates:  # the device offers what it holds; the built-in end chooses
        got, want = _outcome(declared, builtin, _first_ke(declared)), _outcome(case_device, builtin, _first_ke(case_device))
    else:
        ke = _first_ke(builtin)
        got, want = _outcome(builtin, declared, ke), _outcome(builtin, case_device, ke)
    if got != want:
        def show(x: frozenset[object] | None) -> str:
            return "a refusal" if x is None else "/".join(sorted(map(str, x)))

        raise _refuse(profile, f"proposals.{kind}", f"the case needs {show(want)} negotiated; the device as declared "
                                                    f"would come to {show(got)}")


def _selectors(texts: tuple[str, ...]) -> frozenset[str]:
    out = set()
    for t in texts:
        net, _, rest = t.partition("[")
        out.add(f"{ip_network(net.strip(), strict=False)}[{rest}" if rest else str(ip_network(net.strip(), strict=False)))
    return frozenset(out)


def check(profile: Profile, device: Connection, builtin: Connection, device_initiates: bool) -> None:
    """CannotReconfigure naming the profile key when the device as declared cannot be the case's `device` side."""
    f = profile.features
    v = 6 if ":" in device.local_addr else 4
    if not (profile.ipv6 if v == 6 else profile.ipv4):
        raise _refuse(profile, f"address.ipv{v}", f"the case runs over IPv{v}")
    if device.mode not in f.modes:
        raise _refuse(profile, "features.modes", f"the case needs {device.mode} mode")
    if not profile.proposals.get(device.protocol):
        raise _refuse(profile, f"proposals.{device.protocol}", f"the case needs {device.protocol.upper()}")
    _check_proposals(profile, "ike", device.ike_offer, builtin.ike_offer, device_initiates)
    _check_proposals(profile, device.protocol, device.child_offer, builtin.child_offer, device_initiates)
    if any("esn" in t.lower().split("-") for t in device.child_proposals + builtin.child_proposals) and not f.esn:
        raise _refuse(profile, "features.esn", "the case needs extended sequence numbers")
    if "force" in (device.encap, builtin.encap) and not f.natt:
        raise _refuse(profile, "features.natt", "the case forces UDP encapsulation (RFC 3948)")
    if (builtin.fragmentation == "force" or device.fragmentation != DEFAULT.fragmentation) and \
            (device.fragmentation == "no") != (not f.fragmentation):
        raise _refuse(profile, "features.fragmentation", f"the case needs the device's fragmentation {device.fragmentation}")
    if device.replay_window is not None and device.replay_window != f.replay_window:
        raise _refuse(profile, "features.replay_window", f"the case needs a window of {device.replay_window}")
    for field in dataclasses.fields(Lifetimes):
        want = getattr(device.lifetimes, field.name)
        if want is not None and f.lifetimes.get(field.name) != want:
            raise _refuse(profile, f"features.lifetimes.{field.name}", f"the case needs {want}")
    if not device.rekey:
        raise _refuse(profile, "features.lifetimes", "the case needs the device never to rekey")
    if device.dpd.delay:
        raise _refuse(profile, "control", "the case needs the device's DPD configured (no profile key declares it)")
    if device.childless != DEFAULT.childless:
        raise _refuse(profile, "control", f"the case needs the device's childless = {device.childless} (no profile key)")
    own = (f"{device.local_addr}/{32 if v == 4 else 128}",)
    if _selectors(device.local_selectors()) != _selectors(f.local_ts or own):
        raise _refuse(profile, "features.local_ts", f"the case needs the device's selectors {list(device.local_selectors())}")
    if _selectors(device.remote_selectors()) != _selectors(f.remote_ts or (f"{device.remote_addr}/{32 if v == 4 else 128}",)):
        raise _refuse(profile, "features.remote_ts", f"the case needs the device to accept {list(device.remote_selectors())}")
    who = "device" if device_initiates else "tester"
    if who not in f.initiators:
        raise _refuse(profile, "features.initiators", f"the case needs the {who} to initiate")
    if device_initiates and not profile.control.initiate:
        raise _refuse(profile, "control.initiate", "the case needs the device to initiate on command")
    for side, ident in (("local", builtin.local_id), ("remote", builtin.remote_id)):
        addr = builtin.local_addr if side == "local" else builtin.remote_addr
        if ident is not None and ident.value != addr:
            raise _refuse(profile, f"identity.{'remote' if side == 'local' else 'local'}",
                          f"the case needs the identity {ident.value}")
    if device.auth.method == "psk":
        if profile.credentials.psk is None:
            raise _refuse(profile, "credentials.psk", "the case authenticates with a PSK")
        if builtin.auth.method != "psk" or builtin.auth.psk != device.auth.psk:
            raise _refuse(profile, "credentials.psk", "the case needs the two ends to hold different credentials")
    else:
        if profile.credentials.certificate is None:
            raise _refuse(profile, "credentials.certificate", "the case authenticates with certificates")
        if device.auth.signature or builtin.auth.signature or device.auth.chain_pem:
            raise _refuse(profile, "credentials", "the case needs a chosen signature scheme or chain on the device")


def builtin_side(profile: Profile, builtin: Connection) -> Connection:
    """The built-in end's connection with the device's identities and the tester's credentials from the profile."""
    c = profile.credentials
    if c.psk is not None and builtin.auth.method == "psk":
        try:
            auth = Auth("psk", psk=c.psk.decode())
        except UnicodeDecodeError:
            raise ConfigError(f"{profile.path}: credentials.psk: not UTF-8 text") from None
    else:
        assert c.certificate and c.key and c.ca
        auth = Auth("pubkey", cert_pem=c.certificate.read_text(), key_pem=c.key.read_text(), ca_pem=c.ca.read_text())
    return dataclasses.replace(builtin, auth=auth, local_id=identity(profile.remote_id), remote_id=identity(profile.local_id))


def fit(profile: Profile, device: Connection, builtin: Connection, device_initiates: bool) -> Connection:
    """check(), then the built-in end's side (builtin_side)."""
    check(profile, device, builtin, device_initiates)
    return builtin_side(profile, builtin)
