"""IKEv2: message codec, key schedule, authentication, proposals, traffic selectors, state machine.

Codec: message (Header, Message), payloads*, sk (SK/SKF protection, fragmentation), bend
(encoding faults), constants + registry/ (IANA tables).

Protocol:
- keys: SKEYSEED, SK_*, Child SA KEYMAT, rekeyed SKEYSEED (RFC 7296 s2.13-2.18).
- auth: identities, signed octets, PSK and signature AUTH (RFC 4754, RFC 7427); certs: test PKI.
- proposals: proposal model, strongSwan syntax, selection and checks; ts: traffic selectors, narrowing.
- natt (NAT-D, cookies), window (Message IDs, retransmission), export (ike_sas, Wireshark lines).
- endpoint.IkeEndpoint: the sans-IO initiator/responder (exchange_init, exchange_child, child, sa,
  view = its translation to the codec); config.IkeConfig and config.Bugs; events: what it reports.
- loopback (two endpoints back to back in memory), transport (asyncio UDP driver).
"""
