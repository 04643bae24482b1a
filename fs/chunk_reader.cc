#include "fs/chunk_reader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "chunker/crypto.h"
#include "store/thread_name.h"

namespace wavefs {

namespace {

// The cache key of window w of a chunk: its address with the window index
// folded into the first bytes (windows_ holds nothing else, and addresses
// are hashes, so keys of different chunks do not meet).
Address WindowKey(const Address& address, uint64_t w) {
  Address k = address;
  const uint64_t mix = (w + 1) * 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 8; ++i) k[i] ^= static_cast<uint8_t>(mix >> (8 * i));
  return k;
}

}  // namespace

void CopyingSink::Copy(const char* data, size_t n) {
  std::memcpy(out_, data, n);
  out_ += n;
}

void CopyingSink::Zeros(size_t n) {
  std::memset(out_, 0, n);
  out_ += n;
}

ChunkReader::ChunkReader(Index* index, Spill* spill, ChunkStore* store,
                         ChunkFormat format, Options options)
    : index_(index),
      spill_(spill),
      store_(store),
      format_(format),
      options_(options),
      cache_(options.cache_chunks + options.cache_small_entries,
             static_cast<uint64_t>(options.cache_chunks) * kChunkSize),
      windows_(options.read_window > 0 ? options.window_entries : 0),
      read_window_(options.read_window) {
  if (options_.slots != nullptr)
    slot_id_ = options_.slots->AddHolder(
        [this](const ChunkSlots::Cutoffs& c) { ShedIdle(c); });
  for (int i = 0; i < options_.prefetch_depth; ++i)
    prefetchers_.emplace_back([this] {
      NameThisThread("wfs-prefetch");
      PrefetchLoop();
    });
}

ChunkReader::~ChunkReader() {
  {
    std::lock_guard<std::mutex> lock(prefetch_mu_);
    stopping_ = true;
  }
  prefetch_cv_.notify_all();
  for (auto& t : prefetchers_) t.join();
}

Result<size_t> ChunkReader::ReadFile(OpenFile* f,
                                     std::unique_lock<std::mutex>& lock,
                                     uint64_t offset, size_t size, char* out) {
  CopyingSink sink(out);
  return ReadFile(f, lock, offset, size, &sink);
}

Result<size_t> ChunkReader::ReadFile(OpenFile* f,
                                     std::unique_lock<std::mutex>& lock,
                                     uint64_t offset, size_t size,
                                     ReadSink* sink) {
  if (offset >= f->attr.size) return static_cast<size_t>(0);
  size = static_cast<size_t>(std::min<uint64_t>(size, f->attr.size - offset));
  // The kernel's readahead sends a sequential reader's requests through
  // several FUSE threads, so they arrive a little out of order: a request
  // within kReorderWindow after the furthest end read so far continues the
  // run; anything else starts a new one.
  constexpr uint64_t kReorderWindow = 1 << 20;
  const bool continues = f->next_read != ~0ull && offset >= f->run_start &&
                         offset <= f->next_read + kReorderWindow;
  if (!continues) {
    f->run_start = offset;
    f->next_read = offset;
  }
  uint64_t pos = offset;
  const uint64_t end = offset + size;
  // A run of 2 MiB or more tells a sequential reader (whole chunks, cached,
  // the next one prefetched) from a random 1 MiB read that the kernel split
  // into several requests (which must not cost a 4 MiB fetch).
  const bool sequential = end - f->run_start >= (2u << 20);
  // A fetch fails when the chunk went while the lock was released: a held
  // chunk dropped because a commit of this file replaced it (store/index.h,
  // "Held chunks"). Then the file names another chunk now: read that one.
  int retries = 0;
  auto replaced = [&](uint64_t idx, const ChunkRef& was) {
    if (++retries > 8) return false;
    auto now = RefOf(index_, f, idx);
    return now.ok() && (!now->has_value() || (*now)->hole ||
                        (*now)->address != was.address);
  };
  while (pos < end) {
    const uint64_t idx = pos / kChunkSize;
    const uint64_t in = pos % kChunkSize;
    const uint64_t n = std::min<uint64_t>(kChunkSize - in, end - pos);
    if (f->inflight.count(idx)) {
      f->cv.wait(lock);
      continue;
    }
    auto d = f->dirty.find(idx);
    if (d != f->dirty.end()) {
      const uint64_t have =
          in < d->second.len ? std::min<uint64_t>(n, d->second.len - in) : 0;
      // Paged out, or segments of the range still in its page-out slot
      // (store/page_out.h): into the buffer first (may release the lock),
      // then look again.
      const uint64_t need = OpenFile::Dirty::SegmentMask(in, in + have);
      if (need & (d->second.paged_out() ? ~0ull : d->second.absent)) {
        if (!page_in_)
          return Status::Error(Code::kIo, "a paged-out buffer with no page-in");
        WAVEFS_RETURN_IF_ERROR(page_in_(f, idx, need, lock));
        continue;
      }
      // (A paged-out buffer with nothing to give here has no buf.)
      if (have > 0)
        sink->Copy(reinterpret_cast<const char*>(d->second.buf) + in, have);
      sink->Zeros(n - have);
      pos += n;
      continue;
    }
    auto ref = RefOf(index_, f, idx);
    if (!ref.ok()) return ref.status();
    if (!ref->has_value() || (*ref)->hole) {
      sink->Zeros(n);
      pos += n;
      continue;
    }
    const ChunkRef r = **ref;
    const uint64_t stored =
        in < r.length ? std::min<uint64_t>(n, r.length - in) : 0;
    if (IsSegmented(format_) && !sequential && stored > 0 &&
        !cache_.Contains(r.address)) {
      // A random read: fetch and open only the segments it covers (or the
      // windows around them), and keep no whole chunk (the page cache keeps
      // what the reader reads again).
      lock.unlock();
      if (options_.fetch_unlocked) options_.fetch_unlocked(f->ino, idx);
      const uint64_t window = read_window_.load(std::memory_order_relaxed);
      Status st = window > 0 ? ReadWindows(r, window, in, stored, sink)
                             : ReadSegments(r, in, stored, sink);
      lock.lock();
      if (!st.ok()) {
        if (replaced(idx, r)) continue;
        spdlog::error("inode {} chunk {}: {}", f->ino, idx, st.ToString());
        return st;
      }
      sink->Zeros(n - stored);
      pos += n;
      continue;
    }
    lock.unlock();
    if (options_.fetch_unlocked) options_.fetch_unlocked(f->ino, idx);
    auto data = FetchChunk(r);
    lock.lock();
    if (!data.ok()) {
      if (replaced(idx, r)) continue;
      spdlog::error("inode {} chunk {}: {}", f->ino, idx,
                    data.status().ToString());
      return data.status();
    }
    const uint64_t have =
        in < (*data)->size() ? std::min<uint64_t>(n, (*data)->size() - in) : 0;
    sink->Share(*data, reinterpret_cast<const char*>((*data)->data()) + in,
                have);
    sink->Zeros(n - have);
    pos += n;
  }
  f->next_read = std::max(f->next_read, end);
  // A sequential reader gets the next chunks fetched ahead of it, each by
  // a prefetch thread of its own.
  if (sequential && options_.prefetch_depth > 0) {
    const uint64_t first = ChunkIndexOf(end - 1) + 1;
    for (uint64_t next = first;
         next < first + static_cast<uint64_t>(options_.prefetch_depth) &&
         next * kChunkSize < f->attr.size;
         ++next) {
      if (f->dirty.count(next)) continue;
      auto ref = RefOf(index_, f, next);
      if (!ref.ok() || !ref->has_value() || (*ref)->hole ||
          cache_.Contains((*ref)->address))
        continue;
      std::lock_guard<std::mutex> pl(prefetch_mu_);
      const Address a = (*ref)->address;
      if (std::any_of(prefetch_queue_.begin(), prefetch_queue_.end(),
                      [&](const ChunkRef& q) { return q.address == a; }))
        continue;
      if (prefetch_queue_.size() >=
          2 * static_cast<size_t>(options_.prefetch_depth))
        break;
      prefetch_queue_.push_back(**ref);
      prefetch_cv_.notify_one();
    }
  }
  return size;
}

Result<ChunkData> ChunkReader::FetchChunk(const ChunkRef& ref) {
  return cache_.GetOrLoad(ref.address, [&]() -> Result<ChunkData> {
    std::shared_ptr<std::vector<uint8_t>> buf = ChunkBuffer();
    WAVEFS_RETURN_IF_ERROR(ReadObject(ref.address, std::nullopt, buf.get()));
    // The AEAD tag authenticates every byte; checking the address too
    // would cost a second hash pass on every read (fsck does that).
    WAVEFS_RETURN_IF_ERROR(
        OpenChunk(ref, format_, buf->data(), buf->size(), false));
    buf->resize(ref.length);
    // The cache counts an entry's size: a small chunk in a reused 4 MiB
    // vector would hold far more than that (the vector goes back to the
    // reuse list instead).
    if (buf->capacity() > 2 * std::max<size_t>(buf->size(), 64 << 10))
      return CopyWiped(buf->data(), buf->size());
    return ChunkData(std::move(buf));
  });
}

Status ChunkReader::PrefetchSmall(const ChunkRef& ref) {
  if (cache_.Contains(ref.address)) return Status::Ok();
  auto data = FetchChunk(ref);
  return data.ok() ? Status::Ok() : data.status();
}

Status ChunkReader::ReadObject(
    const Address& address, std::optional<std::pair<uint64_t, uint64_t>> range,
    std::vector<uint8_t>* out) {
  // A staged chunk is read from the spill, or from the index when it was
  // small enough to be staged there; once uploaded (its staged copy gone)
  // from the store.
  Status st = range
                  ? spill_->ReadRange(address, range->first, range->second, out)
                  : spill_->Read(address, out);
  if (st.code() == Code::kNotFound) {
    st = index_->ReadStagedBody(address, out);
    if (st.ok() && range) {
      if (range->first + range->second > out->size()) {
        st = Status::Error(Code::kCorrupt, "staged chunk shorter than its ref",
                           EIO);
      } else {
        out->erase(
            out->begin() + static_cast<ptrdiff_t>(range->first + range->second),
            out->end());
        out->erase(out->begin(),
                   out->begin() + static_cast<ptrdiff_t>(range->first));
      }
    }
  }
  if (st.code() == Code::kNotFound) {
    st = range ? store_->GetRange(address, range->first, range->second, out)
               : store_->Get(address, out);
  }
  if (st.code() == Code::kNotFound) {
    // A data map names it, yet neither the spill nor the store has it: the
    // file is damaged (EIO), not missing (ENOENT).
    st = Status::Error(Code::kCorrupt,
                       "chunk is in neither the spill nor the store");
  }
  return st.ok() ? st : st.Annotate("fetch chunk " + ToHex(address));
}

Status ChunkReader::ReadWindows(const ChunkRef& ref, uint64_t window,
                                uint64_t offset, uint64_t len, ReadSink* sink) {
  // All windows first, then the sink: a failed read gives the sink nothing
  // (ReadFile may then read the piece again from another chunk).
  struct Piece {
    ChunkData data;
    const char* at;
    uint64_t n;
  };
  std::vector<Piece> pieces;
  uint64_t pos = offset;
  while (pos < offset + len) {
    const uint64_t w = pos / window;
    const uint64_t start = w * window;
    const uint64_t wlen = std::min<uint64_t>(window, ref.length - start);
    auto data = windows_.GetOrLoad(
        WindowKey(ref.address, w), [&]() -> Result<ChunkData> {
          auto buf = std::make_shared<std::vector<uint8_t>>();
          const SegmentRange range = SegmentsCovering(ref.length, start, wlen);
          WAVEFS_RETURN_IF_ERROR(ReadObject(
              ref.address, std::make_pair(range.ct_offset, range.ct_len),
              buf.get()));
          WAVEFS_RETURN_IF_ERROR(
              OpenSegments(ref, format_, range, buf->data(), buf->size()));
          buf->erase(buf->begin(), buf->begin() + (start - range.pt_offset));
          buf->resize(wlen);
          segment_reads_.fetch_add(1, std::memory_order_relaxed);
          return ChunkData(std::move(buf));
        });
    if (!data.ok()) return data.status();
    const uint64_t n = std::min(offset + len, start + wlen) - pos;
    pieces.push_back(Piece{
        *data, reinterpret_cast<const char*>((*data)->data()) + (pos - start),
        n});
    pos += n;
  }
  for (Piece& p : pieces) sink->Share(std::move(p.data), p.at, p.n);
  return Status::Ok();
}

Status ChunkReader::ReadSegments(const ChunkRef& ref, uint64_t offset,
                                 uint64_t len, ReadSink* sink) {
  const SegmentRange range = SegmentsCovering(ref.length, offset, len);
  std::shared_ptr<std::vector<uint8_t>> buf = ChunkBuffer();
  WAVEFS_RETURN_IF_ERROR(ReadObject(
      ref.address, std::make_pair(range.ct_offset, range.ct_len), buf.get()));
  WAVEFS_RETURN_IF_ERROR(
      OpenSegments(ref, format_, range, buf->data(), buf->size()));
  segment_reads_.fetch_add(1, std::memory_order_relaxed);
  const char* at =
      reinterpret_cast<const char*>(buf->data()) + (offset - range.pt_offset);
  sink->Share(std::move(buf), at, len);
  return Status::Ok();
}

std::shared_ptr<std::vector<uint8_t>> ChunkReader::ChunkBuffer() {
  // Reusing chunk-sized vectors saves mapping and faulting in 4 MiB per
  // fetch (chunk buffers come from mmap, see fs/mount.cc): a third of the
  // read path's time. At most options_.recycled_chunks wait here.
  std::vector<uint8_t>* v = nullptr;
  {
    std::lock_guard<std::mutex> lock(recycle_mu_);
    if (!recycled_.empty()) {
      v = recycled_.back().first.release();
      recycled_.pop_back();
    }
  }
  // A new buffer takes a slot of the budget shared with the write buffers
  // (free write buffers are unmapped first when it is full); a reused one
  // asks for the overdraft to be paid back.
  if (options_.slots != nullptr) {
    if (v == nullptr)
      options_.slots->Take(slot_id_);
    else
      options_.slots->Rebalance(slot_id_);
  }
  if (v == nullptr) v = new std::vector<uint8_t>();
  return std::shared_ptr<std::vector<uint8_t>>(v, [this](
                                                      std::vector<uint8_t>* p) {
    std::unique_ptr<std::vector<uint8_t>> owned(p);
    {
      std::lock_guard<std::mutex> lock(recycle_mu_);
      if (!shedding_.load() && recycled_.size() < options_.recycled_chunks) {
        recycled_.emplace_back(std::move(owned), ChunkSlots::Clock::now());
        return;
      }
    }
    // Plaintext: wiped before it goes back to the allocator.
    WipeChunkBuffer(owned->data(), owned->capacity());
    owned.reset();
    if (options_.slots != nullptr) options_.slots->Give();
  });
}

size_t ChunkReader::reuse_buffers() {
  std::lock_guard<std::mutex> lock(recycle_mu_);
  return recycled_.size();
}

void ChunkReader::ShedIdle(const ChunkSlots::Cutoffs& cutoffs) {
  // Cached chunks nobody read since their cutoff go first (their buffers
  // unmapped), then the reuse list's buffers back since before theirs.
  shedding_.store(true);
  cache_.DropIdle(cutoffs.cached);
  shedding_.store(false);
  std::vector<std::unique_ptr<std::vector<uint8_t>>> idle;
  {
    std::lock_guard<std::mutex> lock(recycle_mu_);
    idle = ChunkSlots::TakeIdle(recycled_, cutoffs.reuse);
  }
  const size_t n = idle.size();
  for (auto& v : idle) WipeChunkBuffer(v->data(), v->capacity());
  idle.clear();
  if (options_.slots != nullptr && n > 0) options_.slots->Give(n);
}

void ChunkReader::PrefetchLoop() {
  while (true) {
    ChunkRef ref;
    {
      std::unique_lock<std::mutex> lock(prefetch_mu_);
      prefetch_cv_.wait(lock,
                        [&] { return stopping_ || !prefetch_queue_.empty(); });
      if (stopping_) return;
      ref = prefetch_queue_.front();
      prefetch_queue_.pop_front();
    }
    auto r = FetchChunk(ref);
    if (!r.ok()) spdlog::warn("prefetch failed: {}", r.status().ToString());
  }
}

}  // namespace wavefs
