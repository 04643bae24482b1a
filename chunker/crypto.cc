#include "chunker/crypto.h"

#include <sodium.h>

#include <cassert>
#include <cstring>
#include <string>

namespace wavefs {
namespace {

static_assert(sizeof(ChunkKey) == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kTagSize == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(sizeof(Address) == crypto_generichash_BYTES);
static_assert(sizeof(Secret) >= crypto_generichash_KEYBYTES_MIN &&
              sizeof(Secret) <= crypto_generichash_KEYBYTES_MAX);
static_assert(kChunkSize <= UINT32_MAX, "ChunkRef::length is a uint32_t");

// Every chunk is sealed under its own key, so one fixed nonce never repeats
// under a key with a different plaintext.
constexpr unsigned char kNonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES] =
    {};

// Wipes the whole buffer so no unauthenticated plaintext (or half-decrypted
// bytes) outlives a failed open, then reports `message` as corruption.
Status FailOpen(uint8_t* buf, size_t ct_len, Code code, std::string message) {
  sodium_memzero(buf, ct_len);
  return Status::Error(code, std::move(message));
}

}  // namespace

Status InitCrypto() {
  if (sodium_init() < 0) {
    return Status::Error(Code::kIo, "libsodium failed to initialise");
  }
  return Status::Ok();
}

bool IsAllZero(std::span<const uint8_t> bytes) {
  // Not constant-time on purpose: whether a chunk is a hole is no secret
  // (holes are visible in the data map), and sodium_is_zero's byte-by-byte
  // loop cost 40% of the daemon's CPU while copying in.
  const uint8_t* p = bytes.data();
  size_t n = bytes.size();
  if (n == 0) return true;
  if (p[0] != 0) return false;
  // Every byte equals its successor and the first is zero.
  return std::memcmp(p, p + 1, n - 1) == 0;
}

ChunkKey DeriveChunkKey(const Secret& secret,
                        std::span<const uint8_t> plaintext) {
  ChunkKey key{};
  // Cannot fail: every length is within libsodium's bounds (static_asserts).
  crypto_generichash(key.data(), key.size(), plaintext.data(), plaintext.size(),
                     secret.data(), secret.size());
  return key;
}

Address AddressOf(std::span<const uint8_t> ciphertext) {
  Address address{};
  crypto_generichash(address.data(), address.size(), ciphertext.data(),
                     ciphertext.size(), nullptr, 0);
  return address;
}

ChunkRef SealChunk(const Secret& secret, uint8_t* buf, size_t len) {
  assert(len <= kChunkSize);
  ChunkRef ref;
  ref.length = static_cast<uint32_t>(len);
  if (IsAllZero({buf, len})) {
    ref.hole = true;
    return ref;
  }
  ref.key = DeriveChunkKey(secret, {buf, len});
  // In place (c == m) is supported by libsodium: the stream cipher XORs
  // byte by byte and the MAC is computed over the ciphertext afterwards.
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
      buf, buf + len, nullptr, buf, len, nullptr, 0, nullptr, kNonce,
      ref.key.data());
  ref.address = AddressOf({buf, len + kTagSize});
  return ref;
}

Status OpenChunk(const ChunkRef& ref, uint8_t* buf, size_t ct_len,
                 bool check_address) {
  if (ref.hole) {
    return FailOpen(buf, ct_len, Code::kInvalid,
                    "a hole chunk has no ciphertext to open");
  }
  if (ct_len != static_cast<size_t>(ref.length) + kTagSize) {
    return FailOpen(
        buf, ct_len, Code::kCorrupt,
        "chunk " + ToHex(ref.address) + " has " + std::to_string(ct_len) +
            " bytes, expected " +
            std::to_string(static_cast<size_t>(ref.length) + kTagSize));
  }
  if (check_address && AddressOf({buf, ct_len}) != ref.address) {
    return FailOpen(
        buf, ct_len, Code::kCorrupt,
        "chunk " + ToHex(ref.address) + " does not match its address");
  }
  const size_t len = ref.length;
  // libsodium checks the tag over the ciphertext before it writes any
  // plaintext, so decrypting in place is safe.
  if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
          buf, nullptr, buf, len, buf + len, nullptr, 0, kNonce,
          ref.key.data()) != 0) {
    return FailOpen(buf, ct_len, Code::kCorrupt,
                    "chunk " + ToHex(ref.address) + " failed authentication");
  }
  return Status::Ok();
}

}  // namespace wavefs
