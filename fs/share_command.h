// `wavefs share`, `wavefs unshare`, `wavefs get`: a file's data map as a
// .wfmap file of its own (chunker/wfmap.h), handed to someone who can read
// the store. Each returns the process exit code and prints at most one line
// on failure ("wavefs: ..."). The daemon side is fs/share_service.h.
#pragma once

#include <string>

namespace wavefs {

struct ShareArgs {
  std::string file;    // a regular file inside a wavefs mount
  std::string output;  // empty: stdout
  bool no_wait = false;
};
int RunShare(const ShareArgs& args);

// target: a .wfmap file or a share id (32 hex); mount: empty = every
// wavefs mount of this machine is asked.
int RunUnshare(const std::string& target, const std::string& mount);

struct GetArgs {
  std::string wfmap;
  std::string store;
  std::string dest;
  std::string s3_endpoint, s3_region, s3_path_style;
  bool force = false;  // replace an existing DEST
};
int RunGet(const GetArgs& args);

}  // namespace wavefs
