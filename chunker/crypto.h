// Convergent encryption of one chunk (docs/format.md), on libsodium.
//
//   key        = BLAKE2b-256(key = secret, message = plaintext)
//   ciphertext = XChaCha20-Poly1305-IETF(key, nonce = 24 zero bytes, no AD)
//                written as encrypted bytes followed by the 16-byte tag
//   address    = BLAKE2b-256(ciphertext || tag), unkeyed
//
// The fixed nonce is safe: a key encrypts exactly one plaintext.
// All functions are pure and thread-safe once InitCrypto() has returned ok.
// Encryption and decryption work in place so a 4 MiB chunk never needs a
// second 4 MiB buffer.
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

ChunkKey DeriveChunkKey(const Secret& secret,
                        std::span<const uint8_t> plaintext);

Address AddressOf(std::span<const uint8_t> ciphertext);

// Seals the chunk held in buf[0, len): a hole ref when it is all zeros (buf
// untouched), else derives the key, encrypts in place and appends the tag, so
// buf[0, len + kTagSize) holds the ciphertext on return. `buf` must have room
// for len + kTagSize bytes; len <= kChunkSize.
ChunkRef SealChunk(const Secret& secret, uint8_t* buf, size_t len);

// Opens ciphertext buf[0, ct_len) in place under ref.key: on ok,
// buf[0, ct_len - kTagSize) holds the plaintext. Returns kCorrupt when the
// tag does not verify, when ct_len != ref.length + kTagSize, or (when
// check_address) when BLAKE2b(ciphertext) != ref.address. Never leaves
// unauthenticated plaintext behind on failure (buf is zeroed).
Status OpenChunk(const ChunkRef& ref, uint8_t* buf, size_t ct_len,
                 bool check_address);

}  // namespace wavefs
