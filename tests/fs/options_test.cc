// The --s3-endpoint, --s3-region and --s3-path-style flags of mount, get,
// share and restore (fs/options.h, ResolveStore): they override the store
// URL's parameters, and what depends on the endpoint follows the endpoint
// the store is reached at.
#include "fs/options.h"

#include <gtest/gtest.h>

#include <string>

#include "../store/store_test_util.h"

namespace wavefs {
namespace {

using testing_util::ScopedEnv;
using testing_util::TempDir;
using testing_util::WriteTestFile;

struct Creds {
  ScopedEnv id{"AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"};
  ScopedEnv secret{"AWS_SECRET_ACCESS_KEY", "secret"};
  ScopedEnv region{"AWS_REGION", nullptr};
  ScopedEnv default_region{"AWS_DEFAULT_REGION", nullptr};
};

TEST(ResolveStoreTest, FlagsOverrideTheUrl) {
  Creds creds;
  ScopedEnv no_bundle("AWS_CA_BUNDLE", nullptr);
  auto loc = ResolveStore("s3://b-1/p?endpoint=http://a:1&region=eu-west-1",
                          "https://b:2", "us-west-2", "");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->s3.endpoint, "https://b:2");
  EXPECT_EQ(loc->s3.region, "us-west-2");
  EXPECT_TRUE(loc->s3.path_style) << "an endpoint given: path style";
  EXPECT_EQ(loc->s3.access_key, "AKIDEXAMPLE");

  loc = ResolveStore("s3://b-1/p", "", "", "0");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_FALSE(loc->s3.path_style);
  loc = ResolveStore("s3://b-1/p", "http://a:1", "", "0");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_FALSE(loc->s3.path_style) << "--s3-path-style wins";

  auto bad = ResolveStore("/srv/store", "http://a:1", "", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalid);
  bad = ResolveStore("s3://b-1/p", "ftp://a", "", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("must start with http"),
            std::string::npos)
      << bad.status().ToString();
}

// $AWS_CA_BUNDLE is read for a TLS endpoint only, and the PUT check and
// the TLS decision follow the endpoint the flag names: an https URL
// switched to http by --s3-endpoint does not fail on a bundle that went
// away, and an http URL switched to https trusts the bundle.
TEST(ResolveStoreTest, TheEndpointFlagDecidesTlsAndTheCaBundle) {
  Creds creds;
  TempDir tmp;
  const std::string pem = tmp / "ca.pem";
  WriteTestFile(pem, std::string("x"));
  {
    ScopedEnv gone("AWS_CA_BUNDLE", (pem + ".gone").c_str());
    auto loc = ResolveStore("s3://b-1/p", "http://a:1", "", "");
    ASSERT_TRUE(loc.ok()) << loc.status().ToString();
    EXPECT_FALSE(loc->s3.Tls());
    EXPECT_TRUE(loc->s3.ChecksUnsignedPutsByMd5());
    EXPECT_EQ(loc->s3.ca_file, "");
  }
  ScopedEnv bundle("AWS_CA_BUNDLE", pem.c_str());
  auto loc =
      ResolveStore("s3://b-1/p?endpoint=http://a:1", "https://a:2", "", "");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_TRUE(loc->s3.Tls());
  EXPECT_FALSE(loc->s3.ChecksUnsignedPutsByMd5());
  EXPECT_EQ(loc->s3.ca_file, pem);
}

}  // namespace
}  // namespace wavefs
