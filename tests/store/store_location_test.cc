// Store URLs as users write them (store/store_location.h): the S3 query
// parameters, and where the certificates an https endpoint is checked
// against come from (ca_file, else $AWS_CA_BUNDLE, else the system's).
#include "store/store_location.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::ScopedEnv;
using testing_util::TempDir;
using testing_util::WriteTestFile;

TEST(StoreLocationTest, S3QueryParameters) {
  ScopedEnv no_bundle("AWS_CA_BUNDLE", nullptr);
  auto loc = ParseStoreLocation(
      "s3://my-bucket/photos/?endpoint=https://s3.lan:9000/&region=eu-west-1");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->kind, StoreLocation::Kind::kS3);
  EXPECT_EQ(loc->s3.bucket, "my-bucket");
  EXPECT_EQ(loc->s3.prefix, "photos");
  EXPECT_EQ(loc->s3.endpoint, "https://s3.lan:9000");
  EXPECT_EQ(loc->s3.region, "eu-west-1");
  EXPECT_TRUE(loc->s3.path_style);
  EXPECT_EQ(loc->s3.ca_file, "") << "the system's bundle by default";

  auto bad = ParseStoreLocation("s3://my-bucket?cafile=x");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalid);
  EXPECT_NE(bad.status().message().find("ca_file"), std::string::npos)
      << "the known parameters are listed: " << bad.status().ToString();
}

// ca_file names the certificates to trust; a relative path is made
// absolute (the daemon leaves the directory it was started in), and a file
// that cannot be read is one line at parse time, not a TLS error later.
TEST(StoreLocationTest, CaFileIsAbsoluteAndMustBeReadable) {
  ScopedEnv no_bundle("AWS_CA_BUNDLE", nullptr);
  TempDir tmp;
  const std::string pem = tmp / "ca.pem";
  WriteTestFile(pem, std::string("-----BEGIN CERTIFICATE-----\n"));
  auto loc =
      ParseStoreLocation("s3://b-1/p?endpoint=https://h:1&ca_file=" + pem);
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->s3.ca_file, pem);

  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  ASSERT_EQ(::chdir(tmp.path().c_str()), 0);
  auto rel =
      ParseStoreLocation("s3://b-1/p?endpoint=https://h:1&ca_file=ca.pem");
  ASSERT_EQ(::chdir(cwd), 0);
  ASSERT_TRUE(rel.ok()) << rel.status().ToString();
  EXPECT_EQ(rel->s3.ca_file, pem);

  auto missing = ParseStoreLocation(
      "s3://b-1/p?endpoint=https://h:1&ca_file=" + pem + ".gone");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kInvalid);
  EXPECT_NE(missing.status().message().find("cannot be read"),
            std::string::npos)
      << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("No such file"), std::string::npos)
      << missing.status().ToString();

  auto empty = ParseStoreLocation("s3://b-1/p?ca_file=");
  EXPECT_FALSE(empty.ok());
}

// As the AWS CLI: $AWS_CA_BUNDLE when the URL names no ca_file, for an
// https endpoint or AWS itself; the URL's wins over it.
TEST(StoreLocationTest, AwsCaBundleIsTheDefaultCaFile) {
  TempDir tmp;
  const std::string env_pem = tmp / "env.pem";
  const std::string url_pem = tmp / "url.pem";
  WriteTestFile(env_pem, std::string("x"));
  WriteTestFile(url_pem, std::string("y"));
  ScopedEnv bundle("AWS_CA_BUNDLE", env_pem.c_str());
  auto loc = ParseStoreLocation("s3://b-1/p?endpoint=https://h:1");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->s3.ca_file, env_pem);
  loc =
      ParseStoreLocation("s3://b-1/p?endpoint=https://h:1&ca_file=" + url_pem);
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->s3.ca_file, url_pem);

  // AWS itself is https too.
  loc = ParseStoreLocation("s3://b-1/p");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->s3.ca_file, env_pem);

  ScopedEnv gone("AWS_CA_BUNDLE", (env_pem + ".gone").c_str());
  auto bad = ParseStoreLocation("s3://b-1/p?endpoint=https://h:1");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(".gone"), std::string::npos)
      << bad.status().ToString();
  // A plain http store neither uses nor checks it.
  loc = ParseStoreLocation("s3://b-1/p?endpoint=http://h:1");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->s3.ca_file, "");
}

// Over TLS the record layer authenticates every byte a PUT sends, so an
// unsigned body skips the MD5 pass and ETag compare, and `init` writes
// format 4 (whose PUTs carry no signed hash); over plain HTTP, or with
// put_md5=1 (TLS ending at a proxy), the MD5 stays and init writes
// format 3, whose PUTs the server checks against their signed SHA-256.
TEST(StoreLocationTest, TlsDecidesThePutCheckAndTheDefaultFormat) {
  ScopedEnv no_bundle("AWS_CA_BUNDLE", nullptr);
  struct Case {
    std::string url;
    bool tls;
    bool md5;
    ChunkFormat format;
  };
  const Case cases[] = {
      {"/srv/store", false, true, kNewestChunkFormat},
      {"s3://b-1/p?endpoint=http://h:1", false, true,
       ChunkFormat::kSegmentedAes},
      {"s3://b-1/p?endpoint=http://h:1&put_md5=0", false, true,
       ChunkFormat::kSegmentedAes},
      {"s3://b-1/p?endpoint=https://h:1", true, false,
       ChunkFormat::kTagAddressed},
      {"s3://b-1/p", true, false, ChunkFormat::kTagAddressed},
      {"s3://b-1/p?endpoint=https://h:1&put_md5=1", true, true,
       ChunkFormat::kSegmentedAes},
      {"s3://b-1/p?put_md5=yes", true, true, ChunkFormat::kSegmentedAes},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    auto loc = ParseStoreLocation(c.url);
    ASSERT_TRUE(loc.ok()) << loc.status().ToString();
    if (loc->kind == StoreLocation::Kind::kS3) {
      EXPECT_EQ(loc->s3.Tls(), c.tls);
      EXPECT_EQ(loc->s3.ChecksUnsignedPutsByMd5(), c.md5);
    }
    EXPECT_EQ(DefaultChunkFormat(*loc), c.format);
  }
  auto bad = ParseStoreLocation("s3://b-1/p?put_md5=2");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalid);
  EXPECT_NE(bad.status().message().find("put_md5"), std::string::npos)
      << bad.status().ToString();
}

}  // namespace
}  // namespace wavefs
