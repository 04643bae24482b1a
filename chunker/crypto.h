// Convergent encryption of one chunk (docs/format.md).
//
// Formats 1 and 2 (libsodium):
//   key        = BLAKE2b-256(key = secret, message = plaintext)
//   format 1:  ciphertext = XChaCha20-Poly1305-IETF(key, nonce = 24 zero
//              bytes, no AD), the encrypted bytes followed by the 16-byte tag
//   format 2:  the plaintext is cut into 64 KiB segments; segment i is sealed
//              like format 1 but with nonce = u64le(i) || 16 zero bytes, and
//              the object is the sealed segments back to back
//   address    = BLAKE2b-256(object), unkeyed
// Format 3 (OpenSSL, AES-NI and SHA-NI on x86-64):
//   key        = HMAC-SHA-256(key = secret, message = plaintext)
//   object     = the segments of format 2, each AES-256-GCM(key,
//                nonce = u64le(i) || 4 zero bytes, no AD) followed by its tag
//   address    = SHA-256(object)
// Format 4 (OpenSSL; docs/format.md 2d):
//   prk        = HMAC-SHA-256(key = secret, message = plaintext)
//   key        = HMAC-SHA-256(prk, "wavefs format 4 key" || 0x01)
//   commitment = HMAC-SHA-256(prk, "wavefs format 4 commitment" || 0x01)
//   object     = format 3's segments under key, then the commitment
//   address    = SHA-256("wavefs format 4 address" || u64le(length) ||
//                commitment || tag of segment 0 || tag of segment 1 ...)
//   The address covers ~1 KiB of a 4 MiB object, so a check without the
//   key sees a changed size, trailer or tag but not a change confined to a
//   segment's ciphertext; under the key every tag catches that.
//
// The nonces are safe: a key encrypts exactly one plaintext, and within it
// every segment has its own nonce. All functions are pure and thread-safe
// once InitCrypto() has returned ok. Sealing and opening work in place so a
// 4 MiB chunk never needs a second 4 MiB buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "chunker/types.h"
#include "util/status.h"

namespace wavefs {

// Calls sodium_init(); must succeed once before anything below is used.
Status InitCrypto();

// True when every byte is zero (such chunks are stored as holes).
bool IsAllZero(std::span<const uint8_t> bytes);

ChunkKey DeriveChunkKey(ChunkFormat format, const Secret& secret,
                        std::span<const uint8_t> plaintext);

// The address of an object of a store of `format`: what every check of a
// stored or staged object against its name computes. Format 4: all zeros
// (no chunk's address) when no chunk seals to the object's size.
Address AddressOf(ChunkFormat format, std::span<const uint8_t> ciphertext);

// Seals the chunk held in buf[0, len): a hole ref when it is all zeros (buf
// untouched), else derives the key and seals in place, so
// buf[0, CiphertextSize(format, len)) holds the object on return. `buf` must
// have room for CiphertextSize(format, len) bytes; len <= kChunkSize.
ChunkRef SealChunk(const Secret& secret, ChunkFormat format, uint8_t* buf,
                   size_t len);
// Opens a whole object buf[0, ct_len) in place under ref.key: on ok,
// buf[0, ref.length) holds the plaintext. Returns kCorrupt when a tag does
// not verify, when ct_len != CiphertextSize(format, ref.length), or (when
// check_address) when AddressOf(format, object) != ref.address. Never leaves
// unauthenticated plaintext behind on failure (buf is zeroed).
Status OpenChunk(const ChunkRef& ref, ChunkFormat format, uint8_t* buf,
                 size_t ct_len, bool check_address);

// The part of a segmented (format 2 or 3) object that holds plaintext [offset,
// offset + len) of a chunk: whole segments, so the range may start earlier and
// end later.
struct SegmentRange {
  uint64_t first = 0;      // first segment index
  uint64_t count = 0;      // segments
  uint64_t ct_offset = 0;  // where they start in the object
  uint64_t ct_len = 0;     // their sealed size
  uint64_t pt_offset = 0;  // plaintext offset of the first segment
  uint64_t pt_len = 0;     // plaintext they hold
};
// Requires 0 < len and offset + len <= chunk_len.
SegmentRange SegmentsCovering(uint64_t chunk_len, uint64_t offset,
                              uint64_t len);
// Opens the sealed segments of `range` (a format-2 or -3 object's bytes
// [range.ct_offset, range.ct_offset + range.ct_len), in buf[0, ct_len)) in
// place: on ok buf[0, range.pt_len) holds plaintext from range.pt_offset.
// kCorrupt when ct_len != range.ct_len or a tag does not verify (buf zeroed).
Status OpenSegments(const ChunkRef& ref, ChunkFormat format,
                    const SegmentRange& range, uint8_t* buf, size_t ct_len);

}  // namespace wavefs
