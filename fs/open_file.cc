#include "fs/open_file.h"

namespace wavefs {

Result<std::optional<ChunkRef>> RefOf(Index* index, OpenFile* f, uint64_t idx) {
  auto p = f->pending.find(idx);
  if (p != f->pending.end()) return std::optional<ChunkRef>(p->second);
  if (f->truncate_from && idx >= *f->truncate_from)
    return std::optional<ChunkRef>();
  return index->GetChunk(f->ino, idx);
}

ChangeScope::ChangeScope(OpenFile* f, std::unique_lock<std::mutex>& lock,
                         const std::function<void(uint64_t)>& on_wait)
    : f_(f) {
  if (f->commits > 0 && on_wait) on_wait(f->ino);
  f->cv.wait(lock, [&] { return f->commits == 0; });
  f->changes += 1;
}

void ChangeScope::End() {
  if (f_ == nullptr) return;
  f_->changes -= 1;
  if (f_->changes == 0) f_->cv.notify_all();
  f_ = nullptr;
}

std::shared_ptr<OpenFile> OpenFileTable::Find(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  return FindLocked(ino);
}

std::shared_ptr<OpenFile> OpenFileTable::FindLocked(uint64_t ino) {
  auto it = open_.find(ino);
  return it == open_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<OpenFile>> OpenFileTable::Pin(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = open_.find(ino);
  std::shared_ptr<OpenFile> f;
  if (it != open_.end()) {
    f = it->second;
  } else {
    auto a = index_->GetInode(ino);
    if (!a.ok()) return a.status();
    f = std::make_shared<OpenFile>(*a);
    f->self = f;
    open_[ino] = f;
  }
  std::lock_guard<std::mutex> fl(f->mu);
  f->opens += 1;
  return f;
}

bool OpenFileTable::Unpin(const std::shared_ptr<OpenFile>& f,
                          const std::function<void(OpenFile*)>& last) {
  std::lock_guard<std::mutex> lock(mu_);
  std::lock_guard<std::mutex> fl(f->mu);
  f->opens -= 1;
  if (f->opens > 0) return false;
  last(f.get());
  open_.erase(f->ino);
  return true;
}

std::vector<std::shared_ptr<OpenFile>> OpenFileTable::All() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<OpenFile>> out;
  out.reserve(open_.size());
  for (auto& [ino, f] : open_) out.push_back(f);
  return out;
}

void OpenFileTable::WithLock(const std::function<void()>& fn) {
  std::lock_guard<std::mutex> lock(mu_);
  fn();
}

}  // namespace wavefs
