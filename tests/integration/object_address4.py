#!/usr/bin/env python3
# object_address4.py FILE: the address of a format-4 chunk object
# (docs/format.md, 2d), computed from the object's bytes alone: SHA-256 of
# the label, the plaintext length, the 32-byte trailer and each segment's
# tag. Prints nothing and exits 1 when no chunk seals to the file's size.
import hashlib, struct, sys

SEALED, TAG, TRAILER = 65536 + 16, 16, 32
obj = open(sys.argv[1], 'rb').read()
body = len(obj) - TRAILER
segments = -(-body // SEALED) if body > 0 else 0
length = body - segments * TAG
if segments == 0 or length <= 0 or length > 4 << 20 or \
        length + -(-length // 65536) * TAG != body:
    sys.exit(1)
tags = b''.join(obj[i * SEALED + min(65536, length - i * 65536):][:TAG]
                for i in range(segments))
print(hashlib.sha256(b'wavefs format 4 address' + struct.pack('<Q', length) +
                     obj[body:] + tags).hexdigest())
