# Independent Python implementation of chunk format 4 (docs/format.md,
# section 2d), used once to produce the golden vectors in segmented_test.cc.
# Not run by CI; rerun it by hand (needs the `cryptography` package, Debian
# python3-cryptography) if you ever doubt those vectors. It shares no code
# with wavefs: the package's HKDF (RFC 5869) and AESGCM, Python's hashlib.
import hashlib, struct
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEGMENT = 65536

def hkdf(secret, pt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=secret,
                info=info).derive(pt)

def seal_v4(secret, pt):
    key = hkdf(secret, pt, b'wavefs format 4 key')
    commitment = hkdf(secret, pt, b'wavefs format 4 commitment')
    aead = AESGCM(key)
    obj, tags = b'', b''
    for i in range(0, len(pt), SEGMENT):
        nonce = struct.pack('<Q', i // SEGMENT) + b'\0' * 4
        sealed = aead.encrypt(nonce, pt[i:i + SEGMENT], None)  # bytes || tag
        obj += sealed
        tags += sealed[-16:]
    obj += commitment
    addr = hashlib.sha256(b'wavefs format 4 address' +
                          struct.pack('<Q', len(pt)) + commitment +
                          tags).digest()
    return key, obj, addr

secret = bytes(range(32))
pat = bytes(((i * 131 + (i >> 12)) % 251) for i in range(4 << 20))
for name, pt in [('golden', b'wavefs golden vector 1'),
                 ('3seg', pat[:2 * 65536 + 100]), ('4MiB', pat)]:
    key, obj, addr = seal_v4(secret, pt)
    print(name, len(pt), key.hex(), addr.hex(), len(obj),
          obj.hex() if len(obj) < 100 else '')
