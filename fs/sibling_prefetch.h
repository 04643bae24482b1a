// SiblingPrefetch: small files of a directory fetched ahead of a program
// that reads them one after the other.
//
// On a store where each fetch is a round trip of tens of milliseconds (S3),
// a program that reads a tree of small files (`cp -r`, `tar -c`, `rsync`,
// `cat dir/*`) waits for one GET per file in turn: 544 files of
// /usr/include/linux took 25.6 s through an S3 mount on the loopback RGW
// (docs/architecture.md, "S3: reading a tree of small files back"). Such
// programs list the directory first and then open its files in one of two
// orders: the listing's (wavefs lists in name order; tar and rsync, which
// sorts by name itself, follow it) or by inode number (GNU cp sorts a
// directory's entries so, to read a disk in its layout; wavefs numbers
// inodes in creation order). So this class remembers, per directory, the
// regular files of its last listing, and when two files of one listing are
// opened for reading one after the other in either order, it has the next
// `files_ahead` small files in that order (at most `max_file` bytes: one
// chunk) fetched into the reader's cache by `threads` threads of its own,
// and the next one each time the reader moves on. Each file is queued
// once per listing; a reader that jumps around (a listing, then one file)
// starts nothing.
//
// What it fetches is the file's committed chunk through
// ChunkReader::PrefetchSmall: content-addressed, so a file changed since
// only costs a wasted fetch, never wrong bytes; the cache (bounded in
// bytes) holds what the reader has not reached yet.
//
// Memory: the listings of at most `dirs` directories and `max_files` files
// in all (~80 bytes each: 1.3 MiB at most), the directories least recently
// listed or read from forgotten first (rsync lists a whole tree before it
// reads: in a tree of more files, the first directories it reads were
// forgotten, and only the later ones are fetched ahead); and what the
// cache holds.
// Thread safety: every method is thread-safe; NoteListing and NoteOpen
// take a leaf lock and never wait for a fetch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace wavefs {

class ChunkReader;
class Index;

class SiblingPrefetch {
 public:
  struct Options {
    size_t files_ahead = 0;  // 0: off
    int threads = 4;
    uint64_t max_file = 1 << 20;
    size_t dirs = 1024;
    size_t max_files = 16384;
  };
  SiblingPrefetch(Index* index, ChunkReader* reader, Options options);
  ~SiblingPrefetch();
  SiblingPrefetch(const SiblingPrefetch&) = delete;
  SiblingPrefetch& operator=(const SiblingPrefetch&) = delete;

  bool enabled() const { return options_.files_ahead > 0; }
  // A listing of dir returned these regular files (in order); from_start:
  // the listing began at the directory's first entry (a new listing).
  void NoteListing(uint64_t dir, bool from_start,
                   const std::vector<uint64_t>& files);
  // ino was opened for reading.
  void NoteOpen(uint64_t ino);
  // Files whose chunk a prefetch thread fetched (or found cached).
  uint64_t prefetched() const { return prefetched_.load(); }
  // Files queued for a prefetch thread (each at most once per listing).
  uint64_t queued() const { return queued_.load(); }

 private:
  struct Dir {
    std::vector<uint64_t> files;  // in the listing's order
    std::vector<bool> queued;     // by position in files
    // Positions in files, by inode number (built at the first open).
    std::vector<uint32_t> by_ino;
    std::vector<uint32_t> rank;  // position in by_ino, by position in files
    int64_t last_open = -1;      // position of the last file opened
    std::list<uint64_t>::iterator age;  // in ages_
  };
  // Queues the files after `from` in one order (at(i): the position in
  // files of the order's i-th file, for i < n).
  template <typename At>
  void QueueAfter(Dir& d, size_t from, size_t n, At at);
  void ForgetLocked(uint64_t dir);
  void Loop();
  void Fetch(uint64_t ino);

  Index* const index_;
  ChunkReader* const reader_;
  const Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, Dir> dirs_;
  // Directories, the most recently listed or read from first.
  std::list<uint64_t> ages_;
  // Where a listed file is: its directory and position there.
  std::unordered_map<uint64_t, std::pair<uint64_t, uint32_t>> where_;
  std::deque<uint64_t> queue_;
  bool stop_ = false;
  std::atomic<uint64_t> prefetched_{0};
  std::atomic<uint64_t> queued_{0};
  std::vector<std::thread> threads_;
};

}  // namespace wavefs
