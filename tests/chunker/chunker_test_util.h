// Inputs shared by the chunker tests. The secret and the pattern formula are
// part of the frozen golden vectors (docs/format.md, section 8): never change
// them.
#pragma once

#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "chunker/types.h"

namespace wavefs::chunker_test {

// The secret every golden vector uses: bytes 0, 1, ..., 31.
inline Secret GoldenSecret() {
  Secret s{};
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(i);
  return s;
}

// The golden plaintext pattern: byte i is (i * 131 + (i >> 12)) % 251.
inline std::vector<uint8_t> GoldenPattern(size_t len = kChunkSize) {
  std::vector<uint8_t> p(len);
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = static_cast<uint8_t>((i * 131 + (i >> 12)) % 251);
  }
  return p;
}

// Pseudo-random but reproducible plaintext of `len` bytes.
inline std::vector<uint8_t> RandomBytes(size_t len, uint8_t seed_byte) {
  std::vector<uint8_t> p(len);
  unsigned char seed[randombytes_SEEDBYTES] = {};
  seed[0] = seed_byte;
  randombytes_buf_deterministic(p.data(), p.size(), seed);
  return p;
}

}  // namespace wavefs::chunker_test
