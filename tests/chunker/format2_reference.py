# Independent Python implementation of chunk format 2 (docs/format.md), used
# once to produce the golden vectors in segmented_test.cc. Not run by CI; rerun
# it by hand (needs python3-cryptography) if you ever doubt those vectors.
# Independent implementation of wavefs chunk format 2, for golden vectors.
import hashlib, struct
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
M=0xffffffff
def rotl(v,c): return ((v<<c)&M)|(v>>(32-c))
def qr(s,a,b,c,d):
    s[a]=(s[a]+s[b])&M; s[d]=rotl(s[d]^s[a],16)
    s[c]=(s[c]+s[d])&M; s[b]=rotl(s[b]^s[c],12)
    s[a]=(s[a]+s[b])&M; s[d]=rotl(s[d]^s[a],8)
    s[c]=(s[c]+s[d])&M; s[b]=rotl(s[b]^s[c],7)
def hchacha20(key,n16):
    s=list(struct.unpack('<4I',b'expand 32-byte k'))+list(struct.unpack('<8I',key))+list(struct.unpack('<4I',n16))
    for _ in range(10):
        qr(s,0,4,8,12);qr(s,1,5,9,13);qr(s,2,6,10,14);qr(s,3,7,11,15)
        qr(s,0,5,10,15);qr(s,1,6,11,12);qr(s,2,7,8,13);qr(s,3,4,9,14)
    return struct.pack('<8I',*(s[0:4]+s[12:16]))
def xseal(key,nonce24,pt):
    sub=hchacha20(key,nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b'\0'*4+nonce24[16:],pt,None)
def seal_v2(secret,pt):
    key=hashlib.blake2b(pt,digest_size=32,key=secret).digest()
    obj=b''
    for i in range(0,len(pt),65536):
        obj+=xseal(key,struct.pack('<Q',i//65536)+b'\0'*16,pt[i:i+65536])
    return key,obj,hashlib.blake2b(obj,digest_size=32).digest()
secret=bytes(range(32))
pat=bytes(((i*131+(i>>12))%251) for i in range(4<<20))
# sanity: format 1 "a" vector from docs/format.md
k=hashlib.blake2b(b'a',digest_size=32,key=secret).digest()
c=xseal(k,b'\0'*24,b'a'); assert c.hex()=='7924f8c4b0221e5978c647d18a38d96bb5', c.hex()
for name,pt in [('golden',b'wavefs golden vector 1'),('3seg',pat[:2*65536+100]),('4MiB',pat)]:
    key,obj,addr=seal_v2(secret,pt)
    print(name,len(pt),key.hex(),addr.hex(),len(obj), obj.hex() if len(obj)<100 else hashlib.sha256(obj).hexdigest())
