# Independent Python implementation of chunk format 3 (docs/format.md,
# section 2c), used once to produce the golden vectors in segmented_test.cc.
# Not run by CI; rerun it by hand (needs the `cryptography` package, Debian
# python3-cryptography) if you ever doubt those vectors. It shares no code
# with wavefs: Python's hmac/hashlib and the package's AESGCM.
import hashlib, hmac, struct
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEGMENT = 65536

def seal_v3(secret, pt):
    key = hmac.new(secret, pt, hashlib.sha256).digest()
    aead = AESGCM(key)
    obj = b''
    for i in range(0, len(pt), SEGMENT):
        nonce = struct.pack('<Q', i // SEGMENT) + b'\0' * 4
        obj += aead.encrypt(nonce, pt[i:i + SEGMENT], None)  # bytes || tag
    return key, obj, hashlib.sha256(obj).digest()

secret = bytes(range(32))
pat = bytes(((i * 131 + (i >> 12)) % 251) for i in range(4 << 20))
for name, pt in [('golden', b'wavefs golden vector 1'),
                 ('3seg', pat[:2 * 65536 + 100]), ('4MiB', pat)]:
    key, obj, addr = seal_v3(secret, pt)
    print(name, len(pt), key.hex(), addr.hex(), len(obj),
          obj.hex() if len(obj) < 100 else '')
