// The one place that writes files durably, plus small POSIX helpers.
//
// WriteFileDurably: temporary name in the same directory, write, fsync,
// rename over the target, fsync the directory. On failure the temporary file
// is removed and the target is untouched. Thread-safe (temporary names are
// unique per call).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "store/env.h"
#include "util/status.h"

namespace wavefs {

// Writes all of data to fd (a file, a pipe), retrying short writes and
// EINTR; errors name `path`.
Status WriteAll(int fd, std::span<const uint8_t> data, const std::string& path);

// mode: permission bits of the new file (e.g. 0600 for key files).
// Every mutating call goes through env (store/env.h).
Status WriteFileDurably(const std::string& path, std::span<const uint8_t> data,
                        unsigned mode = 0644, Env* env = Env::Default());
// Same as WriteFileDurably but without any fsync (crash-safe against a
// killed process through the atomic rename, not against power loss).
Status WriteFileAtomically(const std::string& path,
                           std::span<const uint8_t> data, unsigned mode = 0644,
                           Env* env = Env::Default());
// Same as WriteFileAtomically, but bypasses the page cache (O_DIRECT) when
// data starts on a 4 KiB boundary and the filesystem allows it. For bulk
// ciphertext that is written once and read rarely: filling the page cache
// with it costs more CPU than the encryption (measured: 1.8 s of kernel time
// per GiB on a VM whose memory is touched for the first time).
Status WriteFileAtomicallyDirect(const std::string& path,
                                 std::span<const uint8_t> data,
                                 unsigned mode = 0644,
                                 Env* env = Env::Default());
Status FsyncPath(const std::string& path);  // a file or a directory
Status ReadWholeFile(const std::string& path, std::vector<uint8_t>* out);
// Like WriteFileDurably, with the bytes of the file `from` (copied through
// env->CopyFile, so in bounded memory on the POSIX Env).
Status CopyFileDurably(const std::string& from, const std::string& path,
                       unsigned mode, Env* env = Env::Default());
// Copies the file `from` to a new file `to` (replaced if present), in
// 1 MiB blocks, without any fsync: scratch copies nobody relies on after
// a crash.
Status CopyFilePlain(const std::string& from, const std::string& to);
// Reads exactly bytes [offset, offset + len) of a file into out (resized to
// len). kNotFound when the file is absent, kCorrupt when it is shorter.
// Uses O_DIRECT where the filesystem allows (see ReadWholeFileDirect).
Status ReadFileRange(const std::string& path, uint64_t offset, size_t len,
                     std::vector<uint8_t>* out);
// Whether the file holds exactly `bytes` (compared in 64 KiB pieces, so no
// second buffer of the file's size); kNotFound when the file is absent.
Result<bool> FileHolds(const std::string& path, std::span<const uint8_t> bytes);
// ReadWholeFile with O_DIRECT where the filesystem allows: for chunk objects,
// which are read once and decrypted into the daemon's own cache. Pulling
// them through the page cache cost ~1.8 s of kernel time per GiB on the
// benchmark VM. out gets up to 4 KiB of extra capacity for alignment.
Status ReadWholeFileDirect(const std::string& path, std::vector<uint8_t>* out);
// Tests only: false makes the *Direct functions take their buffered
// fallback path, as on a filesystem without O_DIRECT. Process-wide.
void SetDirectIoForTesting(bool enabled);
// Names of the entries of dir, without "." and "..". Read completely before
// returning, so the caller may change the directory while going through them.
Status ListDirNames(const std::string& dir, std::vector<std::string>* names);
// Creates the directory (and missing parents) with mode 0700 when absent.
Status MakeDirs(const std::string& path, unsigned mode = 0700);
// Bytes available to an unprivileged writer on the filesystem holding path.
Result<uint64_t> FreeBytes(const std::string& path);
// st_dev of path: tells whether two paths share a filesystem.
Result<uint64_t> DeviceOf(const std::string& path);

}  // namespace wavefs
