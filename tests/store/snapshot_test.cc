// Index snapshots (store/snapshot.h): the object format (round trip, wrong
// key, every tampered byte, every truncation), retention, and restoring an
// index from a store.
#include "store/snapshot.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <set>
#include <thread>

#include "chunker/crypto.h"
#include "chunker/data_map.h"
#include "store/local_store.h"
#include "store/memory_store.h"
#include "tests/store/store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeAddress;
using testing_util::TempDir;

Secret TestSecret(uint8_t first) {
  Secret s;
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(first + i);
  return s;
}

StoreIdBytes TestStoreId() {
  StoreIdBytes id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(i);
  return id;
}

struct Decoded {
  std::vector<std::pair<std::string, std::string>> records;
  std::vector<Address> pending;
  SnapshotHeader header;
};

Status Decode(const std::vector<uint8_t>& object, const SnapshotKey& key,
              const std::string& id, Decoded* d) {
  return DecodeSnapshot(
      object, key, id, &d->header,
      [&](std::string_view k, std::string_view v) {
        d->records.emplace_back(std::string(k), std::string(v));
        return Status::Ok();
      },
      [&](const Address& a) {
        d->pending.push_back(a);
        return Status::Ok();
      });
}

class SnapshotFormatTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(InitCrypto().ok()); }
  const SnapshotKey key_ = DeriveSnapshotKey(TestSecret(0));
  const std::string id_ = "20250131T120000.123Z-0a1b2c3d";
};

TEST_F(SnapshotFormatTest, IdsSortByTimeAndParse) {
  using namespace std::chrono;
  const auto t = system_clock::time_point(milliseconds(1738324800123));
  const std::string a = NewSnapshotId(t);
  const std::string b = NewSnapshotId(t + milliseconds(1));
  EXPECT_TRUE(IsSnapshotId(a)) << a;
  EXPECT_EQ(a.substr(0, 20), "20250131T120000.123Z");
  EXPECT_LT(a, b);
  EXPECT_EQ(SnapshotTimeOf(a), "2025-01-31 12:00:00.123 UTC");
  EXPECT_FALSE(IsSnapshotId("20250131T120000.123Z-0A1B2C3D"));
  EXPECT_FALSE(IsSnapshotId("../etc"));
}

TEST_F(SnapshotFormatTest, KeyIsNotAChunkKeyAndDependsOnTheSecret) {
  const Secret s = TestSecret(0);
  for (ChunkFormat f : {ChunkFormat::kWhole, ChunkFormat::kSegmentedAes}) {
    const ChunkKey chunk = DeriveChunkKey(f, s, {});
    EXPECT_NE(DeriveSnapshotKey(s), SnapshotKey(chunk));
  }
  EXPECT_NE(DeriveSnapshotKey(s), DeriveSnapshotKey(TestSecret(1)));
}

// Independent check of the key derivation: libsodium's crypto_kdf is
// BLAKE2b-256 keyed with the secret, salt = u64le(subkey) || 8 zero bytes,
// personal = context || 8 zero bytes, empty message. Frozen from Python:
//   hashlib.blake2b(b'', digest_size=32, key=bytes(range(32)),
//     salt=(1).to_bytes(8,'little')+bytes(8), person=b'wfsnap01'+bytes(8))
TEST_F(SnapshotFormatTest, GoldenKey) {
  EXPECT_EQ(ToHex(DeriveSnapshotKey(TestSecret(0))),
            "2d60ae237f67ce77a313eec85caec118ef81dbde82c911992cc86ffa67e1fb9d");
}

TEST_F(SnapshotFormatTest, RoundTripAcrossFrames) {
  SnapshotWriter w(key_, TestStoreId(), id_, 1738324800123);
  std::vector<std::pair<std::string, std::string>> want;
  // About 3.5 MiB: records span frame boundaries.
  for (int i = 0; i < 900; ++i) {
    std::string k = "C" + std::to_string(i);
    std::string v(4000 + i, static_cast<char>(i));
    w.AddRecord(k, v);
    want.emplace_back(k, v);
  }
  w.AddRecord("", "");
  want.emplace_back("", "");
  w.AddPending(MakeAddress(7));
  std::vector<uint8_t> object = w.Finish();
  Decoded d;
  WAVEFS_ASSERT_OK(Decode(object, key_, id_, &d));
  EXPECT_EQ(d.records, want);
  ASSERT_EQ(d.pending.size(), 1u);
  EXPECT_EQ(d.pending[0], MakeAddress(7));
  EXPECT_EQ(d.header.id, id_);
  EXPECT_EQ(d.header.store_id, TestStoreId());
  EXPECT_EQ(d.header.created_ms, 1738324800123u);
}

TEST_F(SnapshotFormatTest, EmptySnapshotRoundTrips) {
  SnapshotWriter w(key_, TestStoreId(), id_, 1);
  Decoded d;
  WAVEFS_ASSERT_OK(Decode(w.Finish(), key_, id_, &d));
  EXPECT_TRUE(d.records.empty());
}

TEST_F(SnapshotFormatTest, WrongKeyIsPermission) {
  SnapshotWriter w(key_, TestStoreId(), id_, 1);
  w.AddRecord("I1", "x");
  Decoded d;
  Status st = Decode(w.Finish(), DeriveSnapshotKey(TestSecret(9)), id_, &d);
  EXPECT_EQ(st.code(), Code::kPermission) << st.ToString();
  EXPECT_NE(st.message().find("wrong key"), std::string::npos);
}

TEST_F(SnapshotFormatTest, EveryTamperedByteIsRefused) {
  SnapshotWriter w(key_, TestStoreId(), id_, 1);
  w.AddRecord("I1", "inode");
  w.AddRecord("D1name", "entry");
  w.AddPending(MakeAddress(3));
  const std::vector<uint8_t> object = w.Finish();
  for (size_t i = 0; i < object.size(); ++i) {
    std::vector<uint8_t> bad = object;
    bad[i] ^= 0x01;
    Decoded d;
    Status st = Decode(bad, key_, id_, &d);
    EXPECT_FALSE(st.ok()) << "flipped byte " << i << " was accepted";
  }
}

TEST_F(SnapshotFormatTest, EveryTruncationAndAppendIsRefused) {
  SnapshotWriter w(key_, TestStoreId(), id_, 1);
  for (int i = 0; i < 50; ++i) w.AddRecord("X" + std::to_string(i), "value");
  const std::vector<uint8_t> object = w.Finish();
  for (size_t n = 0; n < object.size(); ++n) {
    std::vector<uint8_t> cut(object.begin(), object.begin() + n);
    Decoded d;
    Status st = Decode(cut, key_, id_, &d);
    EXPECT_EQ(st.code(), Code::kCorrupt) << "truncated to " << n;
  }
  std::vector<uint8_t> longer = object;
  longer.push_back(0);
  Decoded d;
  EXPECT_EQ(Decode(longer, key_, id_, &d).code(), Code::kCorrupt);
}

TEST_F(SnapshotFormatTest, RenamedSnapshotIsRefused) {
  SnapshotWriter w(key_, TestStoreId(), id_, 1);
  Decoded d;
  Status st = Decode(w.Finish(), key_, "20990101T000000.000Z-00000000", &d);
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
}

// --- in a store --------------------------------------------------------------

// Every store test runs on a memory store (PutObject/GetObject through
// memory) and on a local store (snapshots streamed through files).
class SnapshotStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitCrypto().ok());
    if (GetParam()) {
      auto local = LocalStore::Open(tmp_.path() + "/store");
      ASSERT_TRUE(local.ok()) << local.status().ToString();
      store_ = std::move(*local);
    } else {
      store_ = std::make_unique<MemoryStore>();
    }
    auto opened = Index::Open(tmp_.path() + "/index", Index::Options{});
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    index_ = std::move(*opened);
  }
  void TearDown() override {
    if (index_) {
      EXPECT_TRUE(index_->Close().ok());
    }
  }
  // One file /f with two data chunks (the second still queued), a hole and
  // an attribute; a third address only queued.
  void Populate() {
    InodeAttr a;
    a.ino = 5;
    a.mode = S_IFREG | 0644;
    a.size = 3 * kChunkSize;
    IndexBatch b;
    b.PutInode(a);
    b.PutDirEntry(kRootIno, "f", 5, a.mode);
    ChunkRef r0{}, r1{}, hole{};
    r0.address = MakeAddress(1);
    r0.key = ChunkKey(MakeAddress(11));
    r0.length = kChunkSize;
    r1.address = MakeAddress(2);
    r1.key = ChunkKey(MakeAddress(12));
    r1.length = kChunkSize;
    hole.hole = true;
    hole.length = kChunkSize;
    b.PutChunk(5, 0, r0);
    b.PutChunk(5, 1, r1);
    b.PutChunk(5, 2, hole);
    b.PutXattr(5, "user.k", "v");
    WAVEFS_ASSERT_OK(index_->Commit(&b, true));
    // Address 2 is a small chunk staged in the index (a 'B' body).
    const std::vector<uint8_t> body(100, 2);
    for (uint32_t seed : {1u, 2u}) {
      auto q = index_->EnqueueStaged(MakeAddress(seed), 100,
                                     seed == 2 ? std::span<const uint8_t>(body)
                                               : std::span<const uint8_t>());
      ASSERT_TRUE(q.ok());
    }
    WAVEFS_ASSERT_OK(index_->CompleteUpload(MakeAddress(1), 100));
    const std::vector<uint8_t> obj(100, 1);
    WAVEFS_ASSERT_OK(store_->Put(MakeAddress(1), obj));
  }
  Result<TakenSnapshot> Take(size_t keep = 10) {
    // Ids are per millisecond: keep them in order.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return TakeSnapshot(index_.get(), store_.get(), key_, TestStoreId(), keep,
                        tmp_.path());
  }

  TempDir tmp_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<ChunkStore> store_;
  const SnapshotKey key_ = DeriveSnapshotKey(TestSecret(0));
};

TEST_P(SnapshotStoreTest, RetentionKeepsTheNewest) {
  std::vector<std::string> ids;
  for (int i = 0; i < 13; ++i) {
    auto t = Take(10);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    ids.push_back(t->id);
  }
  auto all = ListSnapshots(store_.get());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ((*all)[i].id, ids[i + 3]);
  auto pruned = PruneSnapshots(store_.get(), 4);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 6u);
  all = ListSnapshots(store_.get());
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ(all->back().id, ids.back());
  // Objects that are not snapshots are neither listed nor removed.
  const std::vector<uint8_t> junk(3, 0);
  WAVEFS_ASSERT_OK(store_->PutObject("snapshots/notes.txt", junk));
  EXPECT_EQ(*PruneSnapshots(store_.get(), 1), 3u);
  std::vector<uint8_t> out;
  WAVEFS_EXPECT_OK(store_->GetObject("snapshots/notes.txt", &out));
}

TEST_P(SnapshotStoreTest, RestoreRebuildsTheIndex) {
  Populate();
  auto t = Take();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->pending, 1u);  // address 2 was still queued
  const std::string dir = tmp_.path() + "/restored";
  auto r = RestoreIndex(store_.get(), key_, TestStoreId(), dir, "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->id, t->id);
  EXPECT_EQ(r->chunk_refs, 2u);
  EXPECT_EQ(r->pending, 1u);
  EXPECT_EQ(r->missing, 1u);  // address 2 never reached the store
  EXPECT_EQ(r->damaged_files, 1u);
  EXPECT_FALSE(std::filesystem::exists(dir + ".restoring"));

  auto opened = Index::Open(dir, Index::Options{});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Index& got = **opened;
  auto e = got.Lookup(kRootIno, "f");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->ino, 5u);
  auto a = got.GetInode(5);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 3 * kChunkSize);
  auto c = got.GetChunk(5, 1);
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->address, MakeAddress(2));
  auto h = got.GetChunk(5, 2);
  ASSERT_TRUE(h.ok() && h->has_value());
  EXPECT_TRUE((*h)->hole);
  EXPECT_EQ(*got.GetXattr(5, "user.k"), "v");
  EXPECT_TRUE(*got.IsKnown(MakeAddress(1)));   // stored: dedup works
  EXPECT_FALSE(*got.IsKnown(MakeAddress(2)));  // missing: uploaded again
  EXPECT_FALSE(*got.IsQueued(MakeAddress(2)));
  // A staged body is not a record of the snapshot: it is pending.
  EXPECT_FALSE(*got.HasStagedBody(MakeAddress(2)));
  EXPECT_EQ(got.staged_body_bytes(), 0u);
  EXPECT_EQ(got.pending_chunks(), 0u);
  EXPECT_GE(got.AllocateIno(), 6u);
  EXPECT_TRUE(got.Close().ok());
}

TEST_P(SnapshotStoreTest, RestoreSkipsADamagedNewestSnapshot) {
  Populate();
  auto older = Take();
  ASSERT_TRUE(older.ok());
  IndexBatch b;
  b.PutDirEntry(kRootIno, "g", 5, S_IFREG | 0644);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  auto newer = Take();
  ASSERT_TRUE(newer.ok());
  // Flip a byte near the end (in the last frame), through the store.
  const std::string name = SnapshotObjectName(newer->id);
  std::vector<uint8_t> obj;
  WAVEFS_ASSERT_OK(store_->GetObject(name, &obj));
  obj[obj.size() - 5] ^= 0x40;
  WAVEFS_ASSERT_OK(store_->PutObject(name, obj));

  const std::string dir = tmp_.path() + "/restored";
  auto r = RestoreIndex(store_.get(), key_, TestStoreId(), dir, "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->id, older->id);
  ASSERT_EQ(r->skipped.size(), 1u);
  EXPECT_NE(r->skipped[0].find(newer->id), std::string::npos);
  // The chosen one is not skipped over.
  std::filesystem::remove_all(dir);
  auto chosen = RestoreIndex(store_.get(), key_, TestStoreId(), dir, newer->id);
  EXPECT_EQ(chosen.status().code(), Code::kCorrupt);
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST_P(SnapshotStoreTest, RestoreErrors) {
  const std::string dir = tmp_.path() + "/restored";
  auto none = RestoreIndex(store_.get(), key_, TestStoreId(), dir, "");
  EXPECT_EQ(none.status().code(), Code::kNotFound);
  Populate();
  ASSERT_TRUE(Take().ok());
  auto wrong = RestoreIndex(store_.get(), DeriveSnapshotKey(TestSecret(3)),
                            TestStoreId(), dir, "");
  EXPECT_EQ(wrong.status().code(), Code::kPermission);
  StoreIdBytes other = TestStoreId();
  other[0] ^= 1;
  auto foreign = RestoreIndex(store_.get(), key_, other, dir, "");
  EXPECT_FALSE(foreign.ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST_P(SnapshotStoreTest, GcSeesEveryAddressOfEverySnapshot) {
  Populate();
  ASSERT_TRUE(Take().ok());
  // The file goes; the snapshot still names its chunks.
  IndexBatch b;
  b.DeleteChunksFrom(5, 0);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  WAVEFS_ASSERT_OK(index_->PinChunks({MakeAddress(9)}));
  ASSERT_TRUE(Take().ok());
  std::set<Address> seen;
  WAVEFS_ASSERT_OK(
      ForEachSnapshotAddress(store_.get(), key_, tmp_.path(),
                             [&](const Address& a) { seen.insert(a); }));
  EXPECT_EQ(seen, (std::set<Address>{MakeAddress(1), MakeAddress(2),
                                     MakeAddress(9)}));
  EXPECT_EQ(
      ForEachSnapshotAddress(store_.get(), DeriveSnapshotKey(TestSecret(3)),
                             tmp_.path(), [](const Address&) {})
          .code(),
      Code::kPermission);
}

// A snapshot of several frames (about 3 MiB) goes through the scratch file
// and the store and restores every record; no scratch file stays behind.
TEST_P(SnapshotStoreTest, AManyFrameSnapshotRoundTrips) {
  constexpr int kFiles = 12000;
  IndexBatch b;
  for (int i = 0; i < kFiles; ++i) {
    InodeAttr a;
    a.ino = 100 + static_cast<uint64_t>(i);
    a.mode = S_IFREG | 0644;
    a.size = 1000;
    b.PutInode(a);
    b.PutDirEntry(kRootIno, "file-" + std::to_string(i), a.ino, a.mode);
    ChunkRef r{};
    r.address = MakeAddress(1000 + static_cast<uint32_t>(i));
    r.key = ChunkKey(MakeAddress(50000 + static_cast<uint32_t>(i)));
    r.length = 1000;
    b.PutChunk(a.ino, 0, r);
  }
  WAVEFS_ASSERT_OK(index_->Commit(&b, true));
  auto t = Take();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_GT(t->bytes, 2 * kSnapshotFrame);
  std::set<Address> named;
  WAVEFS_ASSERT_OK(
      ForEachSnapshotAddress(store_.get(), key_, tmp_.path(),
                             [&](const Address& a) { named.insert(a); }));
  EXPECT_EQ(named.size(), static_cast<size_t>(kFiles));
  const std::string dir = tmp_.path() + "/restored";
  auto r = RestoreIndex(store_.get(), key_, TestStoreId(), dir, "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->chunk_refs, static_cast<uint64_t>(kFiles));
  auto opened = Index::Open(dir, Index::Options{});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto e = (*opened)->Lookup(kRootIno, "file-" + std::to_string(kFiles - 1));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->ino, 100u + kFiles - 1);
  EXPECT_TRUE((*opened)->Close().ok());
  for (const auto& entry : std::filesystem::directory_iterator(tmp_.path()))
    EXPECT_EQ(entry.path().filename().string().rfind(".snapshot-", 0),
              std::string::npos)
        << "scratch file left: " << entry.path();
}

// The writer with a sink hands out sealed frames as it makes them: it never
// holds more than a frame of plaintext and one of ciphertext.
TEST(SnapshotWriterTest, WithASinkItHoldsAtMostAFrame) {
  ASSERT_TRUE(InitCrypto().ok());
  const SnapshotKey key = DeriveSnapshotKey(TestSecret(0));
  std::vector<uint8_t> object;
  size_t calls = 0, largest = 0;
  SnapshotWriter w(key, TestStoreId(), "20250131T120000.123Z-0a1b2c3d", 7,
                   [&](std::span<const uint8_t> bytes) {
                     ++calls;
                     largest = std::max(largest, bytes.size());
                     object.insert(object.end(), bytes.begin(), bytes.end());
                     return Status::Ok();
                   });
  const std::string value(300, 'v');
  for (int i = 0; i < 20000; ++i) w.AddRecord("k" + std::to_string(i), value);
  std::vector<uint8_t> rest = w.Finish();
  EXPECT_TRUE(rest.empty());
  EXPECT_GE(calls, 5u);
  EXPECT_LE(largest, kSnapshotFrame + 1024);
  EXPECT_EQ(w.bytes(), object.size());
  Decoded d;
  WAVEFS_ASSERT_OK(Decode(object, key, "20250131T120000.123Z-0a1b2c3d", &d));
  ASSERT_EQ(d.records.size(), 20000u);
  EXPECT_EQ(d.records.back().first, "k19999");
}

INSTANTIATE_TEST_SUITE_P(Stores, SnapshotStoreTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Local" : "Memory";
                         });

}  // namespace
}  // namespace wavefs
