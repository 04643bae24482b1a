// `wavefs restore`: lists the index snapshots of a store, or rebuilds a
// machine's index from one of them (store/snapshot.h). Returns the exit
// code: 0 ok, 1 failed (one line on stderr).
#pragma once

#include <string>

namespace wavefs {

struct RestoreArgs {
  std::string store;
  std::string key_file;  // default $WAVEFS_HOME/<store id>/key
  std::string meta_dir;  // default $WAVEFS_HOME/<store id>/meta
  std::string snapshot;  // empty: the newest usable one
  bool list = false;
  bool force = false;  // replace an existing index
  std::string s3_endpoint;
  std::string s3_region;
  std::string s3_path_style;
};

int RunRestore(const RestoreArgs& args);

}  // namespace wavefs
