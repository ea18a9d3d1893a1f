

def test_a_dn_id_matches_as_a_name_not_as_bytes():
    from harness.ike.auth import IdType, Identity
    from harness.ike.certs import dn_der_in_order, dn_equal

    # what charon 6.0.1 sent for leftid="CN=initiator,O=ipsec-interop" (PrintableString values, CN first)
    charon = bytes.fromhex("302c3112301006035504031309696e69746961746f7231163014060355040a130d69707365632d696e7465726f70")
    ours = dn_der_in_order("CN=initiator,O=ipsec-interop")  # UTF8String values, the same order
    assert ours != charon and dn_equal(ours, charon) and dn_equal(dn_der_in_order("CN=INITIATOR,O=IPsec-Interop"), charon)
    assert not dn_equal(dn_der_in_order("O=ipsec-interop,CN=initiator"), charon)  # RDN order is part of the name
    assert not dn_equal(dn_der_in_order("CN=responder,O=ipsec-interop"), charon)
    assert not dn_equal(b"\x30\x05\x31", charon)  # malformed: no match, no exception
    assert Identity(IdType.ID_DER_ASN1_DN, charon).matches(Identity(IdType.ID_DER_ASN1_DN, ours))
    assert not Identity(IdType.ID_FQDN, charon).matches(Identity(IdType.ID_DER_ASN1_DN, charon))
