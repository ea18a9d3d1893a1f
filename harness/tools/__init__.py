"""Tools around the stack: capture files, capture decryption, tshark runs, kernel-made captures."""
