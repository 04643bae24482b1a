#include "store/fsck.h"

#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <set>

#include "chunker/crypto.h"

namespace wavefs {
namespace {

struct Use {  // one data chunk ref
  uint64_t ino;
  uint64_t index;
  uint32_t length;
};

// What fsck found for one address.
enum class State { kOk, kMissing, kTruncated, kCorrupt };

const char* Name(State s) {
  switch (s) {
    case State::kOk:
      return "ok";
    case State::kMissing:
      return "missing";
    case State::kTruncated:
      return "truncated";
    case State::kCorrupt:
      return "corrupt";
  }
  return "?";
}

}  // namespace

int FsckReport::ExitCode() const {
  if (!problems.empty()) return 4;
  if (!corrected.empty()) return 1;
  return 0;
}

std::string FsckReport::Summary() const {
  char orphan_mib[32];
  std::snprintf(orphan_mib, sizeof orphan_mib, "%.1f MiB",
                orphan_bytes / 1048576.0);
  return std::to_string(files) + " files, " + std::to_string(refs) +
         " chunk refs, " + std::to_string(addresses) + " chunks named, " +
         std::to_string(objects) + " store objects" +
         (verified > 0 ? ", " + std::to_string(verified) + " verified" : "") +
         "; " + std::to_string(problems.size()) + " errors left, " +
         std::to_string(corrected.size()) + " corrected; " +
         std::to_string(orphans) + " orphan objects (" + orphan_mib +
         ", 'wavefs gc' removes them)";
}

std::string FsckReport::Text() const {
  std::string t;
  for (const auto& l : problems) t += "error: " + l + "\n";
  for (const auto& l : corrected) t += "corrected: " + l + "\n";
  for (const auto& l : damaged_ranges) t += "damaged: " + l + "\n";
  for (const auto& l : orphan_lines) t += "orphan: " + l + "\n";
  if (orphans > orphan_lines.size())
    t += "orphan: ... " + std::to_string(orphans - orphan_lines.size()) +
         " more\n";
  t += "summary: " + Summary() + "\n";
  return t;
}

Result<FsckReport> CheckStore(Index* index, Spill* spill, ChunkStore* store,
                              const FsckOptions& o) {
  FsckReport r;
  auto progress = [&](const char* phase, uint64_t done, uint64_t total) {
    if (o.progress) o.progress(phase, done, total);
  };
  auto view = index->NewView();

  // --- the namespace ------------------------------------------------------
  std::map<uint64_t, InodeAttr> inodes;
  WAVEFS_RETURN_IF_ERROR(
      view->ForEachInode([&](const InodeAttr& a) { inodes[a.ino] = a; },
                         [&](uint64_t ino, const Status& st) {
                           r.problems.push_back("inode " + std::to_string(ino) +
                                                ": " + st.message());
                         }));
  std::map<uint64_t, std::pair<uint64_t, std::string>> parent_of;
  std::map<uint64_t, uint32_t> links;  // entries naming each inode
  std::map<uint64_t, uint32_t> subdirs;
  IndexBatch fix;
  bool index_fixed = false;
  WAVEFS_RETURN_IF_ERROR(
      view->ForEachDirEntry([&](uint64_t parent, const DirEntry& e) {
        if (!inodes.count(e.ino)) {
          const std::string what =
              "directory entry '" + e.name + "' in directory inode " +
              std::to_string(parent) + " names missing inode " +
              std::to_string(e.ino);
          if (o.repair && o.index_repair) {
            fix.DeleteDirEntry(parent, e.name);
            index_fixed = true;
            r.corrected.push_back(what + ": entry removed");
          } else {
            r.problems.push_back(what);
          }
          return;
        }
        parent_of.emplace(e.ino, std::make_pair(parent, e.name));
        links[e.ino] += 1;
        if (S_ISDIR(inodes[e.ino].mode)) subdirs[parent] += 1;
      }));
  auto path_of = [&](uint64_t ino) {
    std::string p;
    for (int depth = 0; ino != kRootIno && depth < 4096; ++depth) {
      auto it = parent_of.find(ino);
      if (it == parent_of.end())
        return "(unlinked inode " + std::to_string(ino) + ")" + p;
      p = "/" + it->second.second + p;
      ino = it->second.first;
    }
    return p.empty() ? std::string("/") : p;
  };
  for (auto& [ino, a] : inodes) {
    if (S_ISREG(a.mode)) r.files += 1;
    uint32_t want = S_ISDIR(a.mode) ? 2 + subdirs[ino] : links[ino];
    if (ino == kRootIno || a.nlink == want) continue;
    if (a.nlink == 0 && want == 0) continue;  // unlinked while open
    const std::string what = path_of(ino) + " (inode " + std::to_string(ino) +
                             "): link count " + std::to_string(a.nlink) +
                             ", but " + std::to_string(want) + " expected";
    if (o.repair && o.index_repair && want > 0) {
      InodeAttr fixed = a;
      fixed.nlink = want;
      fix.PutInode(fixed);
      index_fixed = true;
      r.corrected.push_back(what + ": set to " + std::to_string(want));
    } else {
      r.problems.push_back(what);
    }
  }

  // --- chunk refs and queue entries ---------------------------------------
  std::map<Address, std::vector<Use>> uses;
  // Format 4's address covers only the tags and the trailer (docs/format.md,
  // 2d): --verify opens each object a data map names under that ref's key,
  // so a change inside a segment is found too.
  const bool open_to_verify =
      o.verify && o.format == ChunkFormat::kTagAddressed;
  std::map<Address, ChunkRef> keyed;
  std::set<uint64_t> refless;  // refs of missing inodes
  WAVEFS_RETURN_IF_ERROR(
      view->ForEachChunk([&](uint64_t ino, uint64_t i, const ChunkRef& ref) {
        if (!inodes.count(ino)) {
          refless.insert(ino);
          return;
        }
        if (ref.hole) return;
        r.refs += 1;
        uses[ref.address].push_back(Use{ino, i, ref.length});
        if (open_to_verify) keyed.emplace(ref.address, ref);
      }));
  for (uint64_t ino : refless) {
    const std::string what =
        "chunk refs of missing inode " + std::to_string(ino);
    if (o.repair && o.index_repair) {
      WAVEFS_RETURN_IF_ERROR(index->DeleteChunksFrom(&fix, ino, 0));
      index_fixed = true;
      r.corrected.push_back(what + ": removed");
    } else {
      r.problems.push_back(what);
    }
  }
  std::map<Address, uint64_t> queued;
  WAVEFS_RETURN_IF_ERROR(
      view->ForEachAddressKey('Q', [&](const Address& a, std::string_view v) {
        uint64_t len = 0;
        for (size_t i = 0; i < 8 && i < v.size(); ++i)
          len |= static_cast<uint64_t>(static_cast<uint8_t>(v[i])) << (8 * i);
        queued[a] = len;
      }));
  std::set<Address> pinned;
  WAVEFS_RETURN_IF_ERROR(view->ForEachAddressKey(
      'P', [&](const Address& a, std::string_view) { pinned.insert(a); }));
  view.reset();
  if (index_fixed) WAVEFS_RETURN_IF_ERROR(index->Commit(&fix, true));

  // --- the store ----------------------------------------------------------
  std::map<Address, uint64_t> objects;
  WAVEFS_RETURN_IF_ERROR(store->ListSized([&](const Address& a, uint64_t size) {
    objects[a] = size;
    if (objects.size() % 1000 == 0) progress("listing", objects.size(), 0);
  }));
  r.objects = objects.size();

  // Every named address: where it is and whether it is intact.
  std::set<Address> named;
  for (const auto& [a, u] : uses) named.insert(a);
  for (const auto& [a, len] : queued) named.insert(a);
  r.addresses = named.size();
  std::vector<uint8_t> bytes, opened;
  // Empty when the bytes are intact, else why not.
  auto damage = [&](const Address& a,
                    const std::vector<uint8_t>& b) -> std::string {
    if (AddressOf(o.format, b) != a) return "do not hash to its address";
    auto k = keyed.find(a);
    if (k == keyed.end()) return "";
    opened = b;  // the address matched just above
    if (!OpenChunk(k->second, o.format, opened.data(), opened.size(), false)
             .ok())
      return "fail authentication under its key";
    return "";
  };
  uint64_t done = 0;
  for (const Address& a : named) {
    progress(o.verify ? "verifying" : "checking", ++done, named.size());
    // The ciphertext size the refs imply (a queue entry holds it).
    uint64_t want = 0;
    if (auto q = queued.find(a); q != queued.end()) want = q->second;
    if (auto u = uses.find(a); u != uses.end() && !u->second.empty())
      want = CiphertextSize(o.format, u->second.front().length);
    // Staged: in the spill, or (a small chunk) in the index.
    auto in_index = index->HasStagedBody(a);
    if (!in_index.ok()) return in_index.status();
    const bool in_spill = *in_index || (spill != nullptr && spill->Contains(a));
    auto obj = objects.find(a);
    State state = State::kOk;
    std::string detail;
    if (obj == objects.end()) {
      state = in_spill ? State::kOk : State::kMissing;
    } else if (obj->second != 0 && want != 0 && obj->second != want) {
      state = State::kTruncated;
      detail = std::to_string(obj->second) + " bytes, " + std::to_string(want) +
               " expected";
    } else if (o.verify) {
      Status got = store->Get(a, &bytes);
      r.verified += 1;
      if (got.code() == Code::kNotFound) {
        state = in_spill ? State::kOk : State::kMissing;
      } else if (!got.ok()) {
        return got.Annotate("read chunk " + ToHex(a));
      } else if (want != 0 && bytes.size() != want) {
        state = State::kTruncated;
        detail = std::to_string(bytes.size()) + " bytes, " +
                 std::to_string(want) + " expected";
      } else if (std::string why = damage(a, bytes); !why.empty()) {
        state = State::kCorrupt;
        detail = "its bytes " + why;
      }
    }
    // The staged copy, when the store's is not usable (or not there yet).
    bool spill_intact = false;
    if (in_spill && (state != State::kOk || o.verify)) {
      const Status read =
          *in_index ? index->ReadStagedBody(a, &bytes) : spill->Read(a, &bytes);
      const std::string why = read.ok() ? damage(a, bytes) : read.ToString();
      spill_intact = why.empty();
      if (state == State::kOk && obj == objects.end() && !spill_intact) {
        state = State::kCorrupt;
        detail =
            "its staged copy " + (read.ok() ? why : "cannot be read: " + why);
      }
    }
    if (state == State::kOk) continue;
    std::string what = "chunk " + ToHex(a) + " is " + Name(state) +
                       (detail.empty() ? "" : " (" + detail + ")");
    if (o.repair && spill_intact) {
      Status st = Status::Ok();
      if (obj != objects.end()) st = store->Remove(a);
      if (st.ok()) st = store->Put(a, bytes);
      if (st.ok()) st = store->Sync();
      if (st.ok()) {
        r.corrected.push_back(what + ": put again from the spill");
        continue;
      }
      what += "; putting it again from the spill failed: " + st.ToString();
    }
    if (o.repair && !queued.count(a)) {
      // Nothing can restore it: a bad object goes (a put of the address
      // would otherwise keep it), and the address is forgotten ('A'), so
      // the next writer of these bytes uploads them again, which heals
      // every file naming them.
      Status st = obj != objects.end() ? store->Remove(a) : Status::Ok();
      if (st.ok()) {
        auto retired = index->RetireStored({a});
        if (!retired.ok()) st = retired.status();
      }
      if (!st.ok()) {
        what += "; removing the damaged object failed: " + st.ToString();
      } else {
        what += obj != objects.end()
                    ? "; the damaged object was removed and its address "
                      "forgotten (writing the same data again restores it)"
                    : "; its address was forgotten (writing the same data "
                      "again restores it)";
      }
    }
    if (o.repair && queued.count(a) && !in_spill) {
      Status st = index->DropQueued(a, queued[a]);
      if (st.ok()) what += "; its queue entry was dropped";
    }
    r.problems.push_back(what);
    if (auto u = uses.find(a); u != uses.end()) {
      for (const Use& use : u->second) {
        const uint64_t from = use.index * kChunkSize;
        r.damaged_ranges.push_back(path_of(use.ino) + ": bytes [" +
                                   std::to_string(from) + ", " +
                                   std::to_string(from + use.length) + ") " +
                                   Name(state) + " (chunk " + ToHex(a) + ")");
      }
    }
  }

  // --- orphans ------------------------------------------------------------
  for (const auto& [a, size] : objects) {
    if (named.count(a) || pinned.count(a)) continue;
    r.orphans += 1;
    r.orphan_bytes += size;
    if (r.orphan_lines.size() < o.max_orphan_lines)
      r.orphan_lines.push_back(ToHex(a) + " (" + std::to_string(size) +
                               " bytes)");
  }
  return r;
}

}  // namespace wavefs
