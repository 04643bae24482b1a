#include "store/index.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "chunker/data_map.h"
#include "store/index_hooks.h"

namespace wavefs {
namespace {

constexpr uint8_t kInodeVersion = 1;

void PutBe64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (i * 8)));
}
uint64_t GetBe64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out->push_back(static_cast<char>(v >> (i * 8)));
}
bool GetLe(std::string_view* in, uint64_t* v, int bytes) {
  if (in->size() < static_cast<size_t>(bytes)) return false;
  *v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    *v = (*v << 8) | static_cast<uint8_t>((*in)[i]);
  in->remove_prefix(bytes);
  return true;
}

std::string InodeKey(uint64_t ino) {
  std::string k("I");
  PutBe64(&k, ino);
  return k;
}
std::string DirPrefix(uint64_t parent) {
  std::string k("D");
  PutBe64(&k, parent);
  return k;
}
std::string DirKey(uint64_t parent, const std::string& name) {
  return DirPrefix(parent) + name;
}
std::string ChunkPrefix(uint64_t ino) {
  std::string k("C");
  PutBe64(&k, ino);
  return k;
}
std::string ChunkRefKey(uint64_t ino, uint64_t index) {
  std::string k = ChunkPrefix(ino);
  PutBe64(&k, index);
  return k;
}
std::string XattrPrefix(uint64_t ino) {
  std::string k("X");
  PutBe64(&k, ino);
  return k;
}
std::string XattrKey(uint64_t ino, const std::string& name) {
  return XattrPrefix(ino) + name;
}
std::string JournalPrefix(uint64_t ino) {
  std::string k("J");
  PutBe64(&k, ino);
  return k;
}
std::string AddrKey(char tag, const Address& a) {
  std::string k(1, tag);
  k.append(reinterpret_cast<const char*>(a.data()), a.size());
  return k;
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNotFound()) return Status::Error(Code::kNotFound, what);
  if (s.IsIOError() && s.subcode() == rocksdb::Status::kNoSpace)
    return Status::Error(Code::kNoSpace, what + ": " + s.ToString(), ENOSPC,
                         true);
  if (s.IsCorruption())
    return Status::Error(Code::kCorrupt, what + ": " + s.ToString());
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos)
    return Status::Error(Code::kBusy, what + ": " + s.ToString());
  return Status::Error(Code::kIo, what + ": " + s.ToString());
}

std::string EncodeDirValue(uint64_t child, uint32_t mode) {
  std::string v;
  PutLe(&v, child, 8);
  PutLe(&v, mode, 4);
  return v;
}

}  // namespace

std::string EncodeInode(const InodeAttr& a) {
  std::string v;
  v.push_back(static_cast<char>(kInodeVersion));
  PutLe(&v, a.mode, 4);
  PutLe(&v, a.uid, 4);
  PutLe(&v, a.gid, 4);
  PutLe(&v, a.nlink, 4);
  PutLe(&v, a.size, 8);
  PutLe(&v, a.rdev, 8);
  for (const timespec* t : {&a.atime, &a.mtime, &a.ctime}) {
    PutLe(&v, static_cast<uint64_t>(t->tv_sec), 8);
    PutLe(&v, static_cast<uint64_t>(t->tv_nsec), 4);
  }
  PutLe(&v, a.symlink.size(), 4);
  v += a.symlink;
  return v;
}

Result<InodeAttr> DecodeInode(uint64_t ino, std::string_view in) {
  InodeAttr a;
  a.ino = ino;
  auto bad = [&](const char* why) {
    return Status::Error(Code::kCorrupt, "inode " + std::to_string(ino) +
                                             " record is damaged: " + why);
  };
  if (in.empty() || static_cast<uint8_t>(in[0]) != kInodeVersion)
    return bad("unknown version");
  in.remove_prefix(1);
  uint64_t v[6];
  int widths[6] = {4, 4, 4, 4, 8, 8};
  for (int i = 0; i < 6; ++i)
    if (!GetLe(&in, &v[i], widths[i])) return bad("truncated");
  a.mode = v[0];
  a.uid = v[1];
  a.gid = v[2];
  a.nlink = v[3];
  a.size = v[4];
  a.rdev = v[5];
  for (timespec* t : {&a.atime, &a.mtime, &a.ctime}) {
    uint64_t s, ns;
    if (!GetLe(&in, &s, 8) || !GetLe(&in, &ns, 4)) return bad("truncated");
    t->tv_sec = static_cast<time_t>(s);
    t->tv_nsec = static_cast<long>(ns);
  }
  uint64_t len;
  if (!GetLe(&in, &len, 4) || in.size() != len)
    return bad("bad symlink length");
  a.symlink.assign(in.data(), in.size());
  return a;
}

IndexBatch::IndexBatch() : batch_(std::make_unique<rocksdb::WriteBatch>()) {}
IndexBatch::~IndexBatch() = default;

void IndexBatch::PutInode(const InodeAttr& attr) {
  batch_->Put(InodeKey(attr.ino), EncodeInode(attr));
}
void IndexBatch::DeleteInode(uint64_t ino) { batch_->Delete(InodeKey(ino)); }
void IndexBatch::PutDirEntry(uint64_t parent, const std::string& name,
                             uint64_t child, uint32_t mode) {
  batch_->Put(DirKey(parent, name), EncodeDirValue(child, mode));
}
void IndexBatch::DeleteDirEntry(uint64_t parent, const std::string& name) {
  batch_->Delete(DirKey(parent, name));
}
void IndexBatch::PutChunk(uint64_t ino, uint64_t index, const ChunkRef& ref) {
  batch_->Put(ChunkRefKey(ino, index), EncodeChunkRef(ref));
}
void IndexBatch::DeleteChunksFrom(uint64_t ino, uint64_t first) {
  // Chunk deletes must come before later puts of the same batch, so they are
  // written into the batch right away as a range delete.
  DeleteRange(ChunkRefKey(ino, first), ChunkPrefix(ino + 1));
}

void IndexBatch::PutXattr(uint64_t ino, const std::string& name,
                          const std::string& value) {
  batch_->Put(XattrKey(ino, name), value);
}
void IndexBatch::DeleteXattr(uint64_t ino, const std::string& name) {
  batch_->Delete(XattrKey(ino, name));
}
void IndexBatch::DeleteXattrs(uint64_t ino) {
  DeleteRange(XattrPrefix(ino), XattrPrefix(ino + 1));
}

void IndexBatch::PutJournal(uint64_t ino, uint64_t seq,
                            std::string_view sealed) {
  std::string k = JournalPrefix(ino);
  PutBe64(&k, seq);
  batch_->Put(k, rocksdb::Slice(sealed.data(), sealed.size()));
}
void IndexBatch::DeleteJournal(uint64_t ino) {
  DeleteRange(JournalPrefix(ino), JournalPrefix(ino + 1));
}
void IndexBatch::DeleteRange(const std::string& begin, const std::string& end) {
  batch_->DeleteRange(begin, end);
  ++range_deletes_;
}

void IndexBatch::PutRecord(std::string_view key, std::string_view value) {
  batch_->Put(rocksdb::Slice(key.data(), key.size()),
              rocksdb::Slice(value.data(), value.size()));
}
void IndexBatch::MarkStored(const Address& address) {
  batch_->Put(AddrKey('A', address), std::string(1, '\x02'));
}

// Runs the sync barrier before RocksDB writes a memtable into a table file:
// the table is durable once written, and with it every record it holds.
class Index::FlushListener : public rocksdb::EventListener {
 public:
  explicit FlushListener(Index* index) : index_(index) {}
  void OnFlushBegin(rocksdb::DB*, const rocksdb::FlushJobInfo&) override {
    // A flush cannot be refused from here; a failing barrier means the
    // disk fails, which the next synced write reports too.
    Status st = index_->RunBarrier();
    if (!st.ok())
      spdlog::error("making staged chunks durable before an index flush: {}",
                    st.ToString());
  }

 private:
  Index* index_;
};

Result<std::unique_ptr<Index>> Index::Open(const std::string& dir,
                                           const Options& options) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.write_buffer_size = options.write_buffer_bytes;
  o.max_write_buffer_number = 2;
  o.max_open_files = options.max_open_files;
  o.keep_log_file_num = 3;
  o.max_log_file_size = 1 << 20;
  o.max_background_jobs = 1;
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  std::unique_ptr<Index> index(new Index());
  if (options.env != nullptr) {
    if (auto fs = options.env->RocksFileSystem()) {
      index->rocks_env_ = rocksdb::NewCompositeEnv(fs);
      o.env = index->rocks_env_.get();
    }
  }
  o.listeners.push_back(std::make_shared<FlushListener>(index.get()));
  index->cache_ = rocksdb::NewLRUCache(options.block_cache_bytes);
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = index->cache_;
  // Index and filter blocks live in the (small, bounded) block cache, so
  // they must be small too: with one index block per table file, every
  // point lookup in a 26 MB table (a million files) re-read, checksummed
  // and decompressed its ~300 KB index block once the cache had let it go:
  // ~200 us per lookup, ls -lR of a million files took minutes. Partitioned
  // (two-level) index and filters load only the 4 KiB partitions a lookup
  // needs; the top level of each table stays pinned (a few hundred bytes
  // per table). The Bloom filters spare lookups of absent keys (names
  // probed by create, compilers' include paths) the data block.
  t.cache_index_and_filter_blocks = true;
  t.cache_index_and_filter_blocks_with_high_priority = true;
  t.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  t.partition_filters = true;
  t.metadata_block_size = 4096;
  t.pin_top_level_index_and_filter = true;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, dir, &db);
  if (!s.ok()) return FromRocks(s, "open index " + dir);
  index->db_.reset(db);
  WAVEFS_RETURN_IF_ERROR(index->Init());
  return index;
}

Status Index::Init() {
  // Root directory on first open.
  auto root = GetInode(kRootIno);
  if (!root.ok()) {
    if (root.status().code() != Code::kNotFound) return root.status();
    InodeAttr a;
    a.ino = kRootIno;
    a.mode = S_IFDIR | 0755;
    a.nlink = 2;
    a.uid = getuid();
    a.gid = getgid();
    clock_gettime(CLOCK_REALTIME, &a.mtime);
    a.atime = a.ctime = a.mtime;
    IndexBatch b;
    b.PutInode(a);
    WAVEFS_RETURN_IF_ERROR(Commit(&b, true));
  }
  // Next inode number: one past the largest inode key.
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(InodeKey(~0ull));
  if (it->Valid() && it->key().size() == 9 && it->key()[0] == 'I')
    next_ino_ = GetBe64(it->key().data() + 1) + 1;
  // Pending upload counters.
  uint64_t n = 0, bytes = 0;
  for (it->Seek("Q"); it->Valid() && it->key()[0] == 'Q'; it->Next()) {
    std::string_view v(it->value().data(), it->value().size());
    uint64_t len = 0;
    GetLe(&v, &len, 8);
    ++n;
    bytes += len;
  }
  pending_chunks_ = n;
  pending_bytes_ = bytes;
  WAVEFS_RETURN_IF_ERROR(FromRocks(it->status(), "scan index"));
  uint64_t body_bytes = 0;
  for (it->Seek("B"); it->Valid() && it->key()[0] == 'B'; it->Next())
    body_bytes += it->value().size();
  staged_body_bytes_ = body_bytes;
  return FromRocks(it->status(), "scan index");
}

Index::~Index() { Close().IgnoreError(); }

Status Index::Close() {
  if (!db_) return Status::Ok();
  rocksdb::Status s = db_->Close();
  db_.reset();
  return FromRocks(s, "close index");
}

// Range deletes cover only chunk refs ('C'), extended attributes ('X') and
// journal records ('J') (IndexBatch::DeleteChunksFrom, DeleteXattrs,
// DeleteJournal). Reads of any other family skip the range tombstones,
// which RocksDB otherwise gathers and fragments for the first read after
// each new one (see Index::DeleteChunksFrom).
static rocksdb::ReadOptions NoRangeDeletes(char family) {
  assert(family != 'C' && family != 'X' && family != 'J');
  (void)family;
  rocksdb::ReadOptions ro;
  ro.ignore_range_deletions = true;
  return ro;
}

Result<InodeAttr> Index::GetInode(uint64_t ino) {
  std::string v;
  rocksdb::Status s = db_->Get(NoRangeDeletes('I'), InodeKey(ino), &v);
  if (s.IsNotFound())
    return Status::Error(Code::kNotFound, "no inode " + std::to_string(ino));
  WAVEFS_RETURN_IF_ERROR(FromRocks(s, "read inode"));
  return DecodeInode(ino, v);
}

Result<DirEntry> Index::Lookup(uint64_t parent, const std::string& name) {
  std::string v;
  rocksdb::Status s = db_->Get(NoRangeDeletes('D'), DirKey(parent, name), &v);
  if (s.IsNotFound()) return Status::Error(Code::kNotFound, "no entry " + name);
  WAVEFS_RETURN_IF_ERROR(FromRocks(s, "lookup"));
  std::string_view in(v);
  DirEntry e;
  uint64_t ino, mode;
  if (!GetLe(&in, &ino, 8) || !GetLe(&in, &mode, 4))
    return Status::Error(Code::kCorrupt, "directory entry damaged: " + name);
  e.name = name;
  e.ino = ino;
  e.mode = mode;
  return e;
}

Status Index::ListDir(uint64_t parent, const std::string& after,
                      const std::function<bool(const DirEntry&)>& fn) {
  const std::string prefix = DirPrefix(parent);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(NoRangeDeletes('D')));
  if (after.empty()) {
    it->Seek(prefix);
  } else {
    it->Seek(prefix + after);
    if (it->Valid() && it->key().ToString() == prefix + after) it->Next();
  }
  for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view in(it->value().data(), it->value().size());
    DirEntry e;
    uint64_t ino, mode;
    if (!GetLe(&in, &ino, 8) || !GetLe(&in, &mode, 4))
      return Status::Error(Code::kCorrupt, "directory entry damaged");
    e.name.assign(it->key().data() + prefix.size(),
                  it->key().size() - prefix.size());
    e.ino = ino;
    e.mode = mode;
    if (!fn(e)) break;
  }
  return FromRocks(it->status(), "list directory");
}

Result<bool> Index::DirIsEmpty(uint64_t ino) {
  bool empty = true;
  WAVEFS_RETURN_IF_ERROR(ListDir(ino, "", [&](const DirEntry&) {
    empty = false;
    return false;
  }));
  return empty;
}

Result<std::optional<ChunkRef>> Index::GetChunk(uint64_t ino, uint64_t index) {
  std::string v;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), ChunkRefKey(ino, index), &v);
  if (s.IsNotFound()) return std::optional<ChunkRef>();
  WAVEFS_RETURN_IF_ERROR(FromRocks(s, "read chunk ref"));
  auto ref = DecodeChunkRef(v);
  if (!ref.ok()) return ref.status();
  return std::optional<ChunkRef>(*ref);
}

Status Index::ListChunks(
    uint64_t ino, const std::function<void(uint64_t, const ChunkRef&)>& fn) {
  const std::string prefix = ChunkPrefix(ino);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    auto ref = DecodeChunkRef(
        std::string_view(it->value().data(), it->value().size()));
    if (!ref.ok()) return ref.status();
    fn(GetBe64(it->key().data() + prefix.size()), *ref);
  }
  return FromRocks(it->status(), "list chunks");
}

Status Index::ListJournal(
    uint64_t ino, const std::function<void(uint64_t, std::string_view)>& fn) {
  const std::string prefix = JournalPrefix(ino);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    if (it->key().size() != prefix.size() + 8) continue;
    fn(GetBe64(it->key().data() + prefix.size()),
       std::string_view(it->value().data(), it->value().size()));
  }
  return FromRocks(it->status(), "list tail journal");
}

Result<std::vector<uint64_t>> Index::JournaledInodes() {
  std::vector<uint64_t> out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("J"); it->Valid() && it->key()[0] == 'J';) {
    if (it->key().size() != 17) {
      it->Next();
      continue;
    }
    const uint64_t ino = GetBe64(it->key().data() + 1);
    out.push_back(ino);
    if (ino == ~0ull) break;
    it->Seek(JournalPrefix(ino + 1));
  }
  WAVEFS_RETURN_IF_ERROR(FromRocks(it->status(), "list tail journals"));
  return out;
}

void Index::SetSyncBarrier(std::function<Status()> barrier) {
  std::lock_guard<std::mutex> lock(barrier_mu_);
  barrier_ = std::move(barrier);
}

Status Index::RunBarrier() {
  std::function<Status()> barrier;
  {
    std::lock_guard<std::mutex> lock(barrier_mu_);
    barrier = barrier_;
  }
  return barrier ? barrier() : Status::Ok();
}

Status Index::Commit(IndexBatch* batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  Status st;
  if (!sync) {
    std::shared_lock<std::shared_mutex> lock(write_mu_);
    st = FromRocks(db_->Write(wo, batch->batch_.get()), "commit index batch");
  } else {
    // No other record may slip into the log between the barrier and this
    // write: it would become durable with it, naming a chunk that is not.
    std::unique_lock<std::shared_mutex> lock(write_mu_);
    WAVEFS_RETURN_IF_ERROR(RunBarrier());
    st = FromRocks(db_->Write(wo, batch->batch_.get()), "commit index batch");
  }
  if (st.ok()) commits_.fetch_add(1);
  return st;
}

Status Index::DeleteKeys(IndexBatch* batch, const std::string& begin,
                         const std::string& end) {
  std::vector<std::string> keys;
  rocksdb::ReadOptions ro;
  const rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (keys.size() == kPointDeleteLimit) {
      batch->DeleteRange(begin, end);
      return Status::Ok();
    }
    keys.push_back(it->key().ToString());
  }
  WAVEFS_RETURN_IF_ERROR(FromRocks(it->status(), "list records to delete"));
  for (const std::string& k : keys) batch->batch_->Delete(k);
  return Status::Ok();
}

Status Index::DeleteChunksFrom(IndexBatch* batch, uint64_t ino,
                               uint64_t first) {
  return DeleteKeys(batch, ChunkRefKey(ino, first), ChunkPrefix(ino + 1));
}

Status Index::DeleteXattrs(IndexBatch* batch, uint64_t ino) {
  return DeleteKeys(batch, XattrPrefix(ino), XattrPrefix(ino + 1));
}

Status Index::DeleteJournal(IndexBatch* batch, uint64_t ino) {
  return DeleteKeys(batch, JournalPrefix(ino), JournalPrefix(ino + 1));
}

Result<uint64_t> Index::ReclaimOrphans() {
  IndexBatch b;
  uint64_t n = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("I"); it->Valid() && it->key()[0] == 'I'; it->Next()) {
    if (it->key().size() != 9) continue;
    const uint64_t ino = GetBe64(it->key().data() + 1);
    auto a = DecodeInode(
        ino, std::string_view(it->value().data(), it->value().size()));
    if (!a.ok() || a->nlink != 0 || ino == kRootIno) continue;
    // Point deletes where few (DeleteKeys says why): orphans are often
    // small files unlinked while open.
    b.DeleteInode(ino);
    WAVEFS_RETURN_IF_ERROR(DeleteChunksFrom(&b, ino, 0));
    WAVEFS_RETURN_IF_ERROR(DeleteXattrs(&b, ino));
    WAVEFS_RETURN_IF_ERROR(DeleteJournal(&b, ino));
    ++n;
  }
  WAVEFS_RETURN_IF_ERROR(FromRocks(it->status(), "scan inodes"));
  if (n > 0) WAVEFS_RETURN_IF_ERROR(Commit(&b, true));
  return n;
}

Status Index::Sync() {
  std::unique_lock<std::shared_mutex> lock(write_mu_);
  WAVEFS_RETURN_IF_ERROR(RunBarrier());
  return FromRocks(db_->SyncWAL(), "sync index log");
}

Result<std::string> Index::GetXattr(uint64_t ino, const std::string& name) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), XattrKey(ino, name), &v);
  if (s.IsNotFound()) return Status::Error(Code::kNotFound, "no attribute");
  WAVEFS_RETURN_IF_ERROR(FromRocks(s, "read attribute"));
  return v;
}

Status Index::ListXattrs(
    uint64_t ino,
    const std::function<void(const std::string&, const std::string&)>& fn) {
  const std::string prefix = XattrPrefix(ino);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    fn(std::string(it->key().data() + prefix.size(),
                   it->key().size() - prefix.size()),
       it->value().ToString());
  }
  return FromRocks(it->status(), "list attributes");
}

Result<bool> Index::IsKnown(const Address& address) {
  std::string v;
  rocksdb::Status s = db_->Get(NoRangeDeletes('A'), AddrKey('A', address), &v);
  if (s.IsNotFound()) return false;
  WAVEFS_RETURN_IF_ERROR(FromRocks(s, "read address state"));
  return true;
}

Result<bool> Index::IsQueued(const Address& address) {
  std::string v;
  rocksdb::Status s = db_->Get(NoRangeDeletes('Q'), AddrKey('Q', address), &v);
  if (s.IsNotFound()) return false;
  WAVEFS_RETURN_IF_ERROR(FromRocks(s, "read queue"));
  return true;
}

Result<bool> Index::LookupForRef(const Address& address) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  auto known = IsKnown(address);
  if (known.ok() && *known) UntrackLocked(address);
  return known;
}

Result<bool> Index::EnqueueStaged(const Address& address, uint64_t length,
                                  std::span<const uint8_t> body,
                                  const StageOwner* owner) {
  std::unique_lock<std::mutex> lock(queue_mu_);
  // gc is deleting the store's object of this address: queue it only once
  // the delete is done, so the upload re-creates the object (store/gc.h).
  deleting_cv_.wait(lock, [&] { return deleting_.count(address) == 0; });
  auto known = IsKnown(address);
  if (!known.ok()) return known.status();
  if (*known) {
    // The caller names it too: no longer one reference.
    UntrackLocked(address);
    return false;
  }
  rocksdb::WriteBatch b;
  std::string len;
  PutLe(&len, length, 8);
  b.Put(AddrKey('Q', address), len);
  b.Put(AddrKey('A', address), std::string(1, '\x01'));
  if (!body.empty()) {
    b.Put(AddrKey('B', address),
          rocksdb::Slice(reinterpret_cast<const char*>(body.data()),
                         body.size()));
  }
  {
    std::shared_lock<std::shared_mutex> write_lock(write_mu_);
    WAVEFS_RETURN_IF_ERROR(
        FromRocks(db_->Write(rocksdb::WriteOptions(), &b), "enqueue upload"));
  }
  pending_chunks_ += 1;
  pending_bytes_ += length;
  staged_body_bytes_ += body.size();
  // At most this many chunks are held at once (a few hundred bytes of
  // memory each); past it, chunks are uploaded as usual.
  constexpr size_t kMaxHeld = 4096;
  if (owner != nullptr &&
      owner->hold > std::chrono::steady_clock::duration::zero() &&
      held_.size() < kMaxHeld) {
    held_[address] = Held{owner->ino, owner->index, length, body.size(),
                          std::chrono::steady_clock::now() + owner->hold};
    held_by_ino_[owner->ino].insert(address);
  }
  return true;
}

void Index::UntrackLocked(const Address& address) {
  auto it = held_.find(address);
  if (it == held_.end()) return;
  auto by = held_by_ino_.find(it->second.ino);
  if (by != held_by_ino_.end()) {
    by->second.erase(address);
    if (by->second.empty()) held_by_ino_.erase(by);
  }
  held_.erase(it);
}

void Index::Retain(const Address& address) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  UntrackLocked(address);
}

size_t Index::EndSpillHolds() {
  std::lock_guard<std::mutex> lock(queue_mu_);
  std::vector<Address> ended;
  for (const auto& [a, h] : held_)
    if (h.body_bytes == 0) ended.push_back(a);
  for (const Address& a : ended) UntrackLocked(a);
  return ended.size();
}

std::unique_ptr<IndexView> Index::NewViewRetainingAll() {
  std::lock_guard<std::mutex> lock(queue_mu_);
  held_.clear();
  held_by_ino_.clear();
  return NewView();
}

Result<bool> Index::ClaimForUpload(const Address& address) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  if (held_.count(address) > 0) {
    // A held chunk is dropped only while held: it is still queued.
    UntrackLocked(address);
    return true;
  }
  return IsQueued(address);
}

uint64_t Index::held_chunks() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return held_.size();
}

Result<uint64_t> Index::DropSuperseded(
    uint64_t ino,
    const std::function<bool(uint64_t index, const Address&)>& still_named,
    std::vector<Address>* spilled) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  auto by = held_by_ino_.find(ino);
  if (by == held_by_ino_.end()) return uint64_t{0};
  std::vector<Address> gone;
  auto earliest = std::chrono::steady_clock::time_point::max();
  for (const Address& a : by->second) {
    const Held& h = held_.at(a);
    if (!still_named(h.index, a)) {
      gone.push_back(a);
      earliest = std::min(earliest, h.until);
    }
  }
  if (gone.empty()) return uint64_t{0};
  // What replaces them waits no longer than they would have: a file
  // rewritten without a pause still has a version uploaded once per hold.
  for (const Address& a : by->second) {
    Held& h = held_.at(a);
    h.until = std::min(h.until, earliest);
  }
  return DropHeldLocked(gone, spilled);
}

Result<bool> Index::DropReplaced(uint64_t ino, uint64_t index,
                                 const Address& old, const Address& replacement,
                                 bool* spilled) {
  *spilled = false;
  std::lock_guard<std::mutex> lock(queue_mu_);
  auto it = held_.find(old);
  if (it == held_.end() || it->second.ino != ino || it->second.index != index)
    return false;
  // The slot's next version waits no longer than this one would have.
  auto next = held_.find(replacement);
  if (next != held_.end() && next->second.ino == ino &&
      next->second.index == index)
    next->second.until = std::min(next->second.until, it->second.until);
  std::vector<Address> in_spill;
  auto dropped = DropHeldLocked({old}, &in_spill);
  if (!dropped.ok()) return dropped.status();
  *spilled = !in_spill.empty();
  return *dropped > 0;
}

Result<uint64_t> Index::DropHeldLocked(const std::vector<Address>& gone,
                                       std::vector<Address>* spilled) {
  rocksdb::WriteBatch b;
  uint64_t chunks = 0, bytes = 0, body_bytes = 0;
  std::vector<Address> from_spill;
  for (const Address& a : gone) {
    const Held h = held_.at(a);
    UntrackLocked(a);
    // Held means queued (completion and loss end the hold), but a check
    // costs one small read and keeps the counters right whatever happened.
    auto queued = IsQueued(a);
    if (!queued.ok()) return queued.status();
    if (!*queued) continue;
    b.Delete(AddrKey('Q', a));
    b.Delete(AddrKey('A', a));
    if (h.body_bytes > 0)
      b.Delete(AddrKey('B', a));
    else
      from_spill.push_back(a);
    body_bytes += h.body_bytes;
    bytes += h.length;
    chunks += 1;
  }
  if (chunks == 0) return uint64_t{0};
  {
    std::shared_lock<std::shared_mutex> write_lock(write_mu_);
    WAVEFS_RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &b),
                                     "drop superseded chunks"));
  }
  pending_chunks_ -= chunks;
  pending_bytes_ -= bytes;
  staged_body_bytes_ -= body_bytes;
  superseded_chunks_ += chunks;
  superseded_bytes_ += bytes;
  if (spilled != nullptr)
    spilled->insert(spilled->end(), from_spill.begin(), from_spill.end());
  return chunks;
}

Result<bool> Index::GetStagedBody(const Address& address,
                                  rocksdb::PinnableSlice* v) {
  rocksdb::Status s = db_->Get(NoRangeDeletes('B'), db_->DefaultColumnFamily(),
                               AddrKey('B', address), v);
  if (s.IsNotFound()) return false;
  WAVEFS_RETURN_IF_ERROR(FromRocks(s, "read staged chunk"));
  return true;
}

Status Index::ReadStagedBody(const Address& address,
                             std::vector<uint8_t>* out) {
  rocksdb::PinnableSlice v;
  auto found = GetStagedBody(address, &v);
  if (!found.ok()) return found.status();
  if (!*found) return Status::Error(Code::kNotFound, "no staged body", ENOENT);
  out->assign(v.data(), v.data() + v.size());
  return Status::Ok();
}

Result<bool> Index::HasStagedBody(const Address& address) {
  rocksdb::PinnableSlice v;
  return GetStagedBody(address, &v);
}

// Adds to b the deletion of address's staged body, if it has one, and
// returns the body's size (0 when none). Called under queue_mu_.
Result<uint64_t> Index::DeleteStagedBody(const Address& address,
                                         rocksdb::WriteBatch* b) {
  if (staged_body_bytes_.load() == 0) return uint64_t{0};
  rocksdb::PinnableSlice v;
  auto found = GetStagedBody(address, &v);
  if (!found.ok()) return found.status();
  if (!*found) return uint64_t{0};
  b->Delete(AddrKey('B', address));
  return uint64_t{v.size()};
}

namespace {
std::function<void()> peek_queue_hook;
}  // namespace

void SetPeekQueueHookForTesting(std::function<void()> hook) {
  peek_queue_hook = std::move(hook);
}

Status Index::PeekQueue(size_t max,
                        std::vector<std::pair<Address, uint64_t>>* out,
                        bool include_held,
                        std::chrono::steady_clock::time_point* next_release) {
  out->clear();
  // The holds as of now (a copy: the scan below runs without queue_mu_; a
  // hold that ends meanwhile is seen at the next look). The iterator (a
  // snapshot of the queue) is taken under the same lock: EnqueueStaged
  // writes a chunk's queue entry and starts its hold under queue_mu_, so
  // every entry the scan sees has its hold in the copy. (Taken after the
  // lock, a chunk queued in between was handed out, and the uploader's
  // claim ended its hold: an evicted version went up that its
  // replacement should have dropped.)
  std::vector<std::pair<Address, std::chrono::steady_clock::time_point>> held;
  std::unique_ptr<rocksdb::Iterator> it;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (!include_held) {
      const auto now = std::chrono::steady_clock::now();
      for (const auto& [a, h] : held_) {
        if (h.until > now) held.emplace_back(a, h.until);
      }
    }
    it.reset(db_->NewIterator(rocksdb::ReadOptions()));
  }
  if (peek_queue_hook) peek_queue_hook();
  for (it->Seek("Q"); it->Valid() && out->size() < max && it->key()[0] == 'Q';
       it->Next()) {
    if (it->key().size() != 33) continue;
    Address a;
    std::memcpy(a.data(), it->key().data() + 1, a.size());
    if (!held.empty()) {
      // held is in address order, as the queue is.
      auto h = std::lower_bound(
          held.begin(), held.end(), a,
          [](const auto& e, const Address& x) { return e.first < x; });
      if (h != held.end() && h->first == a) {
        if (next_release != nullptr)
          *next_release = std::min(*next_release, h->second);
        continue;
      }
    }
    std::string_view v(it->value().data(), it->value().size());
    uint64_t len = 0;
    GetLe(&v, &len, 8);
    out->emplace_back(a, len);
  }
  return FromRocks(it->status(), "read upload queue");
}

Status Index::CompleteUpload(const Address& address, uint64_t length) {
  return CompleteUploads({{address, length}});
}

Status Index::CompleteUploads(
    const std::vector<std::pair<Address, uint64_t>>& done) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  rocksdb::WriteBatch b;
  uint64_t bytes = 0, body_bytes = 0;
  for (const auto& [address, length] : done) {
    UntrackLocked(address);
    b.Delete(AddrKey('Q', address));
    b.Put(AddrKey('A', address), std::string(1, '\x02'));
    auto body = DeleteStagedBody(address, &b);
    if (!body.ok()) return body.status();
    body_bytes += *body;
    bytes += length;
  }
  {
    std::shared_lock<std::shared_mutex> write_lock(write_mu_);
    WAVEFS_RETURN_IF_ERROR(
        FromRocks(db_->Write(rocksdb::WriteOptions(), &b), "complete uploads"));
  }
  pending_chunks_ -= done.size();
  pending_bytes_ -= bytes;
  staged_body_bytes_ -= body_bytes;
  return Status::Ok();
}

Status Index::DropQueued(const Address& address, uint64_t length) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  UntrackLocked(address);
  rocksdb::WriteBatch b;
  b.Delete(AddrKey('Q', address));
  b.Delete(AddrKey('A', address));
  auto body = DeleteStagedBody(address, &b);
  if (!body.ok()) return body.status();
  {
    std::shared_lock<std::shared_mutex> write_lock(write_mu_);
    WAVEFS_RETURN_IF_ERROR(
        FromRocks(db_->Write(rocksdb::WriteOptions(), &b), "drop queue entry"));
  }
  pending_chunks_ -= 1;
  pending_bytes_ -= length;
  staged_body_bytes_ -= *body;
  return Status::Ok();
}

// --- gc coordination ---------------------------------------------------------

IndexView::~IndexView() { db_->ReleaseSnapshot(snapshot_); }

std::unique_ptr<IndexView> Index::NewView() {
  return std::unique_ptr<IndexView>(
      new IndexView(db_.get(), db_->GetSnapshot()));
}

Status IndexView::ForEachChunk(
    const std::function<void(uint64_t, uint64_t, const ChunkRef&)>& fn) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot_;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek("C"); it->Valid() && it->key()[0] == 'C'; it->Next()) {
    if (it->key().size() != 17) continue;
    auto ref = DecodeChunkRef(
        std::string_view(it->value().data(), it->value().size()));
    if (!ref.ok()) return ref.status();
    fn(GetBe64(it->key().data() + 1), GetBe64(it->key().data() + 9), *ref);
  }
  return FromRocks(it->status(), "scan chunk refs");
}

Status IndexView::ForEachAddressKey(
    char tag, const std::function<void(const Address&, std::string_view)>& fn) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot_;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  const std::string prefix(1, tag);
  for (it->Seek(prefix); it->Valid() && it->key()[0] == tag; it->Next()) {
    if (it->key().size() != 33) continue;
    Address a;
    std::memcpy(a.data(), it->key().data() + 1, a.size());
    fn(a, std::string_view(it->value().data(), it->value().size()));
  }
  return FromRocks(it->status(), "scan address keys");
}

Status IndexView::ForEachInode(
    const std::function<void(const InodeAttr&)>& fn,
    const std::function<void(uint64_t, const Status&)>& bad) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot_;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek("I"); it->Valid() && it->key()[0] == 'I'; it->Next()) {
    if (it->key().size() != 9) continue;
    const uint64_t ino = GetBe64(it->key().data() + 1);
    auto a = DecodeInode(
        ino, std::string_view(it->value().data(), it->value().size()));
    if (a.ok()) {
      fn(*a);
    } else {
      bad(ino, a.status());
    }
  }
  return FromRocks(it->status(), "scan inodes");
}

Status IndexView::ForEachDirEntry(
    const std::function<void(uint64_t, const DirEntry&)>& fn) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot_;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek("D"); it->Valid() && it->key()[0] == 'D'; it->Next()) {
    if (it->key().size() < 9) continue;
    std::string_view in(it->value().data(), it->value().size());
    DirEntry e;
    uint64_t ino, mode;
    if (!GetLe(&in, &ino, 8) || !GetLe(&in, &mode, 4))
      return Status::Error(Code::kCorrupt, "directory entry damaged");
    e.name.assign(it->key().data() + 9, it->key().size() - 9);
    e.ino = ino;
    e.mode = static_cast<uint32_t>(mode);
    fn(GetBe64(it->key().data() + 1), e);
  }
  return FromRocks(it->status(), "scan directory entries");
}

Status IndexView::ForEachRecord(
    const std::function<Status(std::string_view, std::string_view)>& fn) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot_;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    WAVEFS_RETURN_IF_ERROR(
        fn(std::string_view(it->key().data(), it->key().size()),
           std::string_view(it->value().data(), it->value().size())));
  }
  return FromRocks(it->status(), "scan index records");
}

Result<std::vector<Address>> Index::RetireStored(
    const std::vector<Address>& candidates) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  rocksdb::WriteBatch b;
  std::vector<Address> retired;
  for (const Address& a : candidates) {
    std::string v;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), AddrKey('Q', a), &v);
    if (s.ok()) continue;  // queued: live
    if (!s.IsNotFound()) return FromRocks(s, "read queue");
    b.Delete(AddrKey('A', a));
    retired.push_back(a);
  }
  if (!retired.empty()) {
    std::shared_lock<std::shared_mutex> write_lock(write_mu_);
    WAVEFS_RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &b),
                                     "retire stored addresses"));
  }
  return retired;
}

Status Index::RestoreStored(const std::vector<Address>& kept) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  rocksdb::WriteBatch b;
  size_t n = 0;
  for (const Address& a : kept) {
    std::string v;
    rocksdb::Status q = db_->Get(rocksdb::ReadOptions(), AddrKey('Q', a), &v);
    rocksdb::Status k = db_->Get(rocksdb::ReadOptions(), AddrKey('A', a), &v);
    if (!q.IsNotFound() || !k.IsNotFound()) continue;
    b.Put(AddrKey('A', a), std::string(1, '\x02'));
    ++n;
  }
  if (n == 0) return Status::Ok();
  std::shared_lock<std::shared_mutex> write_lock(write_mu_);
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &b),
                   "restore stored addresses");
}

Result<bool> Index::BeginDelete(const Address& address) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  for (char tag : {'Q', 'A', 'P'}) {
    std::string v;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), AddrKey(tag, address), &v);
    if (s.ok()) return false;
    if (!s.IsNotFound()) return FromRocks(s, "read address state");
  }
  deleting_.insert(address);
  return true;
}

void Index::EndDelete(const Address& address) {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    deleting_.erase(address);
  }
  deleting_cv_.notify_all();
}

}  // namespace wavefs
