"""IKEv2: message codec, key schedule, authentication, proposals, traffic selectors, state machine."""
