#include "chunker/types.h"

namespace wavefs {
namespace {

// Value of one hex digit, or -1 when `c` is not one.
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string ToHex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.resize(bytes.size() * 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0x0f];
  }
  return out;
}

bool IsAddressName(std::string_view name) {
  if (name.size() != 2 * sizeof(Address)) return false;
  for (char c : name)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Result<Address> AddressFromHex(std::string_view hex) {
  Address address{};
  if (hex.size() != address.size() * 2) {
    return Status::Error(
        Code::kInvalid,
        "address must be 64 hex characters, got " + std::to_string(hex.size()));
  }
  for (size_t i = 0; i < address.size(); ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Status::Error(Code::kInvalid,
                           "address has a non-hex character at offset " +
                               std::to_string(hi < 0 ? 2 * i : 2 * i + 1));
    }
    address[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return address;
}

}  // namespace wavefs
