// A fixture for tests that need an index and a spill, as a mount has them,
// in a temporary directory of their own.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "chunker/crypto.h"
#include "store/index.h"
#include "store/spill.h"
#include "store_test_util.h"

namespace wavefs::testing_util {

class IndexSpillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitCrypto().ok());
    auto index = Index::Open(tmp_ / "index", Index::Options{});
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    index_ = std::move(*index);
    auto spill = Spill::Open(tmp_ / "spill");
    ASSERT_TRUE(spill.ok()) << spill.status().ToString();
    spill_ = std::move(*spill);
  }
  TempDir tmp_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<Spill> spill_;
};

}  // namespace wavefs::testing_util
