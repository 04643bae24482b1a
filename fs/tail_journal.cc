#include "fs/tail_journal.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "chunker/le_codec.h"
#include "store/thread_name.h"

namespace wavefs {
namespace {

constexpr uint8_t kRecordVersion = 1;
constexpr char kKeyContext[] = "wavefs tail journal v1";
// version, chunk index, offset, size, three times (seconds, nanoseconds).
constexpr size_t kHeader = 1 + 8 + 4 + 8 + 3 * 12;

void PutTime(Writer* w, const timespec& t) {
  w->U64(static_cast<uint64_t>(t.tv_sec));
  w->U32(static_cast<uint32_t>(t.tv_nsec));
}
bool GetTime(Reader* r, timespec* t) {
  uint64_t sec = 0;
  uint32_t nsec = 0;
  if (!r->U64(&sec) || !r->U32(&nsec)) return false;
  t->tv_sec = static_cast<time_t>(sec);
  t->tv_nsec = static_cast<long>(nsec);
  return true;
}
// The record's place, bound in as additional data.
std::array<uint8_t, 16> Place(uint64_t ino, uint64_t seq) {
  std::array<uint8_t, 16> ad;
  for (int i = 0; i < 8; ++i) {
    ad[i] = static_cast<uint8_t>(ino >> (8 * i));
    ad[8 + i] = static_cast<uint8_t>(seq >> (8 * i));
  }
  return ad;
}

}  // namespace

TailJournal::TailJournal(
    const Secret& secret, std::chrono::milliseconds hold, size_t max_hot,
    std::function<std::chrono::steady_clock::time_point()> now)
    : hold_(hold),
      max_hot_(std::max<size_t>(1, max_hot)),
      now_(std::move(now)) {
  crypto_generichash(key_.data(), key_.size(),
                     reinterpret_cast<const uint8_t*>(kKeyContext),
                     sizeof kKeyContext - 1, secret.data(), secret.size());
}

TailJournal::~TailJournal() {
  Stop();
  sodium_memzero(key_.data(), key_.size());
}

std::string TailJournal::Seal(uint64_t ino, uint64_t seq,
                              const JournalRecord& r) const {
  std::string plain;
  plain.reserve(kHeader + r.data.size());
  Writer w(&plain);
  w.U8(kRecordVersion);
  w.U64(r.chunk_index);
  w.U32(r.offset);
  w.U64(r.size);
  PutTime(&w, r.atime);
  PutTime(&w, r.mtime);
  PutTime(&w, r.ctime);
  w.Raw(r.data);
  constexpr size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  std::string out(
      kNonce + plain.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  auto* o = reinterpret_cast<uint8_t*>(out.data());
  randombytes_buf(o, kNonce);
  const auto ad = Place(ino, seq);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      o + kNonce, &clen, reinterpret_cast<const uint8_t*>(plain.data()),
      plain.size(), ad.data(), ad.size(), nullptr, o, key_.data());
  sodium_memzero(plain.data(), plain.size());
  return out;
}

Result<JournalRecord> TailJournal::Open(uint64_t ino, uint64_t seq,
                                        std::string_view sealed) const {
  constexpr size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  constexpr size_t kTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;
  auto bad = [&](const char* why) {
    return Status::Error(Code::kCorrupt, "tail journal record " +
                                             std::to_string(ino) + "/" +
                                             std::to_string(seq) + ": " + why);
  };
  if (sealed.size() < kNonce + kHeader + kTag) return bad("too short");
  const auto* s = reinterpret_cast<const uint8_t*>(sealed.data());
  std::vector<uint8_t> plain(sealed.size() - kNonce - kTag);
  const auto ad = Place(ino, seq);
  unsigned long long plen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          plain.data(), &plen, nullptr, s + kNonce, sealed.size() - kNonce,
          ad.data(), ad.size(), s, key_.data()) != 0)
    return bad("does not verify (wrong key, or damaged)");
  JournalRecord r;
  {
    Reader in(std::string_view(reinterpret_cast<const char*>(plain.data()),
                               static_cast<size_t>(plen)));
    uint8_t version = 0;
    std::string_view data;
    if (!in.U8(&version) || version != kRecordVersion)
      return bad("unknown version");
    if (!in.U64(&r.chunk_index) || !in.U32(&r.offset) || !in.U64(&r.size) ||
        !GetTime(&in, &r.atime) || !GetTime(&in, &r.mtime) ||
        !GetTime(&in, &r.ctime) || !in.Raw(in.remaining(), &data))
      return bad("truncated");
    r.data.assign(data);
  }
  sodium_memzero(plain.data(), plain.size());
  if (static_cast<uint64_t>(r.offset) + r.data.size() > kChunkSize)
    return bad("runs past its chunk");
  return r;
}

void TailJournal::Start(std::function<void(std::shared_ptr<OpenFile>)> cool) {
  cool_ = std::move(cool);
  thread_ = std::thread([this] {
    NameThisThread("wfs-tails");
    Loop();
  });
}

void TailJournal::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TailJournal::MarkHot(std::shared_ptr<OpenFile> f) {
  CoolAfter(std::move(f), hold_);
}

void TailJournal::CoolAfter(std::shared_ptr<OpenFile> f,
                            std::chrono::steady_clock::duration after) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t ino = f->ino;
  hot_.insert_or_assign(ino, std::make_pair(std::move(f), Now() + after));
  cv_.notify_all();
}

void TailJournal::CoolNow(std::shared_ptr<OpenFile> f) {
  CoolAfter(std::move(f), std::chrono::steady_clock::duration::zero());
}

bool TailJournal::HasRoom() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hot_.size() < max_hot_;
}

size_t TailJournal::hot_files() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hot_.size();
}

std::chrono::steady_clock::time_point TailJournal::Now() const {
  return now_ ? now_() : std::chrono::steady_clock::now();
}

void TailJournal::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const auto now = Now();
    std::vector<std::shared_ptr<OpenFile>> due;
    auto next = std::chrono::steady_clock::time_point::max();
    for (auto it = hot_.begin(); it != hot_.end();) {
      if (it->second.second <= now) {
        due.push_back(std::move(it->second.first));
        it = hot_.erase(it);
      } else {
        next = std::min(next, it->second.second);
        ++it;
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (auto& f : due) cool_(std::move(f));
      lock.lock();
      continue;
    }
    if (now_ && next != std::chrono::steady_clock::time_point::max())
      cv_.wait_for(lock, std::chrono::milliseconds(10));  // a test clock
    else if (next == std::chrono::steady_clock::time_point::max())
      cv_.wait(lock);
    else
      cv_.wait_until(lock, next);
  }
}

}  // namespace wavefs
