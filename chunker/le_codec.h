// Little-endian integer codec shared by every encoder in chunker/
// (docs/format.md: all integers are little-endian). Writer appends to a
// string; Reader consumes a string_view and fails (returns false) rather
// than run past the end. Values; not thread-safe per instance.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace wavefs {

// Appends little-endian integers and raw bytes to a string.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { Le(v, 2); }
  void U32(uint32_t v) { Le(v, 4); }
  void U64(uint64_t v) { Le(v, 8); }
  template <size_t N>
  void Bytes(const std::array<uint8_t, N>& b) {
    out_->append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void Raw(std::string_view b) { out_->append(b); }

 private:
  void Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::string* out_;
};

// Reads little-endian integers and raw bytes; every read fails (returns
// false) rather than run past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  size_t remaining() const { return in_.size() - pos_; }
  size_t pos() const { return pos_; }
  bool U8(uint8_t* v) {
    uint64_t x;
    if (!Le(1, &x)) return false;
    *v = static_cast<uint8_t>(x);
    return true;
  }
  bool U16(uint16_t* v) {
    uint64_t x;
    if (!Le(2, &x)) return false;
    *v = static_cast<uint16_t>(x);
    return true;
  }
  bool U32(uint32_t* v) {
    uint64_t x;
    if (!Le(4, &x)) return false;
    *v = static_cast<uint32_t>(x);
    return true;
  }
  bool U64(uint64_t* v) { return Le(8, v); }
  template <size_t N>
  bool Bytes(std::array<uint8_t, N>* b) {
    if (remaining() < b->size()) return false;
    std::memcpy(b->data(), in_.data() + pos_, b->size());
    pos_ += b->size();
    return true;
  }
  // The next n bytes as a view into the input (false when fewer remain).
  bool Raw(size_t n, std::string_view* out) {
    if (remaining() < n) return false;
    *out = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }

 private:
  bool Le(size_t n, uint64_t* v) {
    if (remaining() < n) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; ++i) {
      x |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_ + i]))
           << (8 * i);
    }
    pos_ += n;
    *v = x;
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace wavefs
