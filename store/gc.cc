#include "store/gc.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace wavefs {
namespace {

// Addresses are uniformly random: their first 8 bytes are a good hash.
struct AddressHash {
  size_t operator()(const Address& a) const {
    size_t h;
    std::memcpy(&h, a.data(), sizeof h);
    return h;
  }
};
using AddressSet = std::unordered_set<Address, AddressHash>;

std::string MiB(uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", bytes / 1048576.0);
  return b;
}

// Every address the view names: chunk refs, queue entries, pins. (Pins are
// read as raw 'P' keys rather than through the pin API: gc needs only that
// a pin exists, whatever its count.)
Status AddViewRefs(IndexView* view, AddressSet* live) {
  WAVEFS_RETURN_IF_ERROR(
      view->ForEachChunk([&](uint64_t, uint64_t, const ChunkRef& r) {
        if (!r.hole) live->insert(r.address);
      }));
  for (char tag : {'Q', 'P'}) {
    WAVEFS_RETURN_IF_ERROR(view->ForEachAddressKey(
        tag, [&](const Address& a, std::string_view) { live->insert(a); }));
  }
  return Status::Ok();
}

bool Cancelled(const GcOptions& o) {
  return o.cancel != nullptr && o.cancel->load();
}

}  // namespace

std::string GcReport::Summary() const {
  std::string s = (dry_run ? "would remove " : "removed ") +
                  std::to_string(removed) + " of " + std::to_string(objects) +
                  " chunks (" + MiB(removed_bytes) + " of " +
                  MiB(object_bytes) + "); " + std::to_string(referenced) +
                  " referenced";
  if (kept > 0)
    s += ", " + std::to_string(kept) + " kept (referenced again during gc)";
  if (failed > 0)
    s +=
        ", " + std::to_string(failed) + " deletes failed (" + first_error + ")";
  return s;
}

Result<GcReport> CollectGarbage(Index* index, ChunkStore* store,
                                const GcOptions& o) {
  GcReport r;
  r.dry_run = o.dry_run;
  auto report = [&](const char* phase, uint64_t done, uint64_t total) {
    if (o.progress) o.progress(GcProgress{phase, done, total});
  };

  // 1. The store's objects. Anything put after this is not a candidate.
  std::unordered_map<Address, uint64_t, AddressHash> objects;
  WAVEFS_RETURN_IF_ERROR(store
                             ->ListSized([&](const Address& a, uint64_t size) {
                               objects[a] = size;
                               if (objects.size() % 1000 == 0)
                                 report("listing", objects.size(), 0);
                             })
                             .Annotate("list " + store->Describe()));
  r.objects = objects.size();
  for (const auto& [a, size] : objects) r.object_bytes += size;
  report("listing", r.objects, r.objects);

  // What retained snapshots name. A snapshot uploaded later only names
  // refs that are in the cut below or were queued after the retirement
  // (so kept, or uploaded again).
  AddressSet by_snapshots;
  if (o.snapshot_addresses)
    WAVEFS_RETURN_IF_ERROR(o.snapshot_addresses([&](const Address& a) {
                              by_snapshots.insert(a);
                            }).Annotate("read the index snapshots"));

  // First look at the live set: memory first, then the index (refs move
  // from memory to the index when a file commits).
  AddressSet live = by_snapshots;
  if (o.memory_refs) {
    std::shared_lock<std::shared_mutex> gate(index->ref_gate());
    WAVEFS_RETURN_IF_ERROR(
        o.memory_refs([&](const Address& a) { live.insert(a); }));
  }
  {
    auto view = index->NewView();
    WAVEFS_RETURN_IF_ERROR(AddViewRefs(view.get(), &live));
  }
  std::vector<Address> candidates;
  for (const auto& [a, size] : objects)
    if (!live.count(a)) candidates.push_back(a);
  std::sort(candidates.begin(), candidates.end());
  r.candidates = candidates.size();
  report("scanning", 1, 2);
  if (o.after_candidates) o.after_candidates();

  if (o.dry_run) {
    r.referenced = live.size();
    r.removed = candidates.size();
    for (const Address& a : candidates) r.removed_bytes += objects[a];
    return r;
  }
  if (candidates.empty() || Cancelled(o)) {
    r.referenced = live.size();
    return r;
  }

  // 2. Retire: writers of these bytes stage them again from now on.
  auto retired = index->RetireStored(candidates);
  if (!retired.ok()) return retired.status();

  // 3. The cut.
  if (o.before_gate) o.before_gate();
  live = by_snapshots;
  std::unique_ptr<IndexView> view;
  {
    std::unique_lock<std::shared_mutex> gate(index->ref_gate());
    if (o.memory_refs) {
      Status st = o.memory_refs([&](const Address& a) { live.insert(a); });
      if (!st.ok()) {
        gate.unlock();
        index->RestoreStored(*retired).IgnoreError();
        return st;
      }
    }
    view = index->NewView();
  }
  Status scanned = AddViewRefs(view.get(), &live);
  view.reset();
  if (!scanned.ok()) {
    index->RestoreStored(*retired).IgnoreError();
    return scanned;
  }
  r.referenced = live.size();
  std::vector<Address> doomed, kept;
  for (const Address& a : *retired)
    (live.count(a) ? kept : doomed).push_back(a);
  report("scanning", 2, 2);
  if (o.after_cut) o.after_cut();

  // 4. Delete, batch by batch, in parallel.
  std::mutex mu;       // guards r's counters and the first error
  size_t reached = 0;  // doomed[0, reached) were handled
  for (size_t from = 0; from < doomed.size() && !Cancelled(o);
       from += o.delete_batch) {
    const size_t to = std::min(doomed.size(), from + o.delete_batch);
    std::vector<Address> batch;
    for (size_t i = from; i < to; ++i) {
      auto ok = index->BeginDelete(doomed[i]);
      if (!ok.ok()) {
        // Cannot tell: keep it (it stays retired; harmless).
        std::lock_guard<std::mutex> lock(mu);
        r.failed += 1;
        if (r.first_error.empty()) r.first_error = ok.status().ToString();
        continue;
      }
      if (*ok) {
        batch.push_back(doomed[i]);
      } else {
        kept.push_back(doomed[i]);  // queued, known again or pinned
      }
    }
    // Each thread removes a contiguous share of the batch with one
    // RemoveMany (S3: one DeleteObjects request instead of one DELETE per
    // chunk).
    const size_t n = static_cast<size_t>(std::max(
        1, std::min<int>(o.delete_threads, static_cast<int>(batch.size()))));
    auto work = [&](size_t part) {
      const size_t lo = batch.size() * part / n;
      const size_t hi = batch.size() * (part + 1) / n;
      if (lo == hi) return;
      const std::span<const Address> share(batch.data() + lo, hi - lo);
      if (o.before_delete)
        for (const Address& a : share) o.before_delete(a);
      std::vector<Status> results;
      store->RemoveMany(share, &results);
      for (const Address& a : share) index->EndDelete(a);
      std::lock_guard<std::mutex> lock(mu);
      for (size_t i = 0; i < share.size(); ++i) {
        const Status st = i < results.size()
                              ? results[i]
                              : Status::Error(Code::kIo, "no delete result");
        if (st.ok()) {
          r.removed += 1;
          r.removed_bytes += objects[share[i]];
        } else {
          // Its 'A' entry stays retired: if the object did go after all, a
          // writer of these bytes uploads them again.
          r.failed += 1;
          if (r.first_error.empty()) r.first_error = st.ToString();
        }
      }
    };
    std::vector<std::thread> threads;
    for (size_t t = 1; t < n; ++t) threads.emplace_back(work, t);
    work(0);
    for (auto& t : threads) t.join();
    reached = to;
    report("removing", to, doomed.size());
  }
  r.kept = kept.size();
  // Cancelled: the doomed addresses not reached are still in the store.
  std::vector<Address> restore = kept;
  restore.insert(restore.end(), doomed.begin() + reached, doomed.end());
  WAVEFS_RETURN_IF_ERROR(index->RestoreStored(restore));
  spdlog::info("gc: {}", r.Summary());
  return r;
}

}  // namespace wavefs
