#include "store/store_config.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <map>
#include <string_view>
#include <vector>

#include "store/file_util.h"

namespace wavefs {
namespace {

constexpr size_t kStoreIdBytes = 16;
constexpr size_t kSecretHexLength = 2 * sizeof(Secret);
// A key file is 65 bytes; anything far larger is not one (and is not read
// into memory whole).
constexpr off_t kMaxKeyFileSize = 4096;

std::string ParentOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string_view Trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  size_t end = s.find_last_not_of(kSpace);
  return s.substr(begin, end - begin + 1);
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

template <typename T>
bool ParseNumber(std::string_view text, T* out) {
  if (text.empty()) return false;
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

Status EnsureSodium() {
  if (sodium_init() < 0) {
    return Status::Error(Code::kIo, "libsodium failed to initialise");
  }
  return Status::Ok();
}

std::string ConfigPathOf(const std::string& store_dir) {
  return store_dir + "/" + kStoreConfigName;
}

}  // namespace

Status CheckNewStoreFormat(int format) {
  if (format >= kOldestStoreFormat && format <= kNewestStoreFormat)
    return Status::Ok();
  return Status::Error(Code::kInvalid,
                       "store format " + std::to_string(format) +
                           " does not exist (formats " +
                           std::to_string(kOldestStoreFormat) + " to " +
                           std::to_string(kNewestStoreFormat) + ")");
}

Result<StoreConfig> InitStoreDir(const std::string& store_dir, int format) {
  WAVEFS_RETURN_IF_ERROR(CheckNewStoreFormat(format));
  WAVEFS_RETURN_IF_ERROR(EnsureSodium());
  WAVEFS_RETURN_IF_ERROR(MakeDirs(store_dir));
  const std::string config_path = ConfigPathOf(store_dir);
  struct stat st;
  if (::stat(config_path.c_str(), &st) == 0) {
    return Status::Error(Code::kExists,
                         store_dir + " is already a wavefs store");
  }
  if (errno != ENOENT) return Status::FromErrno(errno, "stat " + config_path);

  StoreConfig config = NewStoreConfig(format);

  // chunks/ first: the config is written last, so its presence means the
  // store is complete, and a failed init can simply be run again.
  WAVEFS_RETURN_IF_ERROR(MakeDirs(store_dir + "/chunks", 0755));
  const std::string text = EncodeStoreConfig(config);
  WAVEFS_RETURN_IF_ERROR(WriteFileDurably(
      config_path,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()),
                               text.size()),
      0644));
  return config;
}

Result<StoreConfig> ReadStoreConfig(const std::string& store_dir) {
  const std::string path = ConfigPathOf(store_dir);
  std::vector<uint8_t> bytes;
  Status st = ReadWholeFile(path, &bytes);
  if (st.code() == Code::kNotFound) {
    return Status::Error(Code::kNotFound,
                         store_dir + " is not a wavefs store (no " +
                             kStoreConfigName + "; run 'wavefs init')",
                         st.sys_errno());
  }
  WAVEFS_RETURN_IF_ERROR(st);
  return ParseStoreConfig(
      std::string_view(reinterpret_cast<const char*>(bytes.data()),
                       bytes.size()),
      path);
}

StoreConfig NewStoreConfig(int format) {
  std::array<uint8_t, kStoreIdBytes> id_bytes;
  randombytes_buf(id_bytes.data(), id_bytes.size());
  StoreConfig config;
  config.format_version = format;
  config.store_id = ToHex(id_bytes);
  return config;
}

std::string EncodeStoreConfig(const StoreConfig& config) {
  return "format=" + std::to_string(config.format_version) +
         "\nchunk_size=" + std::to_string(config.chunk_size) +
         "\nstore_id=" + config.store_id + "\n";
}

Result<StoreConfig> ParseStoreConfig(std::string_view text,
                                     const std::string& path) {
  auto corrupt = [&](const std::string& why) {
    return Status::Error(Code::kCorrupt, path + ": " + why);
  };
  std::map<std::string, std::string, std::less<>> values;
  int line_number = 0;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view()
                                             : text.substr(newline + 1);
    ++line_number;
    line = Trim(line);
    if (line.empty() || line.front() == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return corrupt("line " + std::to_string(line_number) +
                     " is not key=value");
    }
    std::string key(Trim(line.substr(0, eq)));
    std::string value(Trim(line.substr(eq + 1)));
    if (!values.emplace(key, value).second) {
      return corrupt("key '" + key + "' appears twice");
    }
  }

  StoreConfig config;
  // The version is checked before anything else: a newer format may not
  // have the other keys at all.
  auto format = values.find("format");
  if (format == values.end()) return corrupt("no format line");
  if (!ParseNumber(format->second, &config.format_version)) {
    return corrupt("bad format '" + format->second + "'");
  }
  if (config.format_version > kNewestStoreFormat) {
    return Status::Error(Code::kNotSupported,
                         "store format " +
                             std::to_string(config.format_version) +
                             " is newer than this wavefs supports (" +
                             std::to_string(kNewestStoreFormat) + ")");
  }
  if (config.format_version < kOldestStoreFormat) {
    return Status::Error(Code::kNotSupported,
                         "store format " +
                             std::to_string(config.format_version) +
                             " is not supported");
  }

  auto chunk_size = values.find("chunk_size");
  if (chunk_size == values.end()) return corrupt("no chunk_size line");
  if (!ParseNumber(chunk_size->second, &config.chunk_size)) {
    return corrupt("bad chunk_size '" + chunk_size->second + "'");
  }
  if (config.chunk_size != kChunkSize) {
    return Status::Error(
        Code::kNotSupported,
        "store chunk size " + std::to_string(config.chunk_size) +
            " is not supported (only " + std::to_string(kChunkSize) + ")");
  }

  auto store_id = values.find("store_id");
  if (store_id == values.end()) return corrupt("no store_id line");
  if (store_id->second.size() != 2 * kStoreIdBytes ||
      !IsLowerHex(store_id->second)) {
    return corrupt("bad store_id '" + store_id->second + "'");
  }
  config.store_id = store_id->second;
  return config;
}

Status CreateKeyFile(const std::string& path) {
  WAVEFS_RETURN_IF_ERROR(EnsureSodium());
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    return Status::Error(Code::kExists, "key file " + path +
                                            " already exists; not "
                                            "overwriting it");
  }
  if (errno != ENOENT) return Status::FromErrno(errno, "stat " + path);
  const std::string parent = ParentOf(path);
  if (!parent.empty()) WAVEFS_RETURN_IF_ERROR(MakeDirs(parent));

  Secret secret;
  randombytes_buf(secret.data(), secret.size());
  // 64 hex chars, a newline, and sodium_bin2hex's terminating NUL.
  std::array<char, kSecretHexLength + 2> text;
  sodium_bin2hex(text.data(), kSecretHexLength + 1, secret.data(),
                 secret.size());
  text[kSecretHexLength] = '\n';
  Status status = WriteFileDurably(
      path,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()),
                               kSecretHexLength + 1),
      0600);
  sodium_memzero(secret.data(), secret.size());
  sodium_memzero(text.data(), text.size());
  return status;
}

Result<Secret> ReadKeyFile(const std::string& path) {
  WAVEFS_RETURN_IF_ERROR(EnsureSodium());
  // O_NOFOLLOW: a symlink planted in place of the key file is refused.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      return Status::Error(Code::kNotFound, "key file " + path + " not found",
                           err);
    }
    if (err == ELOOP) {
      return Status::Error(
          Code::kPermission,
          "key file " + path + " is a symbolic link; give the real path",
          EACCES);
    }
    return Status::FromErrno(err, "open key file " + path);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno(err, "stat key file " + path);
  }
  if (!S_ISREG(st.st_mode) || st.st_size > kMaxKeyFileSize) {
    ::close(fd);
    return Status::Error(Code::kCorrupt,
                         "key file " + path + " is not a wavefs key file");
  }
  if (st.st_uid != ::geteuid()) {
    ::close(fd);
    return Status::Error(
        Code::kPermission,
        "key file " + path + " belongs to uid " + std::to_string(st.st_uid) +
            ", not to this user (uid " + std::to_string(::geteuid()) + ")",
        EACCES);
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o",
                  static_cast<unsigned>(st.st_mode & 07777));
    return Status::Error(Code::kPermission,
                         "key file " + path + " is readable by others (mode " +
                             mode + "); chmod 600 it");
  }

  std::array<char, kMaxKeyFileSize> buffer;
  size_t size = 0;
  while (size < buffer.size()) {
    ssize_t n = ::read(fd, buffer.data() + size, buffer.size() - size);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      sodium_memzero(buffer.data(), buffer.size());
      return Status::FromErrno(err, "read key file " + path);
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  ::close(fd);

  Secret secret;
  std::string_view text = Trim(std::string_view(buffer.data(), size));
  size_t secret_length = 0;
  const char* end = nullptr;
  // The message never quotes the file: it may hold most of a secret.
  bool good = text.size() == kSecretHexLength &&
              sodium_hex2bin(secret.data(), secret.size(), text.data(),
                             text.size(), nullptr, &secret_length, &end) == 0 &&
              secret_length == secret.size() &&
              end == text.data() + text.size();
  sodium_memzero(buffer.data(), buffer.size());
  if (!good) {
    sodium_memzero(secret.data(), secret.size());
    return Status::Error(
        Code::kCorrupt,
        "key file " + path + " does not hold 64 hex characters");
  }
  return secret;
}

}  // namespace wavefs
