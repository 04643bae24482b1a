// What Debian's libfuse 3.14 does not expose of the FUSE protocol, added at
// the /dev/fuse boundary (fuse_session_custom_io): FUSE_HANDLE_KILLPRIV_V2.
//
// Why: the kernel clears SB_NOSEC on FUSE mounts unless the filesystem takes
// the "kill privileges" job (HANDLE_KILLPRIV_V2), so every write(2) first
// asks the daemon for security.capability (file_remove_privs): one GETXATTR
// round trip per write(2), 262,144 of them for 2 GiB written by `tee` in
// 8 KiB pieces, with the writeback cache too. With V2 the kernel sets
// SB_NOSEC, asks once per inode until its attributes are refreshed, and
// tells the filesystem when a write, a truncating open or a setattr must
// clear set-user-ID/set-group-ID (the writer lacks CAP_FSETID, or a chown).
// libfuse 3.14 neither offers the flag nor passes the write and open kill
// flags on, so FuseWire
//   - sees each request as it is read from /dev/fuse (OnRequest): it
//     remembers what the kernel offered in INIT, and copies the kill flag of
//     WRITE (write_flags) and OPEN/CREATE (open_flags) requests into a bit of
//     the open flags, which libfuse hands to the handler as
//     fuse_file_info::flags (kKillSuidGidFlag; TakeKillFlag strips it);
//   - sees each reply as it is written (PatchReply): in the INIT reply it
//     adds FUSE_HANDLE_KILLPRIV_V2 when the kernel offered it, and sets
//     max_pages when asked to (set_max_pages): libfuse derives it from
//     max_write, and the kernel bounds reads by it as well as writes.
// The setattr kill flag (FATTR_KILL_SUIDGID) needs no help: libfuse passes
// it as FUSE_SET_ATTR_KILL_SUID.
//
// Requests spliced into a pipe never reach OnRequest, so while V2 is on the
// daemon also takes requests spliced through SpliceRequest, which patches
// the header on its way from /dev/fuse to libfuse's pipe.
//
// FuseWire also steers between the two ways libfuse receives requests
// (SteerSplice). Splicing moves a write's data in pipes without a copy, but
// a small request then costs four or five system calls before libfuse sees
// it (splice into our pipe, read and write the header, splice the rest,
// libfuse's read of it), where a read(2) into memory costs one; on this
// project's VMs a call is ~1 us, and `tar -x` of /usr/include (13.5
// requests per file) took 4.40 s always spliced against 3.86 s steered
// (medians of 5 alternating rounds, 3.32 s against 2.74 s of daemon CPU). So
// requests are read into memory until a WRITE of kSpliceFrom or more
// arrives, and spliced from then on until kReadAfter requests in a row
// carried no such write. libfuse 3.14 checks FUSE_CAP_SPLICE_READ in
// conn->want before each receive, so the switch is that bit (a libfuse
// that checks want_ext instead would just keep splicing). Its read path
// leaves a buffer's flags as they were, so the loop that calls it must
// clear them first (fs/fuse_loop.h): after a spliced write they would say
// "in the pipe". A big write read into memory fills that thread's libfuse
// buffer (1 MiB); ReadRequest and SpliceRequest give those pages back
// before the thread's next request, so the daemon's resident memory stays
// what it is with splicing alone.
//
// Thread safety: OnRequest, PatchReply, ReadRequest and SpliceRequest may
// run on any FUSE thread at once; INIT comes first and alone (the kernel
// sends nothing else before its reply).
#pragma once

#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wavefs {

// Set in fuse_file_info::flags of WRITE, OPEN and CREATE requests when the
// kernel asked for set-user-ID/set-group-ID to be cleared. No O_* flag uses
// this bit (the highest, O_TMPFILE's __O_TMPFILE, is 0x400000).
constexpr uint32_t kKillSuidGidFlag = 0x40000000u;

// Whether *flags carries kKillSuidGidFlag; clears it.
bool TakeKillFlag(int* flags);

class FuseWire {
 public:
  // A request read from /dev/fuse, n bytes at buf, patched in place.
  void OnRequest(void* buf, size_t n);

  // A reply or notification about to be written to /dev/fuse. Returns the
  // iovecs to write: `iov` itself, or (the INIT reply, when the flag is to
  // be added) *patched, pointing into *storage.
  const iovec* PatchReply(const iovec* iov, int count,
                          std::vector<iovec>* patched,
                          std::vector<uint8_t>* storage);

  // Moves one request from /dev/fuse (fdin) into libfuse's pipe (fdout)
  // through a pipe of the calling thread's own, patching its header as
  // OnRequest does; returns the request's size, or -1 with errno set (as
  // splice(2) does).
  ssize_t SpliceRequest(int fdin, int fdout, size_t len, unsigned flags);

  // Reads one request from fd into buf (libfuse's buffer of len bytes,
  // the calling thread's own) and patches it as OnRequest does.
  ssize_t ReadRequest(int fd, void* buf, size_t len);

  // Steer between splicing and reading (above) through `bit`
  // (FUSE_CAP_SPLICE_READ) of *want, the session's conn->want, which
  // outlives every request; call from the init handler, with the bit set
  // and pipes known to hold a request. Requests are read until the first
  // big write.
  void SteerSplice(unsigned* want, unsigned bit);
  // Switches between splicing and reading so far (user.wavefs.stats).
  uint64_t splice_switches() const {
    return switches_.load(std::memory_order_relaxed);
  }
  // A WRITE with this much data or more turns splicing on.
  static constexpr size_t kSpliceFrom = 128u << 10;
  // This many requests in a row without such a write turn it off.
  static constexpr uint32_t kReadAfter = 16;

  // Pages per request to ask for in the INIT reply (0: libfuse's
  // max_write / page size, rounded up). Set before the reply goes out,
  // i.e. in the init handler at the latest.
  void set_max_pages(uint16_t pages) {
    max_pages_.store(pages, std::memory_order_release);
  }
  // The max_pages the INIT reply carried after patching (0: not patched).
  uint16_t max_pages_sent() const {
    return max_pages_sent_.load(std::memory_order_acquire);
  }

  // The kernel offered FUSE_HANDLE_KILLPRIV_V2 in INIT (known once INIT has
  // been read, before libfuse calls init).
  bool offered() const { return offered_.load(std::memory_order_acquire); }
  // The INIT reply carried it: the kernel now leaves the kill to us.
  bool negotiated() const {
    return negotiated_.load(std::memory_order_acquire);
  }

  // Requests read so far, by opcode, as "NAME=count" lines for
  // user.wavefs.stats (opcodes never seen left out): how many round trips
  // a workload costs per file, which is what bounds small-file trees.
  std::string RequestCounts() const;

 private:
  static constexpr size_t kOpcodes = 64;  // FUSE_* opcodes are below this
  std::array<std::atomic<uint64_t>, kOpcodes + 1> requests_{};  // +1: other
  std::atomic<bool> offered_{false};
  std::atomic<bool> negotiated_{false};
  std::atomic<uint64_t> init_unique_{0};
  std::atomic<uint16_t> max_pages_{0};
  std::atomic<uint16_t> max_pages_sent_{0};
  // Splice steering: the bit's word (null: not steering), the bit, whether
  // it is set, requests since the last big write, switches made.
  std::atomic<unsigned*> want_{nullptr};
  unsigned splice_bit_ = 0;
  std::atomic<bool> splicing_{false};
  std::atomic<uint32_t> since_big_{0};
  std::atomic<uint64_t> switches_{0};

  // Notes a request's opcode and length for the steering.
  void Steer(uint32_t opcode, uint32_t len);
  void SetSplicing(bool on);
};

}  // namespace wavefs
