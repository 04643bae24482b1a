// Env: the seam between wavefs and the file system for every operation a
// power cut can undo or tear.
//
// The spill, the local chunk store, the index (through RocksDB's FileSystem)
// and the files written with WriteFileDurably/WriteFileAtomically go through
// an Env. Production uses Env::Default() (plain POSIX calls). The power-cut
// tests (tests/testing/power_cut_env.h) substitute one that records what has
// been synced and, on a simulated power cut, builds the directory tree a
// machine could find after rebooting: unsynced data dropped or torn, and
// directory changes since the last directory sync kept only up to a point.
//
// Only mutating calls go through the Env: reads see the real files, which
// are the state of the running system.
//
// Thread safety: implementations are safe for concurrent calls.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "util/status.h"

namespace rocksdb {
class FileSystem;
}  // namespace rocksdb

namespace wavefs {

class Env {
 public:
  virtual ~Env() = default;

  // The process-wide POSIX Env. Never deleted.
  static Env* Default();

  // Creates path (which must not exist: O_EXCL) with the given permission
  // bits, writes data and closes it, without any fsync. direct: bypass the
  // page cache (O_DIRECT) where data is 4 KiB-aligned and the file system
  // allows it (see WriteFileAtomicallyDirect in store/file_util.h).
  virtual Status CreateFile(const std::string& path,
                            std::span<const uint8_t> data, unsigned mode,
                            bool direct) = 0;
  // Creates `to` (O_EXCL) holding the bytes of the file `from`, without any
  // fsync, like CreateFile. The default reads `from` whole and calls
  // CreateFile (test envs); the POSIX Env copies in bounded blocks.
  virtual Status CopyFile(const std::string& from, const std::string& to,
                          unsigned mode);
  // fsync(2) of a file (its data and size) or of a directory (its entries).
  virtual Status SyncPath(const std::string& path) = 0;
  // syncfs(2) of the file system holding path: everything on it.
  virtual Status SyncFs(const std::string& path) = 0;
  // rename(2); replaces an existing target.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // unlink(2) of a file; kNotFound when absent.
  virtual Status Unlink(const std::string& path) = 0;
  // mkdir(2) of one directory; kExists when present.
  virtual Status MakeDir(const std::string& path, unsigned mode) = 0;

  // The file system RocksDB should use for an index opened on this Env;
  // nullptr means RocksDB's own default (the POSIX Env does that).
  virtual std::shared_ptr<rocksdb::FileSystem> RocksFileSystem() {
    return nullptr;
  }
};

}  // namespace wavefs
