// PageCipher: seals a dirty buffer that leaves memory before its file is
// done with it (store/page_out.h), under a key that exists only in this
// process.
//
// AES-256-GCM (OpenSSL EVP: AES-NI and carry-less multiply where the CPU
// has them) with a random key drawn at construction and never written
// anywhere; nonces are a counter, so no (key, nonce) pair repeats. What it
// seals is scratch: gone with the process, never named by the index or the
// store, so it need not be convergent and costs one pass each way instead
// of a chunk seal's three (chunker/crypto.h). The additional data binds a
// sealed unit to the place it was written to.
//
// Thread safety: thread-safe (each call uses a context of its own).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace wavefs {

inline constexpr size_t kPageTagSize = 16;

struct PageSeal {
  uint64_t nonce = 0;
  std::array<uint8_t, kPageTagSize> tag{};
};

class PageCipher {
 public:
  PageCipher();   // draws the key
  ~PageCipher();  // wipes it
  PageCipher(const PageCipher&) = delete;
  PageCipher& operator=(const PageCipher&) = delete;

  // Encrypts in[0, len) to out (which may be in) for `unit` (where it is
  // written: bound in as additional data).
  PageSeal Seal(uint64_t unit, const uint8_t* in, uint8_t* out, size_t len);
  // Decrypts data[0, len) in place; false (data wiped) when the tag does
  // not verify for this unit and seal.
  bool Open(uint64_t unit, const PageSeal& seal, uint8_t* data, size_t len);

 private:
  std::array<uint8_t, 32> key_{};
  std::atomic<uint64_t> next_nonce_{1};
};

}  // namespace wavefs
