#include "chunker/page_cipher.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace wavefs {
namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "wavefs: OpenSSL %s failed\n", what);
  std::abort();
}

using Ctx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// 96-bit GCM nonce: the counter, then zeros.
std::array<uint8_t, 12> NonceOf(uint64_t n) {
  std::array<uint8_t, 12> out{};
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  return out;
}

std::array<uint8_t, 8> UnitAd(uint64_t unit) {
  std::array<uint8_t, 8> out{};
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(unit >> (8 * i));
  return out;
}

Ctx Start(const std::array<uint8_t, 32>& key, uint64_t nonce, uint64_t unit,
          int enc) {
  Ctx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  Check(ctx != nullptr, "EVP_CIPHER_CTX_new");
  const auto iv = NonceOf(nonce);
  Check(EVP_CipherInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(),
                          iv.data(), enc) == 1,
        "AES-GCM init");
  const auto ad = UnitAd(unit);
  int out = 0;
  Check(EVP_CipherUpdate(ctx.get(), nullptr, &out, ad.data(),
                         static_cast<int>(ad.size())) == 1,
        "AES-GCM additional data");
  return ctx;
}

}  // namespace

PageCipher::PageCipher() { randombytes_buf(key_.data(), key_.size()); }

PageCipher::~PageCipher() { sodium_memzero(key_.data(), key_.size()); }

PageSeal PageCipher::Seal(uint64_t unit, const uint8_t* in, uint8_t* out,
                          size_t len) {
  PageSeal seal;
  seal.nonce = next_nonce_.fetch_add(1);
  Ctx ctx = Start(key_, seal.nonce, unit, 1);
  int n = 0;
  Check(EVP_EncryptUpdate(ctx.get(), out, &n, in, static_cast<int>(len)) == 1,
        "AES-GCM encrypt");
  Check(EVP_EncryptFinal_ex(ctx.get(), out + n, &n) == 1, "AES-GCM final");
  Check(
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG,
                          static_cast<int>(kPageTagSize), seal.tag.data()) == 1,
      "AES-GCM tag");
  return seal;
}

bool PageCipher::Open(uint64_t unit, const PageSeal& seal, uint8_t* data,
                      size_t len) {
  Ctx ctx = Start(key_, seal.nonce, unit, 0);
  int out = 0;
  Check(EVP_DecryptUpdate(ctx.get(), data, &out, data, static_cast<int>(len)) ==
            1,
        "AES-GCM decrypt");
  std::array<uint8_t, kPageTagSize> tag = seal.tag;
  Check(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG,
                            static_cast<int>(tag.size()), tag.data()) == 1,
        "AES-GCM tag");
  if (EVP_DecryptFinal_ex(ctx.get(), data + out, &out) == 1) return true;
  // GCM decrypts before it checks: what is there is unauthenticated.
  sodium_memzero(data, len);
  return false;
}

}  // namespace wavefs
