// PageOut: where a dirty buffer waits when its file is written all over.
//
// A file written at random offsets (fio, a database, a VM image, a torrent)
// has more chunks in play than it may hold in buffers. Its least recently
// written buffer has to leave memory, and the file will likely write to it
// again before its close. Sealing it as a chunk (two SHA-256 passes and
// AES-GCM, a stage in the spill, an index entry) only to fetch, decrypt
// and seal it again at the next write made fio's random writes ~6x
// slower than gocryptfs. A paged-out buffer is instead encrypted once under
// a key of this process (chunker/page_cipher.h) and written to a slot of
// one scratch file in the spill directory, through the page cache: the
// next write reads it back from there, most often from memory.
//
// The scratch file is unlinked from its creation (O_TMPFILE where the
// filesystem has it): nothing of it survives the process, and a crash
// loses only what no close committed, as before. Its size is bounded by
// the slot count (--page-out); when every slot is taken, or the spill is
// short of space, eviction seals the chunk as before. While no slot is in
// use the file is truncated to nothing.
//
// Thread safety: thread-safe; I/O runs outside the lock.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chunker/page_cipher.h"
#include "util/status.h"

namespace wavefs {

class PageOut {
 public:
  // dir: the spill directory; slots: chunks paged out at most (0: off).
  PageOut(std::string dir, size_t slots);
  ~PageOut();
  PageOut(const PageOut&) = delete;
  PageOut& operator=(const PageOut&) = delete;

  struct Slot {
    uint32_t index = 0;
    bool fresh = false;  // its disk space is not allocated yet
  };
  // A free slot; nullopt when all are taken, paging is off, or the scratch
  // file cannot be created (logged once; paging is then off).
  std::optional<Slot> Take();
  // Gives a slot back.
  void Free(uint32_t slot);
  // Seals buf[0, len) in place (len <= kChunkSize) and writes it to slot.
  // On failure buf holds the plaintext again.
  Result<PageSeal> Write(uint32_t slot, uint8_t* buf, uint32_t len);
  // Reads slot back into buf and opens it: kCorrupt when it does not
  // verify, kIo when it cannot be read.
  Status Read(uint32_t slot, const PageSeal& seal, uint8_t* buf, uint32_t len);

  size_t in_use() const;
  uint64_t page_outs() const;
  uint64_t page_ins() const;

 private:
  bool OpenFileLocked();

  const std::string dir_;
  const size_t slots_;
  PageCipher cipher_;
  mutable std::mutex mu_;
  int fd_ = -1;                  // under mu_ to open; read-only once open
  bool failed_ = false;          // under mu_: the file could not be created
  std::vector<uint32_t> free_;   // under mu_: slots never used go last
  std::vector<bool> allocated_;  // under mu_: written since the truncate
  size_t in_use_ = 0;            // under mu_
  uint64_t page_outs_ = 0;       // under mu_
  uint64_t page_ins_ = 0;        // under mu_
};

}  // namespace wavefs
