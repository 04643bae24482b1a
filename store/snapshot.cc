#include "store/snapshot.h"

#include <fcntl.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "chunker/data_map.h"
#include "store/file_util.h"

namespace wavefs {
namespace {

constexpr uint8_t kMagic[8] = {0x89, 'W', 'F', 'S', 'N', 'A', 'P', '\n'};
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "wfsnap01";
constexpr uint64_t kKdfSubkey = 1;
constexpr std::string_view kKeyCheckMessage = "wavefs snapshot key check v1";
constexpr size_t kKeyCheckBytes = 16;
// magic, version, flags, store id, created, key check, id length.
constexpr size_t kFixedHeader = 8 + 2 + 2 + 16 + 8 + kKeyCheckBytes + 2;
constexpr size_t kMaxIdLength = 64;
constexpr size_t kStreamHeader =
    crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr size_t kFrameOverhead = crypto_secretstream_xchacha20poly1305_ABYTES;
// Records of the payload.
constexpr uint8_t kRecordEnd = 0;
constexpr uint8_t kRecordKeyValue = 1;
constexpr uint8_t kRecordPending = 2;
// Index records a snapshot leaves out (restore rebuilds 'A'; a queued
// chunk's body staged in the index is a pending record like any other).
constexpr char kQueueTag = 'Q';
constexpr char kKnownTag = 'A';
constexpr char kStagedBodyTag = 'B';
// Tail-journal records (fs/tail_journal.h) stay out too: a snapshot holds
// each file as of its last sealed commit, whose chunks it names.
constexpr char kJournalTag = 'J';

static_assert(sizeof(crypto_secretstream_xchacha20poly1305_state) == 52);
static_assert(kStreamHeader == 24);

void PutLe(std::vector<uint8_t>* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::array<uint8_t, kKeyCheckBytes> KeyCheck(const SnapshotKey& key) {
  std::array<uint8_t, kKeyCheckBytes> out;
  crypto_generichash(out.data(), out.size(),
                     reinterpret_cast<const uint8_t*>(kKeyCheckMessage.data()),
                     kKeyCheckMessage.size(), key.data(), key.size());
  return out;
}

Status Corrupt(const std::string& id, const std::string& why) {
  return Status::Error(Code::kCorrupt, "snapshot " + (id.empty() ? "?" : id) +
                                           " is damaged: " + why);
}

std::string SnapshotsDir() { return kSnapshotDir; }

}  // namespace

SnapshotKey DeriveSnapshotKey(const Secret& secret) {
  SnapshotKey key;
  crypto_kdf_derive_from_key(key.data(), key.size(), kKdfSubkey, kKdfContext,
                             secret.data());
  return key;
}

std::string NewSnapshotId(std::chrono::system_clock::time_point now) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      now.time_since_epoch())
                      .count();
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  uint8_t rnd[4];
  randombytes_buf(rnd, sizeof rnd);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02d.%03dZ-%s",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000),
                ToHex(rnd).c_str());
  return buf;
}

bool IsSnapshotId(std::string_view id) {
  // YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx
  static constexpr std::string_view kShape = "ddddddddTdddddd.dddZ-hhhhhhhh";
  if (id.size() != kShape.size()) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    switch (kShape[i]) {
      case 'd':
        if (c < '0' || c > '9') return false;
        break;
      case 'h':
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
        break;
      default:
        if (c != kShape[i]) return false;
    }
  }
  return true;
}

std::string SnapshotTimeOf(std::string_view id) {
  if (!IsSnapshotId(id)) return "?";
  std::string s(id);
  return s.substr(0, 4) + "-" + s.substr(4, 2) + "-" + s.substr(6, 2) + " " +
         s.substr(9, 2) + ":" + s.substr(11, 2) + ":" + s.substr(13, 2) + "." +
         s.substr(16, 3) + " UTC";
}

std::string SnapshotObjectName(const std::string& id) {
  return SnapshotsDir() + "/" + id;
}

// --- writer --------------------------------------------------------------

SnapshotWriter::SnapshotWriter(const SnapshotKey& key,
                               const StoreIdBytes& store_id,
                               const std::string& id, uint64_t created_ms,
                               Sink sink)
    : sink_(std::move(sink)) {
  header_.insert(header_.end(), std::begin(kMagic), std::end(kMagic));
  PutLe(&header_, kSnapshotVersion, 2);
  PutLe(&header_, 0, 2);  // flags
  header_.insert(header_.end(), store_id.begin(), store_id.end());
  PutLe(&header_, created_ms, 8);
  const auto check = KeyCheck(key);
  header_.insert(header_.end(), check.begin(), check.end());
  PutLe(&header_, id.size(), 2);
  header_.insert(header_.end(), id.begin(), id.end());
  out_ = header_;
  out_.resize(header_.size() + kStreamHeader);
  auto* st = reinterpret_cast<crypto_secretstream_xchacha20poly1305_state*>(
      state_.data());
  crypto_secretstream_xchacha20poly1305_init_push(
      st, out_.data() + header_.size(), key.data());
}

void SnapshotWriter::AddRecord(std::string_view key, std::string_view value) {
  plain_.push_back(static_cast<char>(kRecordKeyValue));
  PutLe(&plain_, key.size(), 4);
  plain_.append(key);
  PutLe(&plain_, value.size(), 4);
  plain_.append(value);
  ++records_;
  while (plain_.size() >= kSnapshotFrame) Seal(false);
}

void SnapshotWriter::AddPending(const Address& address) {
  plain_.push_back(static_cast<char>(kRecordPending));
  plain_.append(reinterpret_cast<const char*>(address.data()), address.size());
  ++pending_;
  while (plain_.size() >= kSnapshotFrame) Seal(false);
}

void SnapshotWriter::Seal(bool final) {
  const size_t n =
      final ? plain_.size() : std::min(plain_.size(), kSnapshotFrame);
  const size_t at = out_.size();
  PutLe(&out_, n + kFrameOverhead, 4);
  out_.resize(at + 4 + n + kFrameOverhead);
  auto* st = reinterpret_cast<crypto_secretstream_xchacha20poly1305_state*>(
      state_.data());
  crypto_secretstream_xchacha20poly1305_push(
      st, out_.data() + at + 4, nullptr,
      reinterpret_cast<const uint8_t*>(plain_.data()), n, header_.data(),
      header_.size(),
      final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
            : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
  sodium_memzero(plain_.data(), n);
  plain_.erase(0, n);
  // With a sink, the sealed bytes leave at once: the writer holds at most
  // a frame of plaintext and one of ciphertext.
  if (sink_) {
    if (sink_status_.ok()) sink_status_ = sink_(out_);
    bytes_ += out_.size();
    out_.clear();
  }
}

std::vector<uint8_t> SnapshotWriter::Finish() {
  plain_.push_back(static_cast<char>(kRecordEnd));
  PutLe(&plain_, records_, 8);
  PutLe(&plain_, pending_, 8);
  while (plain_.size() > kSnapshotFrame) Seal(false);
  Seal(true);
  sodium_memzero(state_.data(), state_.size());
  bytes_ += out_.size();
  return std::move(out_);
}

// --- reader --------------------------------------------------------------

namespace {

// Reads exactly n bytes into dst; fewer only at the end of the object.
using SnapshotSource = std::function<Result<size_t>(uint8_t* dst, size_t n)>;

Status DecodeSnapshotFrom(
    const SnapshotSource& read, const SnapshotKey& key,
    const std::string& expected_id, SnapshotHeader* header,
    const std::function<Status(std::string_view, std::string_view)>& record,
    const std::function<Status(const Address&)>& pending) {
  const std::string& name = expected_id;
  // Reads exactly n bytes, or fails as truncated (`what`).
  auto need = [&](std::vector<uint8_t>* buf, size_t at, size_t n,
                  const std::string& id, const std::string& what) -> Status {
    buf->resize(at + n);
    auto got = read(buf->data() + at, n);
    if (!got.ok()) return got.status();
    if (*got != n)
      return Corrupt(id, what == "header" ? "truncated header"
                                          : "truncated (" + what + ")");
    return Status::Ok();
  };
  std::vector<uint8_t> hdr;  // the header: every frame's associated data
  WAVEFS_RETURN_IF_ERROR(need(&hdr, 0, kFixedHeader, name, "header"));
  if (std::memcmp(hdr.data(), kMagic, sizeof kMagic) != 0)
    return Corrupt(name, "bad magic (not a wavefs snapshot)");
  const uint64_t version = GetLe(hdr.data() + 8, 2);
  if (version != kSnapshotVersion)
    return Status::Error(Code::kNotSupported,
                         "snapshot " + name + " has version " +
                             std::to_string(version) +
                             ", which this wavefs cannot read");
  if (GetLe(hdr.data() + 10, 2) != 0) return Corrupt(name, "unknown flags");
  SnapshotHeader h;
  std::memcpy(h.store_id.data(), hdr.data() + 12, h.store_id.size());
  h.created_ms = GetLe(hdr.data() + 28, 8);
  const size_t id_len = GetLe(hdr.data() + kFixedHeader - 2, 2);
  if (id_len > kMaxIdLength) return Corrupt(name, "bad id length");
  WAVEFS_RETURN_IF_ERROR(need(&hdr, kFixedHeader, id_len, name, "header"));
  h.id.assign(reinterpret_cast<const char*>(hdr.data()) + kFixedHeader, id_len);
  std::vector<uint8_t> stream_header;
  WAVEFS_RETURN_IF_ERROR(
      need(&stream_header, 0, kStreamHeader, name, "header"));
  if (!expected_id.empty() && h.id != expected_id)
    return Corrupt(name, "it says it is snapshot " + h.id);
  const auto check = KeyCheck(key);
  if (sodium_memcmp(check.data(), hdr.data() + 36, check.size()) != 0)
    return Status::Error(
        Code::kPermission,
        "wrong key: snapshot " + h.id + " was not made with this key file");
  crypto_secretstream_xchacha20poly1305_state st;
  if (crypto_secretstream_xchacha20poly1305_init_pull(&st, stream_header.data(),
                                                      key.data()) != 0)
    return Corrupt(h.id, "bad stream header");
  std::string plain;  // authenticated bytes not parsed yet
  std::vector<uint8_t> sealed, frame;
  bool final = false, ended = false;
  uint64_t records = 0, pendings = 0;
  for (uint64_t n = 0; !final; ++n) {
    const std::string where = "frame " + std::to_string(n);
    WAVEFS_RETURN_IF_ERROR(need(&sealed, 0, 4, h.id, where));
    const size_t len = GetLe(sealed.data(), 4);
    if (len < kFrameOverhead || len > kSnapshotFrame + kFrameOverhead)
      return Corrupt(h.id, "bad frame length");
    WAVEFS_RETURN_IF_ERROR(need(&sealed, 0, len, h.id, where));
    frame.resize(len - kFrameOverhead);
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&st, frame.data(), nullptr,
                                                   &tag, sealed.data(), len,
                                                   hdr.data(), hdr.size()) != 0)
      return Corrupt(h.id, "authentication failed (" + where + ")");
    final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    if (ended && !frame.empty()) return Corrupt(h.id, "bytes after the end");
    plain.append(reinterpret_cast<const char*>(frame.data()), frame.size());
    sodium_memzero(frame.data(), frame.size());
    // Parse every complete record.
    size_t p = 0;
    while (p < plain.size() && !ended) {
      const auto* b = reinterpret_cast<const uint8_t*>(plain.data());
      const size_t left = plain.size() - p;
      const uint8_t kind = b[p];
      if (kind == kRecordKeyValue) {
        if (left < 5) break;
        const size_t klen = GetLe(b + p + 1, 4);
        if (left < 5 + klen + 4) break;
        const size_t vlen = GetLe(b + p + 5 + klen, 4);
        if (left < 9 + klen + vlen) break;
        if (record)
          WAVEFS_RETURN_IF_ERROR(
              record(std::string_view(plain.data() + p + 5, klen),
                     std::string_view(plain.data() + p + 9 + klen, vlen)));
        ++records;
        p += 9 + klen + vlen;
      } else if (kind == kRecordPending) {
        if (left < 33) break;
        Address a;
        std::memcpy(a.data(), b + p + 1, a.size());
        if (pending) WAVEFS_RETURN_IF_ERROR(pending(a));
        ++pendings;
        p += 33;
      } else if (kind == kRecordEnd) {
        if (left < 17) break;
        if (GetLe(b + p + 1, 8) != records || GetLe(b + p + 9, 8) != pendings)
          return Corrupt(h.id, "record counts do not match");
        ended = true;
        p += 17;
      } else {
        return Corrupt(h.id, "unknown record kind " + std::to_string(kind));
      }
    }
    sodium_memzero(plain.data(), p);
    plain.erase(0, p);
    if (ended && !plain.empty()) return Corrupt(h.id, "bytes after the end");
  }
  if (!ended) return Corrupt(h.id, "no end record");
  uint8_t extra = 0;
  auto more = read(&extra, 1);
  if (!more.ok()) return more.status();
  if (*more != 0) return Corrupt(h.id, "trailing bytes");
  if (header) *header = std::move(h);
  return Status::Ok();
}

}  // namespace

Status DecodeSnapshot(
    std::span<const uint8_t> in, const SnapshotKey& key,
    const std::string& expected_id, SnapshotHeader* header,
    const std::function<Status(std::string_view, std::string_view)>& record,
    const std::function<Status(const Address&)>& pending) {
  size_t pos = 0;
  return DecodeSnapshotFrom(
      [&](uint8_t* dst, size_t n) -> Result<size_t> {
        const size_t got = std::min(n, in.size() - pos);
        if (got > 0) std::memcpy(dst, in.data() + pos, got);
        pos += got;
        return got;
      },
      key, expected_id, header, record, pending);
}

Status DecodeSnapshotFile(
    const std::string& path, const SnapshotKey& key,
    const std::string& expected_id, SnapshotHeader* header,
    const std::function<Status(std::string_view, std::string_view)>& record,
    const std::function<Status(const Address&)>& pending) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  Status st = DecodeSnapshotFrom(
      [&](uint8_t* dst, size_t n) -> Result<size_t> {
        size_t got = 0;
        while (got < n) {
          const ssize_t r = ::read(fd, dst + got, n - got);
          if (r < 0 && errno == EINTR) continue;
          if (r < 0) return Status::FromErrno(errno, "read " + path);
          if (r == 0) break;
          got += static_cast<size_t>(r);
        }
        return got;
      },
      key, expected_id, header, record, pending);
  ::close(fd);
  return st;
}

// --- in the store --------------------------------------------------------

Result<std::vector<SnapshotInfo>> ListSnapshots(ChunkStore* store) {
  std::vector<SnapshotInfo> out;
  WAVEFS_RETURN_IF_ERROR(store->ListObjects(
      SnapshotsDir(), [&](const std::string& leaf, uint64_t size) {
        if (IsSnapshotId(leaf)) out.push_back({leaf, size});
      }));
  std::sort(
      out.begin(), out.end(),
      [](const SnapshotInfo& a, const SnapshotInfo& b) { return a.id < b.id; });
  return out;
}

Result<size_t> PruneSnapshots(ChunkStore* store, size_t keep) {
  auto all = ListSnapshots(store);
  if (!all.ok()) return all.status();
  size_t removed = 0;
  for (size_t i = 0; i + keep < all->size(); ++i) {
    WAVEFS_RETURN_IF_ERROR(
        store->RemoveObject(SnapshotObjectName((*all)[i].id)));
    ++removed;
  }
  return removed;
}

namespace {

// A file in a work directory that goes when this does: where a snapshot
// waits between the store and the encoder or decoder.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& dir) {
    std::array<uint8_t, 8> r;
    randombytes_buf(r.data(), r.size());
    path_ = dir + "/.snapshot-" + ToHex(r) + ".tmp";
  }
  ~ScratchFile() { ::unlink(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

Result<TakenSnapshot> TakeSnapshot(Index* index, ChunkStore* store,
                                   const SnapshotKey& key,
                                   const StoreIdBytes& store_id, size_t keep,
                                   const std::string& work_dir) {
  const auto now = std::chrono::system_clock::now();
  TakenSnapshot t;
  t.id = NewSnapshotId(now);
  ScratchFile scratch(work_dir);
  int fd = ::open(scratch.path().c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "create " + scratch.path());
  SnapshotWriter w(
      key, store_id, t.id,
      static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(
              now.time_since_epoch())
              .count()),
      [&](std::span<const uint8_t> bytes) -> Status {
        for (size_t done = 0; done < bytes.size();) {
          const ssize_t n =
              ::write(fd, bytes.data() + done, bytes.size() - done);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return Status::FromErrno(errno, "write " + scratch.path());
          done += static_cast<size_t>(n);
        }
        return Status::Ok();
      });
  struct Closer {
    int fd;
    ~Closer() {
      if (fd >= 0) ::close(fd);
    }
  } closer{fd};
  {
    // One RocksDB snapshot: the records and the queue are of one instant.
    // Its queued chunks must reach the store: no held one may be dropped.
    auto view = index->NewViewRetainingAll();
    WAVEFS_RETURN_IF_ERROR(
        view->ForEachRecord([&](std::string_view k, std::string_view v) {
          if (k.empty()) return Status::Ok();
          if (k[0] == kQueueTag && k.size() == 33) {
            Address a;
            std::memcpy(a.data(), k.data() + 1, a.size());
            w.AddPending(a);
          } else if (k[0] != kKnownTag && k[0] != kStagedBodyTag &&
                     k[0] != kJournalTag) {
            w.AddRecord(k, v);
          }
          return Status::Ok();
        }));
  }
  t.records = w.records();
  t.pending = w.pending();
  std::vector<uint8_t> rest = w.Finish();
  WAVEFS_RETURN_IF_ERROR(w.status());
  if (!rest.empty()) return Status::Error(Code::kIo, "snapshot not streamed");
  t.bytes = w.bytes();
  closer.fd = -1;
  if (::close(fd) != 0)
    return Status::FromErrno(errno, "close " + scratch.path());
  WAVEFS_RETURN_IF_ERROR(
      store->PutObjectFile(SnapshotObjectName(t.id), scratch.path())
          .Annotate("upload snapshot " + t.id));
  auto pruned = PruneSnapshots(store, std::max<size_t>(keep, 1));
  if (!pruned.ok())
    spdlog::warn("removing old index snapshots: {}",
                 pruned.status().ToString());
  return t;
}

Status ForEachSnapshotAddress(ChunkStore* store, const SnapshotKey& key,
                              const std::string& work_dir,
                              const std::function<void(const Address&)>& fn) {
  auto all = ListSnapshots(store);
  if (!all.ok()) return all.status();
  ScratchFile scratch(work_dir);
  for (const SnapshotInfo& info : *all) {
    Status got =
        store->GetObjectToFile(SnapshotObjectName(info.id), scratch.path());
    if (got.code() == Code::kNotFound) continue;  // pruned meanwhile
    WAVEFS_RETURN_IF_ERROR(got.Annotate("read snapshot " + info.id));
    Status st = DecodeSnapshotFile(
        scratch.path(), key, info.id, nullptr,
        [&](std::string_view k, std::string_view v) {
          if (k.size() == 17 && k[0] == 'C') {
            auto ref = DecodeChunkRef(v);
            if (ref.ok() && !ref->hole) fn(ref->address);
          } else if (k.size() == 33 && k[0] == 'P') {
            Address a;
            std::memcpy(a.data(), k.data() + 1, a.size());
            fn(a);
          }
          return Status::Ok();
        },
        [&](const Address& a) {
          fn(a);
          return Status::Ok();
        });
    if (st.code() == Code::kCorrupt) {
      spdlog::warn("gc: {} (its chunks are not kept)", st.message());
      continue;
    }
    WAVEFS_RETURN_IF_ERROR(st);
  }
  return Status::Ok();
}

namespace {

// Restores one snapshot into a new index at dir (absent on entry).
Status RestoreOne(ChunkStore* store, const SnapshotKey& key,
                  const StoreIdBytes& store_id, const std::string& dir,
                  const std::string& id, RestoreReport* r) {
  // Beside the index being built (its parent is the metadata directory).
  ScratchFile scratch(std::filesystem::path(dir).parent_path().string());
  WAVEFS_RETURN_IF_ERROR(
      store->GetObjectToFile(SnapshotObjectName(id), scratch.path())
          .Annotate("read snapshot " + id));
  auto opened = Index::Open(dir, Index::Options());
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Index> index = std::move(*opened);
  *r = RestoreReport{};
  r->id = id;
  auto batch = std::make_unique<IndexBatch>();
  size_t in_batch = 0;
  auto flush = [&]() -> Status {
    if (in_batch == 0) return Status::Ok();
    Status st = index->Commit(batch.get(), false);
    batch = std::make_unique<IndexBatch>();
    in_batch = 0;
    return st;
  };
  std::set<Address> pending;  // chunks still queued: few
  SnapshotHeader header;
  // Every address a chunk ref names is marked stored as its record streams
  // by (a repeat is harmless): nothing per chunk is held in memory.
  auto inode_of = [](std::string_view k) {
    uint64_t ino = 0;
    for (int i = 1; i <= 8; ++i) ino = (ino << 8) | static_cast<uint8_t>(k[i]);
    return ino;
  };
  Status st = DecodeSnapshotFile(
      scratch.path(), key, id, &header,
      [&](std::string_view k, std::string_view v) -> Status {
        batch->PutRecord(k, v);
        ++r->records;
        if (k.size() == 17 && k[0] == 'C') {
          auto ref = DecodeChunkRef(v);
          if (!ref.ok()) return Corrupt(id, ref.status().message());
          if (!ref->hole) {
            ++r->chunk_refs;
            batch->MarkStored(ref->address);
          }
        }
        if (++in_batch >= 4096) return flush();
        return Status::Ok();
      },
      [&](const Address& a) {
        pending.insert(a);
        return Status::Ok();
      });
  if (st.ok() && header.store_id != store_id)
    st = Status::Error(Code::kInvalid, "snapshot " + id +
                                           " belongs to another store (id " +
                                           ToHex(header.store_id) + ")");
  if (st.ok()) st = flush();
  // Pending chunks the store does not have stay unknown, so a writer of
  // the same bytes uploads them again; the files naming them are damaged.
  std::set<Address> missing;
  if (st.ok()) {
    r->pending = pending.size();
    for (const Address& a : pending) {
      auto has = store->Has(a);
      if (!has.ok()) {
        st = has.status().Annotate("check pending chunk");
        break;
      }
      if (!*has) missing.insert(a);
    }
    r->missing = missing.size();
  }
  if (st.ok() && !missing.empty()) {
    auto retired = index->RetireStored({missing.begin(), missing.end()});
    if (!retired.ok()) st = retired.status();
  }
  if (st.ok() && !missing.empty()) {
    std::set<uint64_t> damaged;
    auto view = index->NewView();
    st = view->ForEachRecord([&](std::string_view k, std::string_view v) {
      if (k.size() == 17 && k[0] == 'C') {
        auto ref = DecodeChunkRef(v);
        if (ref.ok() && !ref->hole && missing.count(ref->address))
          damaged.insert(inode_of(k));
      }
      return Status::Ok();
    });
    r->damaged_files = damaged.size();
  }
  if (st.ok()) st = index->Sync();
  Status closed = index->Close();
  if (st.ok()) st = closed;
  return st;
}

}  // namespace

Result<RestoreReport> RestoreIndex(ChunkStore* store, const SnapshotKey& key,
                                   const StoreIdBytes& store_id,
                                   const std::string& index_dir,
                                   const std::string& id) {
  auto all = ListSnapshots(store);
  if (!all.ok()) return all.status().Annotate("list snapshots");
  std::vector<std::string> order;
  if (!id.empty()) {
    bool found = false;
    for (const auto& s : *all) found |= s.id == id;
    if (!found)
      return Status::Error(Code::kNotFound,
                           "no snapshot " + id + " in " + store->Describe());
    order.push_back(id);
  } else {
    for (auto it = all->rbegin(); it != all->rend(); ++it)
      order.push_back(it->id);
  }
  if (order.empty())
    return Status::Error(Code::kNotFound,
                         "no index snapshots in " + store->Describe());
  const std::string tmp = index_dir + ".restoring";
  std::vector<std::string> skipped;
  for (const std::string& candidate : order) {
    std::error_code ec;
    std::filesystem::remove_all(tmp, ec);
    if (ec)
      return Status::Error(Code::kIo,
                           "cannot remove " + tmp + ": " + ec.message());
    RestoreReport r;
    Status st = RestoreOne(store, key, store_id, tmp, candidate, &r);
    if (st.ok()) {
      std::filesystem::rename(tmp, index_dir, ec);
      if (ec)
        return Status::Error(Code::kIo, "cannot rename " + tmp + " to " +
                                            index_dir + ": " + ec.message());
      const size_t slash = index_dir.find_last_of('/');
      if (slash != std::string::npos && slash > 0)
        WAVEFS_RETURN_IF_ERROR(FsyncPath(index_dir.substr(0, slash)));
      r.skipped = std::move(skipped);
      return r;
    }
    std::filesystem::remove_all(tmp, ec);
    // Only a damaged (or foreign) snapshot is worth passing over for an
    // older one; a wrong key or an unreachable store fails them all.
    const bool skippable = id.empty() && (st.code() == Code::kCorrupt ||
                                          st.code() == Code::kNotSupported ||
                                          st.code() == Code::kInvalid);
    if (!skippable) return st;
    skipped.push_back(candidate + ": " + st.message());
  }
  std::string why;
  for (const auto& s : skipped) why += (why.empty() ? "" : "; ") + s;
  return Status::Error(
      Code::kCorrupt,
      "no usable index snapshot in " + store->Describe() + " (" + why + ")");
}

}  // namespace wavefs
