// Helpers shared by the store tests: a temporary directory, deterministic
// addresses and bytes, small file helpers and status assertions.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chunker/types.h"
#include "util/status.h"

#define WAVEFS_ASSERT_OK(expr)             \
  do {                                     \
    const ::wavefs::Status _s = (expr);    \
    ASSERT_TRUE(_s.ok()) << _s.ToString(); \
  } while (0)
#define WAVEFS_EXPECT_OK(expr)             \
  do {                                     \
    const ::wavefs::Status _s = (expr);    \
    EXPECT_TRUE(_s.ok()) << _s.ToString(); \
  } while (0)

namespace wavefs::testing_util {

// Polls pred every few milliseconds until it holds or timeout passes.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// Sets an environment variable for one test and puts it back after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/wavefs-store-test.XXXXXX";
    if (::mkdtemp(name) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed: " << std::strerror(errno);
    } else {
      path_ = name;
    }
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    // Files made read-only by a test must not stop the clean-up.
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const {
    return path_ + "/" + name;
  }

 private:
  std::string path_;
};

// Distinct seeds give distinct addresses; the first byte varies with the
// seed so the objects spread over many shards.
inline Address MakeAddress(uint32_t seed) {
  Address a{};
  a[0] = static_cast<uint8_t>(seed * 37);
  a[1] = static_cast<uint8_t>(seed);
  a[2] = static_cast<uint8_t>(seed >> 8);
  a[3] = static_cast<uint8_t>(seed >> 16);
  a[4] = static_cast<uint8_t>(seed >> 24);
  for (size_t i = 5; i < a.size(); ++i) a[i] = static_cast<uint8_t>(0xa5 ^ i);
  return a;
}

inline std::vector<uint8_t> MakeBytes(size_t size, uint32_t seed) {
  std::vector<uint8_t> bytes(size);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : bytes) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x);
  }
  return bytes;
}

inline void WriteTestFile(const std::string& path, const std::string& text,
                          mode_t mode = 0644) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  ASSERT_TRUE(out) << "cannot write " << path;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

inline void WriteTestFile(const std::string& path,
                          const std::vector<uint8_t>& bytes) {
  WriteTestFile(path, std::string(bytes.begin(), bytes.end()));
}

inline std::string ReadTestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

inline mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// Entry names of a directory (not recursive).
inline std::set<std::string> NamesIn(const std::string& dir) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

}  // namespace wavefs::testing_util
