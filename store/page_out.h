// PageOut: where a dirty buffer waits when its file is written all over.
//
// A file written at random offsets (fio, a database, a VM image, a torrent)
// has more chunks in play than it may hold in buffers. Its least recently
// written buffer has to leave memory, and the file will likely write to it
// again before its close. Sealing it as a chunk (two SHA-256 passes and
// AES-GCM, a stage in the spill, an index entry) only to fetch, decrypt
// and seal it again at the next write made fio's random writes ~6x
// slower than gocryptfs. A paged-out buffer instead goes to a slot of one
// scratch file in the spill directory, through the page cache, in 64 KiB
// segments each encrypted under a key of this process
// (chunker/page_cipher.h). The chunk keeps its slot until it is sealed:
// the next page-out writes only the segments changed since, and bringing
// the chunk back reads only the segments a write or read needs (a 4 KiB
// write costs a segment or two each way, not 4 MiB).
//
// The scratch file is unlinked from its creation (O_TMPFILE where the
// filesystem has it): nothing of it survives the process, and a crash
// loses only what no close committed, as before. Its size is bounded by
// the slot count (--page-out); when every slot is taken, or the spill is
// short of space, eviction seals the chunk as before. While no slot is in
// use the file is truncated to nothing.
//
// Thread safety: thread-safe; I/O runs outside the lock. One slot is used
// by one thread at a time (its owner holds the file's lock or the job).
#pragma once

#include <array>
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

  // A free slot; nullopt when all are taken, paging is off, or the scratch
  // file cannot be created (logged once; paging is then off).
  std::optional<uint32_t> Take();
  // Gives a slot back.
  void Free(uint32_t slot);
  // The segments of a chunk (kSegmentSize each, 64 per chunk) as a mask.
  using Segments = uint64_t;
  using Seals = std::array<PageSeal, 64>;
  // Encrypts the segments `which` of buf (whole segments: buf has room
  // for a full chunk) and writes them to slot; their seals go to seals.
  // buf is not changed; on failure seals is unchanged.
  Status Write(uint32_t slot, const uint8_t* buf, Segments which, Seals* seals);
  // Reads the segments `which` of slot into buf and opens them: kCorrupt
  // when one does not verify, kIo when it cannot be read.
  Status Read(uint32_t slot, const Seals& seals, Segments which, uint8_t* buf);
  size_t in_use() const;
  uint64_t bytes_written() const;
  uint64_t bytes_read() const;

 private:
  bool OpenFileLocked();

  const std::string dir_;
  PageCipher cipher_;
  mutable std::mutex mu_;
  int fd_ = -1;                 // under mu_ to open; read-only once open
  bool failed_ = false;         // under mu_: the file could not be created
  std::vector<uint32_t> free_;  // under mu_: slots never used go last
  size_t in_use_ = 0;           // under mu_
  uint64_t bytes_written_ = 0;  // under mu_
  uint64_t bytes_read_ = 0;     // under mu_
};

}  // namespace wavefs
