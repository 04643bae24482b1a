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
// opened for reading one right after the other in either order (the second
// the next file after the first), it has the next
// `files_ahead` small files in that order (at most `max_file` bytes: one
// chunk) fetched into the reader's cache by `threads` threads of its own,
// and the next one each time the reader moves on. Each file is queued
// once per listing; a reader that jumps around (a listing, then one file)
// starts nothing.
//
// A program that opens files by a list of paths (`xargs cat` of a file
// list, a build reading headers) lists no directory: the kernel only looks
// each name up. So a lookup tells this class the file's directory, and the
// first open of a file of a directory it has no listing of has a prefetch
// thread list that directory from the index (`list_dir`), as if the
// program had; the next opens in order then work as above.
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
#include <functional>
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
  // list_dir: the regular files of a directory in the listing's order (no
  // lock held; called on a prefetch thread).
  using ListDir = std::function<std::vector<uint64_t>(uint64_t dir)>;
  SiblingPrefetch(Index* index, ChunkReader* reader, Options options,
                  ListDir list_dir = {});
  ~SiblingPrefetch();
  SiblingPrefetch(const SiblingPrefetch&) = delete;
  SiblingPrefetch& operator=(const SiblingPrefetch&) = delete;

  bool enabled() const { return options_.files_ahead > 0; }
  // A listing of dir returned these regular files (in order); from_start:
  // the listing began at the directory's first entry (a new listing).
  void NoteListing(uint64_t dir, bool from_start,
                   const std::vector<uint64_t>& files);
  // A lookup found regular file ino in dir.
  void NoteLookup(uint64_t dir, uint64_t ino);
  // ino was opened for reading.
  void NoteOpen(uint64_t ino);
  // Directories a prefetch thread listed itself.
  uint64_t listings() const { return listings_.load(); }
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
  void List(uint64_t dir, uint64_t opened);

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
  // Directories of files looked up (bounded by max_files: cleared when
  // full).
  std::unordered_map<uint64_t, uint64_t> parent_;
  // Work: a file to fetch, or (dir set) the directory of a file opened
  // without a listing, to list.
  struct Work {
    uint64_t ino = 0;
    uint64_t dir = 0;
  };
  std::deque<Work> queue_;
  const ListDir list_dir_;
  std::atomic<uint64_t> listings_{0};
  bool stop_ = false;
  std::atomic<uint64_t> prefetched_{0};
  std::atomic<uint64_t> queued_{0};
  std::vector<std::thread> threads_;
};

}  // namespace wavefs
