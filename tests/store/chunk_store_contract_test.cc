// The ChunkStore contract, run against every implementation (typed tests),
// plus tests of what is particular to each store.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chunker/crypto.h"
#include "store/chunk_store.h"
#include "store/counting_store.h"
#include "store/fault_store.h"
#include "store/file_util.h"
#include "store/local_store.h"
#include "store/memory_store.h"
#include "store/s3_store.h"
#include "store/store_location.h"
#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeAddress;
using testing_util::MakeBytes;
using testing_util::PathExists;
using testing_util::ScopedEnv;
using testing_util::TempDir;
using testing_util::WriteTestFile;

// Each environment owns a store and a scratch directory for PutFile sources
// (on the same filesystem as a LocalStore, so its rename path is taken).
struct LocalEnv {
  static constexpr bool kMovesSourceFile = true;
  TempDir tmp;
  std::unique_ptr<ChunkStore> store;
  LocalEnv() {
    auto opened = LocalStore::Open(tmp / "chunks");
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (opened.ok()) store = std::move(*opened);
  }
};

struct MemoryEnv {
  static constexpr bool kMovesSourceFile = false;
  TempDir tmp;
  std::unique_ptr<ChunkStore> store = std::make_unique<MemoryStore>();
};

struct CountingEnv {
  static constexpr bool kMovesSourceFile = false;
  TempDir tmp;
  std::unique_ptr<ChunkStore> store =
      std::make_unique<CountingStore>(std::make_unique<MemoryStore>());
};

// A FaultStore without rules is transparent, over a store that moves files
// in (its PutFile must reach the inner store's) and over one that does not.
struct FaultLocalEnv {
  static constexpr bool kMovesSourceFile = true;
  TempDir tmp;
  std::unique_ptr<ChunkStore> store;
  FaultLocalEnv() {
    auto opened = LocalStore::Open(tmp / "chunks");
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (opened.ok()) store = std::make_unique<FaultStore>(std::move(*opened));
  }
};

struct FaultMemoryEnv {
  static constexpr bool kMovesSourceFile = false;
  TempDir tmp;
  std::unique_ptr<ChunkStore> store =
      std::make_unique<FaultStore>(std::make_unique<MemoryStore>());
};

// An S3 store on a real server (Ceph RGW, started by scripts/ceph-rgw.sh;
// tests/s3/with_rgw.sh sets the environment): a fresh prefix per test in
// one bucket, so every test starts from an empty store.
struct S3Env {
  static constexpr bool kMovesSourceFile = false;
  TempDir tmp;
  std::shared_ptr<S3Client> client;
  std::unique_ptr<ChunkStore> store;
  // The contract puts made-up addresses, so its store is of a BLAKE2b
  // format (MD5/ETag checks); format 3's signed hashes need real ones.
  // tls: the same server's HTTPS endpoint, its self-signed certificate
  // trusted through the URL's ca_file.
  explicit S3Env(ChunkFormat format = ChunkFormat::kSegmented,
                 bool tls = false) {
    const char* var = tls ? "WAVEFS_S3_TLS_ENDPOINT" : "WAVEFS_S3_ENDPOINT";
    const char* endpoint = std::getenv(var);
    const char* ca_file = std::getenv("WAVEFS_S3_CA_FILE");
    if (endpoint == nullptr || *endpoint == 0 ||
        (tls && (ca_file == nullptr || *ca_file == 0))) {
      ADD_FAILURE() << var << " or WAVEFS_S3_CA_FILE is not set: run this "
                    << "through tests/s3/with_rgw.sh (it starts Ceph RGW)";
      return;
    }
    auto loc = ParseStoreLocation(
        std::string("s3://wavefs-contract/t") +
        ToHex(MakeAddress(std::random_device{}())).substr(0, 12) +
        "?endpoint=" + endpoint +
        (tls ? std::string("&ca_file=") + ca_file : std::string()));
    EXPECT_TRUE(loc.ok()) << loc.status().ToString();
    if (!loc.ok()) return;
    Status creds = LoadS3Credentials(&loc->s3);
    EXPECT_TRUE(creds.ok()) << creds.ToString();
    client = std::make_shared<S3Client>(loc->s3);
    Status made = client->CreateBucket();
    EXPECT_TRUE(made.ok()) << made.ToString();
    store = std::make_unique<S3Store>(client, format);
  }
};

struct S3TlsEnv : S3Env {
  S3TlsEnv() : S3Env(ChunkFormat::kSegmented, true) {}
};

template <typename Env>
class ChunkStoreContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = std::make_unique<Env>();
    ASSERT_NE(env_->store, nullptr);
  }
  void TearDown() override { env_.reset(); }

  ChunkStore& store() { return *env_->store; }
  std::string ScratchPath(const std::string& name) { return env_->tmp / name; }

  std::set<Address> ListAll() {
    std::set<Address> found;
    Status st = store().List([&](const Address& a) {
      EXPECT_TRUE(found.insert(a).second) << "listed twice: " << ToHex(a);
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return found;
  }

  std::unique_ptr<Env> env_;
};

#ifdef WAVEFS_CONTRACT_S3
using StoreEnvs = ::testing::Types<S3Env, S3TlsEnv>;
#else
using StoreEnvs = ::testing::Types<LocalEnv, MemoryEnv, CountingEnv,
                                   FaultLocalEnv, FaultMemoryEnv>;
#endif
TYPED_TEST_SUITE(ChunkStoreContractTest, StoreEnvs);

TYPED_TEST(ChunkStoreContractTest, PutThenGetReturnsSameBytes) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    const size_t size = seed == 1 ? 1 : (seed * 10007) % 200000;
    const Address a = MakeAddress(seed);
    const auto bytes = MakeBytes(size, seed);
    WAVEFS_ASSERT_OK(this->store().Put(a, bytes));
    std::vector<uint8_t> out;
    WAVEFS_ASSERT_OK(this->store().Get(a, &out));
    EXPECT_EQ(out, bytes) << "seed " << seed;
  }
}

TYPED_TEST(ChunkStoreContractTest, GetResizesOutToObjectSize) {
  const Address a = MakeAddress(7);
  const auto bytes = MakeBytes(100, 7);
  WAVEFS_ASSERT_OK(this->store().Put(a, bytes));
  std::vector<uint8_t> out(5000, 0xee);
  WAVEFS_ASSERT_OK(this->store().Get(a, &out));
  EXPECT_EQ(out, bytes);
}

TYPED_TEST(ChunkStoreContractTest, GetMissingIsNotFound) {
  std::vector<uint8_t> out;
  Status st = this->store().Get(MakeAddress(99), &out);
  EXPECT_EQ(st.code(), Code::kNotFound) << st.ToString();
}

TYPED_TEST(ChunkStoreContractTest, GetRangeReturnsExactlyTheRange) {
  const Address a = MakeAddress(8);
  const auto bytes = MakeBytes(300000, 8);
  WAVEFS_ASSERT_OK(this->store().Put(a, bytes));
  struct R {
    uint64_t offset;
    size_t len;
  };
  for (R r :
       {R{0, 1}, R{0, 300000}, R{65552, 131104}, R{299999, 1}, R{12345, 0}}) {
    std::vector<uint8_t> out(7, 0xee);
    WAVEFS_ASSERT_OK(this->store().GetRange(a, r.offset, r.len, &out));
    ASSERT_EQ(out.size(), r.len);
    EXPECT_TRUE(std::equal(out.begin(), out.end(), bytes.begin() + r.offset))
        << r.offset << "+" << r.len;
  }
}

TYPED_TEST(ChunkStoreContractTest, GetRangePastTheEndIsCorrupt) {
  const Address a = MakeAddress(9);
  WAVEFS_ASSERT_OK(this->store().Put(a, MakeBytes(1000, 9)));
  std::vector<uint8_t> out;
  EXPECT_EQ(this->store().GetRange(a, 900, 101, &out).code(), Code::kCorrupt);
  EXPECT_EQ(this->store().GetRange(a, 5000, 1, &out).code(), Code::kCorrupt);
  EXPECT_EQ(this->store().GetRange(MakeAddress(98), 0, 1, &out).code(),
            Code::kNotFound);
}

TYPED_TEST(ChunkStoreContractTest, PutIsIdempotent) {
  const Address a = MakeAddress(5);
  const auto bytes = MakeBytes(3000, 5);
  WAVEFS_ASSERT_OK(this->store().Put(a, bytes));
  WAVEFS_ASSERT_OK(this->store().Put(a, bytes));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(this->store().Get(a, &out));
  EXPECT_EQ(out, bytes);
  EXPECT_EQ(this->ListAll(), std::set<Address>{a});
}

TYPED_TEST(ChunkStoreContractTest, HasReportsPresence) {
  const Address a = MakeAddress(11);
  Result<bool> before = this->store().Has(a);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_FALSE(*before);
  WAVEFS_ASSERT_OK(this->store().Put(a, MakeBytes(10, 11)));
  Result<bool> after = this->store().Has(a);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_TRUE(*after);
}

TYPED_TEST(ChunkStoreContractTest, RemoveDeletesTheObject) {
  const Address a = MakeAddress(12);
  const Address b = MakeAddress(13);
  WAVEFS_ASSERT_OK(this->store().Put(a, MakeBytes(10, 12)));
  WAVEFS_ASSERT_OK(this->store().Put(b, MakeBytes(10, 13)));
  WAVEFS_ASSERT_OK(this->store().Remove(a));
  Result<bool> has = this->store().Has(a);
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
  std::vector<uint8_t> out;
  EXPECT_EQ(this->store().Get(a, &out).code(), Code::kNotFound);
  WAVEFS_EXPECT_OK(this->store().Get(b, &out));
  EXPECT_EQ(this->ListAll(), std::set<Address>{b});
}

TYPED_TEST(ChunkStoreContractTest, RemoveMissingIsOk) {
  WAVEFS_EXPECT_OK(this->store().Remove(MakeAddress(14)));
}

// gc's batched delete (S3: DeleteObjects): every listed object goes, an
// absent one is ok, and nothing else is touched.
TYPED_TEST(ChunkStoreContractTest, RemoveManyRemovesExactlyThoseListed) {
  std::vector<Address> doomed;
  for (int seed = 40; seed < 45; ++seed) {
    doomed.push_back(MakeAddress(seed));
    WAVEFS_ASSERT_OK(this->store().Put(doomed.back(), MakeBytes(100, seed)));
  }
  const Address kept = MakeAddress(50);
  WAVEFS_ASSERT_OK(this->store().Put(kept, MakeBytes(100, 50)));
  doomed.push_back(MakeAddress(51));  // never stored
  std::vector<Status> results;
  this->store().RemoveMany(doomed, &results);
  ASSERT_EQ(results.size(), doomed.size());
  for (size_t i = 0; i < results.size(); ++i)
    EXPECT_TRUE(results[i].ok()) << i << ": " << results[i].ToString();
  EXPECT_EQ(this->ListAll(), std::set<Address>{kept});
  this->store().RemoveMany({}, &results);
  EXPECT_TRUE(results.empty());
}

#ifdef WAVEFS_CONTRACT_S3
// gc on S3 deletes with DeleteObjects: 1,001 objects cost two requests, not
// 1,001 DELETEs.
TEST(S3StoreTest, RemoveManyIsOneRequestPerThousandObjects) {
  S3Env env;
  ASSERT_NE(env.store, nullptr);
  std::vector<Address> doomed;
  for (int seed = 0; seed < 1001; ++seed) doomed.push_back(MakeAddress(seed));
  WAVEFS_ASSERT_OK(env.store->Put(doomed.front(), MakeBytes(10, 1)));
  WAVEFS_ASSERT_OK(env.store->Put(doomed.back(), MakeBytes(10, 2)));
  const uint64_t before = env.client->requests();
  std::vector<Status> results;
  env.store->RemoveMany(doomed, &results);
  EXPECT_EQ(env.client->requests() - before, 2u);
  ASSERT_EQ(results.size(), doomed.size());
  for (const Status& st : results) EXPECT_TRUE(st.ok()) << st.ToString();
  auto has = env.store->Has(doomed.back());
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
}

// In a format-3 store a chunk's address is the SHA-256 of its object: the
// PUT signs it as the payload hash, so the server itself refuses bytes that
// do not hash to the address (from memory or from a staged file), and
// nothing is left under that address.
TEST(S3StoreTest, Format3PutsAreCheckedByTheServerAgainstTheirAddress) {
  ASSERT_TRUE(InitCrypto().ok());
  S3Env env(ChunkFormat::kSegmentedAes);
  ASSERT_NE(env.store, nullptr);
  const Secret secret{1, 2, 3};
  std::vector<uint8_t> object = MakeBytes(3 * 65536 + 7, 3);
  const size_t len = object.size();
  object.resize(CiphertextSize(ChunkFormat::kSegmentedAes, len));
  const ChunkRef ref =
      SealChunk(secret, ChunkFormat::kSegmentedAes, object.data(), len);
  WAVEFS_ASSERT_OK(env.store->Put(ref.address, object));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(env.store->Get(ref.address, &out));
  EXPECT_EQ(out, object);

  // One flipped bit: refused, and each attempt was sent again in full.
  const Address other = AddressOf(ChunkFormat::kSegmentedAes, MakeBytes(9, 9));
  std::vector<uint8_t> damaged = object;
  damaged[100] ^= 1;
  const uint64_t before = env.client->requests();
  Status st = env.store->Put(other, damaged);
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  EXPECT_TRUE(st.retryable());
  EXPECT_GE(env.client->requests() - before, 2u);
  const std::string path = env.tmp / "staged";
  WriteTestFile(path, damaged);
  std::vector<uint8_t> scratch;
  st = env.store->PutFile(other, path, &scratch);
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  auto has = env.store->Has(other);
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
}

// An https endpoint whose certificate the client does not trust, with the
// system's bundle or with a ca_file of another CA: one request (the same
// certificate would come back: no retry), and a message that says what
// to do.
TEST(S3StoreTest, AnUntrustedCertificateIsOnePermanentError) {
  const char* endpoint = std::getenv("WAVEFS_S3_TLS_ENDPOINT");
  ASSERT_TRUE(endpoint != nullptr && *endpoint != 0)
      << "WAVEFS_S3_TLS_ENDPOINT is not set: run through tests/s3/with_rgw.sh";
  ScopedEnv no_bundle("AWS_CA_BUNDLE", nullptr);
  TempDir tmp;
  // A self-signed certificate (made with openssl req -x509) of a CA that
  // signed nothing the server holds.
  const std::string other = tmp / "other-ca.pem";
  WriteTestFile(
      other,
      std::string(
          "-----BEGIN CERTIFICATE-----\n"
          "MIIBuDCCAV2gAwIBAgIUEzITHsR5LGZzknclJ/MLlSxznzMwCgYIKoZIzj0EAwIw\n"
          "MDEuMCwGA1UEAwwld2F2ZWZzIHRlc3Q6IGEgQ0EgdGhhdCBzaWduZWQgbm90aGlu\n"
          "ZzAgFw0yNjEyMDUyMDQ0MTJaGA8yMTI2MTExMTIwNDQxMlowMDEuMCwGA1UEAwwl\n"
          "d2F2ZWZzIHRlc3Q6IGEgQ0EgdGhhdCBzaWduZWQgbm90aGluZzBZMBMGByqGSM49\n"
          "AgEGCCqGSM49AwEHA0IABFuPTH3HhTCSoEnfO9nHlFN4jcrxDxA6iXrG3V/6QMb4\n"
          "XLyFb69XnCwtt6BqgKwvC5yNWhPHOjZ90AeYxNbCfGSjUzBRMB0GA1UdDgQWBBTz\n"
          "ghupQNtz7yyaCKkC0efPZaNXVTAfBgNVHSMEGDAWgBTzghupQNtz7yyaCKkC0efP\n"
          "ZaNXVTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDHTeyfPaiB\n"
          "xRsllS/x3A0dNo6en9Nx7LfUFmNIxhID/QIhAM4MBswnhSUmu2yJAXgJ061NWCgz\n"
          "KyD7YiQdZVX/DNWy\n"
          "-----END CERTIFICATE-----\n"));
  for (const std::string& ca : {std::string(), other}) {
    SCOPED_TRACE(ca.empty() ? "the system's bundle" : "ca_file of another CA");
    auto loc =
        ParseStoreLocation(std::string("s3://wavefs-contract/tls?endpoint=") +
                           endpoint + (ca.empty() ? "" : "&ca_file=" + ca));
    ASSERT_TRUE(loc.ok()) << loc.status().ToString();
    WAVEFS_ASSERT_OK(LoadS3Credentials(&loc->s3));
    S3Client client(loc->s3);
    const Status st = client.CheckBucket();
    EXPECT_EQ(st.code(), Code::kPermission) << st.ToString();
    EXPECT_FALSE(st.retryable());
    EXPECT_EQ(client.requests(), 1u) << "retried a certificate error";
    EXPECT_NE(st.message().find("TLS certificate is not trusted"),
              std::string::npos)
        << st.ToString();
    EXPECT_NE(
        st.message().find(ca.empty() ? "ca_file=PATH" : "by ca_file " + ca),
        std::string::npos)
        << st.ToString();
    EXPECT_EQ(st.message().find('\n'), std::string::npos) << "one line";
  }
}
#endif

TYPED_TEST(ChunkStoreContractTest, ListOfEmptyStoreIsEmpty) {
  EXPECT_TRUE(this->ListAll().empty());
}

TYPED_TEST(ChunkStoreContractTest, ListReturnsExactlyWhatWasPut) {
  std::set<Address> expected;
  for (uint32_t seed = 0; seed < 300; ++seed) {
    const Address a = MakeAddress(seed);
    WAVEFS_ASSERT_OK(this->store().Put(a, MakeBytes(16 + seed % 7, seed)));
    expected.insert(a);
  }
  for (uint32_t seed = 0; seed < 300; seed += 3) {
    WAVEFS_ASSERT_OK(this->store().Remove(MakeAddress(seed)));
    expected.erase(MakeAddress(seed));
  }
  EXPECT_EQ(this->ListAll(), expected);
}

TYPED_TEST(ChunkStoreContractTest, ListCallbackMayRemove) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    WAVEFS_ASSERT_OK(this->store().Put(MakeAddress(seed), MakeBytes(8, seed)));
  }
  WAVEFS_ASSERT_OK(this->store().List(
      [&](const Address& a) { EXPECT_TRUE(this->store().Remove(a).ok()); }));
  EXPECT_TRUE(this->ListAll().empty());
}

TYPED_TEST(ChunkStoreContractTest, PutFileRoundTrip) {
  const Address a = MakeAddress(21);
  const auto bytes = MakeBytes(70000, 21);
  const std::string source = this->ScratchPath(ToHex(a));
  WriteTestFile(source, bytes);
  std::vector<uint8_t> scratch;
  WAVEFS_ASSERT_OK(this->store().PutFile(a, source, &scratch));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(this->store().Get(a, &out));
  EXPECT_EQ(out, bytes);
  // Same filesystem: a LocalStore moves the file in by rename.
  EXPECT_EQ(PathExists(source), !TypeParam::kMovesSourceFile);
}

TYPED_TEST(ChunkStoreContractTest, PutFileOfMissingSourceIsNotFound) {
  std::vector<uint8_t> scratch;
  Status st = this->store().PutFile(MakeAddress(22),
                                    this->ScratchPath("absent"), &scratch);
  EXPECT_EQ(st.code(), Code::kNotFound) << st.ToString();
  Result<bool> has = this->store().Has(MakeAddress(22));
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
}

TYPED_TEST(ChunkStoreContractTest, PutFileOfStoredAddressIsOk) {
  const Address a = MakeAddress(23);
  const auto bytes = MakeBytes(500, 23);
  WAVEFS_ASSERT_OK(this->store().Put(a, bytes));
  const std::string source = this->ScratchPath("again");
  WriteTestFile(source, bytes);
  std::vector<uint8_t> scratch;
  WAVEFS_ASSERT_OK(this->store().PutFile(a, source, &scratch));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(this->store().Get(a, &out));
  EXPECT_EQ(out, bytes);
}

TYPED_TEST(ChunkStoreContractTest, LargestObjectRoundTrips) {
  const Address a = MakeAddress(31);
  const auto bytes = MakeBytes(kMaxCiphertextSize, 31);
  WAVEFS_ASSERT_OK(this->store().Put(a, bytes));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(this->store().Get(a, &out));
  ASSERT_EQ(out.size(), kMaxCiphertextSize);
  EXPECT_TRUE(out == bytes);
}

TYPED_TEST(ChunkStoreContractTest, ConcurrentPutsAndGets) {
  constexpr int kThreads = 8;
  constexpr uint32_t kOwn = 40;
  constexpr uint32_t kShared = 10;  // every thread puts these too
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> out;
      for (uint32_t i = 0; i < kOwn + kShared; ++i) {
        const uint32_t seed =
            i < kOwn ? 1000 + static_cast<uint32_t>(t) * kOwn + i : i - kOwn;
        const auto bytes = MakeBytes(1000 + seed % 4096, seed);
        const Address a = MakeAddress(seed);
        if (!this->store().Put(a, bytes).ok()) ++failures;
        if (!this->store().Get(a, &out).ok() || out != bytes) ++failures;
        Result<bool> has = this->store().Has(a);
        if (!has.ok() || !*has) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(this->ListAll().size(), kThreads * kOwn + kShared);
}

TYPED_TEST(ChunkStoreContractTest, DescribeIsNotEmpty) {
  EXPECT_FALSE(this->store().Describe().empty());
}

// ---- MemoryStore ----

TEST(MemoryStoreTest, CorruptObjectChangesStoredBytes) {
  MemoryStore store;
  const Address a = MakeAddress(3);
  const auto bytes = MakeBytes(64, 3);
  WAVEFS_ASSERT_OK(store.Put(a, bytes));
  EXPECT_TRUE(store.CorruptObject(a));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(store.Get(a, &out));
  ASSERT_EQ(out.size(), bytes.size());
  EXPECT_NE(out, bytes);
  EXPECT_FALSE(store.CorruptObject(MakeAddress(4)));
}

// ---- CountingStore ----

TEST(CountingStoreTest, CountsSuccessfulCallsAndBytes) {
  auto inner = std::make_unique<MemoryStore>();
  MemoryStore* memory = inner.get();
  auto faulty = std::make_unique<FaultStore>(std::move(inner));
  FaultStore* faults = faulty.get();
  CountingStore store(std::move(faulty));
  const Address a = MakeAddress(1);
  const Address b = MakeAddress(2);

  WAVEFS_ASSERT_OK(store.Put(a, MakeBytes(100, 1)));
  faults->FailPuts(Status::Error(Code::kUnavailable, "injected"));
  EXPECT_FALSE(store.Put(b, MakeBytes(50, 2)).ok());
  EXPECT_EQ(store.puts(), 1u);
  EXPECT_EQ(store.bytes_put(), 100u);

  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(store.Get(a, &out));
  WAVEFS_ASSERT_OK(store.Get(a, &out));
  EXPECT_EQ(store.Get(b, &out).code(), Code::kNotFound);
  faults->FailGets(Status::Error(Code::kIo, "injected"));
  EXPECT_FALSE(store.Get(a, &out).ok());
  EXPECT_EQ(store.gets(), 2u);
  EXPECT_EQ(store.bytes_got(), 200u);

  // Has, Remove and List are passed through and not counted.
  Result<bool> has = store.Has(a);
  ASSERT_TRUE(has.ok());
  EXPECT_TRUE(*has);
  WAVEFS_ASSERT_OK(store.Remove(a));
  EXPECT_EQ(memory->object_count(), 0u);
  EXPECT_EQ(store.puts(), 1u);
  EXPECT_EQ(store.gets(), 2u);
  EXPECT_EQ(store.Describe(), "faults+memory");
}

TEST(CountingStoreTest, PutFileCountsAsOnePutOfTheFileSize) {
  TempDir tmp;
  CountingStore store(std::make_unique<MemoryStore>());
  WriteTestFile(tmp / "f", MakeBytes(1234, 5));
  std::vector<uint8_t> scratch;
  WAVEFS_ASSERT_OK(store.PutFile(MakeAddress(5), tmp / "f", &scratch));
  EXPECT_EQ(store.puts(), 1u);
  EXPECT_EQ(store.bytes_put(), 1234u);
  EXPECT_FALSE(store.PutFile(MakeAddress(6), tmp / "absent", &scratch).ok());
  EXPECT_EQ(store.puts(), 1u);
}

TEST(CountingStoreTest, PutFileMovedByLocalStoreIsStillCounted) {
  TempDir tmp;
  auto local = LocalStore::Open(tmp / "chunks");
  ASSERT_TRUE(local.ok());
  CountingStore store(std::move(*local));
  WriteTestFile(tmp / "f", MakeBytes(777, 6));
  std::vector<uint8_t> scratch;
  WAVEFS_ASSERT_OK(store.PutFile(MakeAddress(6), tmp / "f", &scratch));
  EXPECT_FALSE(PathExists(tmp / "f"));
  EXPECT_EQ(store.bytes_put(), 777u);
}

// ---- LocalStore ----

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>();
    auto opened = LocalStore::Open(*tmp_ / "chunks");
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
  }
  void TearDown() override {
    store_.reset();
    tmp_.reset();
  }
  std::string chunks() const { return *tmp_ / "chunks"; }

  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<LocalStore> store_;
};

TEST_F(LocalStoreTest, ShardsByFirstByte) {
  const Address a = MakeAddress(1);
  const std::string hex = ToHex(a);
  EXPECT_EQ(store_->PathOf(a), chunks() + "/" + hex.substr(0, 2) + "/" + hex);
  WAVEFS_ASSERT_OK(store_->Put(a, MakeBytes(10, 1)));
  EXPECT_TRUE(PathExists(store_->PathOf(a)));
  EXPECT_EQ(store_->Describe(), "local:" + chunks());
}

TEST_F(LocalStoreTest, OpenCreatesMissingParents) {
  auto opened = LocalStore::Open(*tmp_ / "a/b/c/");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  WAVEFS_ASSERT_OK((*opened)->Put(MakeAddress(1), MakeBytes(5, 1)));
  EXPECT_TRUE(PathExists((*opened)->PathOf(MakeAddress(1))));
}

TEST_F(LocalStoreTest, ListIgnoresLeftoverTempFilesAndJunk) {
  const Address a = MakeAddress(1);
  WAVEFS_ASSERT_OK(store_->Put(a, MakeBytes(10, 1)));
  const std::string hex = ToHex(a);
  const std::string shard = chunks() + "/" + hex.substr(0, 2);
  // What a crash in the middle of WriteFileDurably leaves behind.
  WriteTestFile(shard + "/.tmp.123.4." + hex, "partial");
  WriteTestFile(chunks() + "/README", "not a chunk");
  WriteTestFile(chunks() + "/zz", "not a shard");
  ASSERT_TRUE(std::filesystem::create_directory(chunks() + "/xy"));
  // A valid name in the wrong shard is not an object of this store.
  std::string other = ToHex(MakeAddress(2));
  ASSERT_NE(other.substr(0, 2), hex.substr(0, 2));
  WriteTestFile(shard + "/" + other, "misplaced");
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  WriteTestFile(shard + "/" + upper, "upper case");

  std::set<Address> found;
  WAVEFS_ASSERT_OK(store_->List([&](const Address& x) { found.insert(x); }));
  EXPECT_EQ(found, std::set<Address>{a});
  std::vector<uint8_t> out;
  WAVEFS_EXPECT_OK(store_->Get(a, &out));
}

TEST_F(LocalStoreTest, PutReplacesATruncatedObject) {
  const Address a = MakeAddress(3);
  const auto bytes = MakeBytes(1000, 3);
  WAVEFS_ASSERT_OK(store_->Put(a, bytes));
  ASSERT_EQ(::truncate(store_->PathOf(a).c_str(), 10), 0);
  WAVEFS_ASSERT_OK(store_->Put(a, bytes));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(store_->Get(a, &out));
  EXPECT_EQ(out, bytes);
}

// Regression (issue 9): an object of the right size but damaged (a power
// cut after the rename, before the data reached the disk) counted as stored,
// and every file deduplicating onto it read EIO forever.
TEST_F(LocalStoreTest, PutRepairsADamagedObjectOfTheRightSize) {
  const Address a = MakeAddress(4);
  const auto bytes = MakeBytes(1000, 4);
  WAVEFS_ASSERT_OK(store_->Put(a, bytes));
  WriteTestFile(store_->PathOf(a), std::string(1000, '\0'));
  WAVEFS_ASSERT_OK(store_->Put(a, bytes));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(store_->Get(a, &out));
  EXPECT_EQ(out, bytes);
}

TEST_F(LocalStoreTest, PutLeavesNoTemporaryFiles) {
  for (uint32_t seed = 0; seed < 5; ++seed) {
    WAVEFS_ASSERT_OK(store_->Put(MakeAddress(seed), MakeBytes(100, seed)));
  }
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(chunks())) {
    EXPECT_NE(entry.path().filename().string().rfind(".tmp", 0), 0u)
        << entry.path();
  }
}

TEST_F(LocalStoreTest, PutFileFromAnotherFilesystemCopies) {
  const std::string other_fs = "/dev/shm";
  Result<uint64_t> shm_dev = DeviceOf(other_fs);
  Result<uint64_t> store_dev = DeviceOf(chunks());
  if (!shm_dev.ok() || !store_dev.ok() || *shm_dev == *store_dev ||
      ::access(other_fs.c_str(), W_OK) != 0) {
    GTEST_SKIP() << "no writable second filesystem at " << other_fs;
  }
  const std::string source =
      other_fs + "/wavefs-store-test." + std::to_string(::getpid());
  const auto bytes = MakeBytes(5000, 8);
  WriteTestFile(source, bytes);
  std::vector<uint8_t> scratch;
  Status st = store_->PutFile(MakeAddress(8), source, &scratch);
  const bool source_kept = PathExists(source);
  ::unlink(source.c_str());
  WAVEFS_ASSERT_OK(st);
  EXPECT_TRUE(source_kept);
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(store_->Get(MakeAddress(8), &out));
  EXPECT_EQ(out, bytes);
}

}  // namespace
}  // namespace wavefs
