// FuseWire (fs/fuse_wire.h): what it does to raw FUSE requests and replies,
// on byte buffers and pipes built here as the kernel would fill them.
#include "fs/fuse_wire.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fuse.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

namespace wavefs {
namespace {

template <typename Arg>
std::vector<uint8_t> Request(uint32_t opcode, uint64_t unique, const Arg& arg,
                             size_t extra = 0) {
  std::vector<uint8_t> buf(sizeof(fuse_in_header) + sizeof arg + extra, 0xAB);
  fuse_in_header h{};
  h.len = static_cast<uint32_t>(buf.size());
  h.opcode = opcode;
  h.unique = unique;
  std::memcpy(buf.data(), &h, sizeof h);
  std::memcpy(buf.data() + sizeof h, &arg, sizeof arg);
  return buf;
}

template <typename Arg>
Arg ArgOf(const std::vector<uint8_t>& buf) {
  Arg a;
  std::memcpy(&a, buf.data() + sizeof(fuse_in_header), sizeof a);
  return a;
}

fuse_init_in InitOffering(uint32_t flags) {
  fuse_init_in in{};
  in.major = FUSE_KERNEL_VERSION;
  in.minor = 38;
  in.flags = flags;
  return in;
}

// Feeds INIT offering `offered` and then `reply` through the wire; returns
// the reply as it went out.
fuse_init_out SendInit(FuseWire* wire, uint32_t offered,
                       const fuse_init_out& reply) {
  auto init = Request(FUSE_INIT, 7, InitOffering(offered));
  wire->OnRequest(init.data(), init.size());
  fuse_out_header out{};
  out.unique = 7;
  fuse_init_out mine = reply;
  out.len = sizeof out + sizeof mine;
  iovec iov[2] = {{&out, sizeof out}, {&mine, sizeof mine}};
  std::vector<iovec> patched;
  std::vector<uint8_t> storage;
  const iovec* v = wire->PatchReply(iov, 2, &patched, &storage);
  fuse_init_out sent;
  std::memcpy(&sent, v[1].iov_base, sizeof sent);
  EXPECT_EQ(std::memcmp(&mine, &reply, sizeof mine), 0)
      << "the caller's reply is not touched";
  return sent;
}

// The flags the INIT reply carried out.
uint32_t Negotiate(FuseWire* wire, uint32_t offered) {
  fuse_init_out reply{};
  reply.flags = FUSE_ASYNC_READ;
  return SendInit(wire, offered, reply).flags;
}

TEST(FuseWireTest, AddsKillprivV2ToTheInitReplyWhenTheKernelOffersIt) {
  FuseWire wire;
  const uint32_t sent =
      Negotiate(&wire, FUSE_HANDLE_KILLPRIV_V2 | FUSE_ASYNC_READ);
  EXPECT_TRUE(sent & FUSE_HANDLE_KILLPRIV_V2);
  EXPECT_TRUE(sent & FUSE_ASYNC_READ);
  EXPECT_TRUE(wire.offered());
  EXPECT_TRUE(wire.negotiated());
}

TEST(FuseWireTest, LeavesTheInitReplyAloneWhenNotOffered) {
  FuseWire old_kernel;
  EXPECT_FALSE(Negotiate(&old_kernel, FUSE_ASYNC_READ) &
               FUSE_HANDLE_KILLPRIV_V2);
  EXPECT_FALSE(old_kernel.offered());
  EXPECT_FALSE(old_kernel.negotiated());
}

// A reply carrying `reply_flags` and max_pages 255 (what libfuse derives
// from a 1016 KiB max_write), as it went out.
fuse_init_out NegotiatePages(FuseWire* wire, uint32_t offered,
                             uint32_t reply_flags) {
  fuse_init_out reply{};
  reply.flags = reply_flags;
  reply.max_write = 1016 << 10;
  reply.max_pages = 255;
  return SendInit(wire, offered, reply);
}

TEST(FuseWireTest, SetsMaxPagesInTheInitReplyWhenAsked) {
  FuseWire wire;
  wire.set_max_pages(256);
  const fuse_init_out sent =
      NegotiatePages(&wire, FUSE_MAX_PAGES, FUSE_MAX_PAGES | FUSE_ASYNC_READ);
  EXPECT_EQ(sent.max_pages, 256);
  EXPECT_EQ(sent.max_write, 1016u << 10) << "max_write stays libfuse's";
  EXPECT_EQ(sent.flags, FUSE_MAX_PAGES | FUSE_ASYNC_READ)
      << "no KILLPRIV_V2 the kernel did not offer";
  EXPECT_EQ(wire.max_pages_sent(), 256);
  EXPECT_FALSE(wire.negotiated());
}

TEST(FuseWireTest, LeavesMaxPagesAloneWithoutTheFlagOrTheAsk) {
  FuseWire old_kernel;  // no FUSE_MAX_PAGES: the field means nothing
  old_kernel.set_max_pages(256);
  EXPECT_EQ(NegotiatePages(&old_kernel, 0, FUSE_ASYNC_READ).max_pages, 255);
  EXPECT_EQ(old_kernel.max_pages_sent(), 0);
  FuseWire not_asked;
  EXPECT_EQ(
      NegotiatePages(&not_asked, FUSE_MAX_PAGES, FUSE_MAX_PAGES).max_pages,
      255);
  EXPECT_EQ(not_asked.max_pages_sent(), 0);
}

TEST(FuseWireTest, OtherRepliesPassUnchanged) {
  FuseWire wire;
  auto init = Request(FUSE_INIT, 7, InitOffering(FUSE_HANDLE_KILLPRIV_V2));
  wire.OnRequest(init.data(), init.size());
  fuse_out_header out{};
  out.unique = 8;  // not INIT's
  uint32_t body = 42;
  iovec iov[2] = {{&out, sizeof out}, {&body, sizeof body}};
  std::vector<iovec> patched;
  std::vector<uint8_t> storage;
  EXPECT_EQ(wire.PatchReply(iov, 2, &patched, &storage), iov);
  EXPECT_FALSE(wire.negotiated());
}

TEST(FuseWireTest, MarksKillFlagsOfWriteOpenAndCreateOnceNegotiated) {
  FuseWire wire;
  fuse_write_in w{};
  w.write_flags = FUSE_WRITE_KILL_SUIDGID;
  w.flags = O_WRONLY;
  auto before = Request(FUSE_WRITE, 9, w, 16);
  wire.OnRequest(before.data(), before.size());
  EXPECT_EQ(ArgOf<fuse_write_in>(before).flags, static_cast<uint32_t>(O_WRONLY))
      << "nothing is marked before the kernel took V2";

  ASSERT_TRUE(Negotiate(&wire, FUSE_HANDLE_KILLPRIV_V2) &
              FUSE_HANDLE_KILLPRIV_V2);
  auto write = Request(FUSE_WRITE, 10, w, 16);
  wire.OnRequest(write.data(), write.size());
  int flags = static_cast<int>(ArgOf<fuse_write_in>(write).flags);
  EXPECT_TRUE(TakeKillFlag(&flags));
  EXPECT_EQ(flags, O_WRONLY);
  EXPECT_EQ(0, std::memcmp(write.data() + write.size() - 16,
                           std::vector<uint8_t>(16, 0xAB).data(), 16))
      << "the data is not touched";

  w.write_flags = 0;
  auto plain = Request(FUSE_WRITE, 11, w, 16);
  wire.OnRequest(plain.data(), plain.size());
  flags = static_cast<int>(ArgOf<fuse_write_in>(plain).flags);
  EXPECT_FALSE(TakeKillFlag(&flags));

  fuse_open_in o{};
  o.flags = O_WRONLY | O_TRUNC;
  o.open_flags = FUSE_OPEN_KILL_SUIDGID;
  auto open = Request(FUSE_OPEN, 12, o);
  wire.OnRequest(open.data(), open.size());
  flags = static_cast<int>(ArgOf<fuse_open_in>(open).flags);
  EXPECT_TRUE(TakeKillFlag(&flags));
  EXPECT_EQ(flags, O_WRONLY | O_TRUNC);

  fuse_create_in c{};
  c.flags = O_RDWR;
  c.open_flags = FUSE_OPEN_KILL_SUIDGID;
  auto create = Request(FUSE_CREATE, 13, c, 6);
  wire.OnRequest(create.data(), create.size());
  flags = static_cast<int>(ArgOf<fuse_create_in>(create).flags);
  EXPECT_TRUE(TakeKillFlag(&flags));
  EXPECT_EQ(flags, O_RDWR);

  // A truncated buffer is left alone rather than read past its end.
  auto shortw = Request(FUSE_WRITE, 14, w);
  shortw.resize(sizeof(fuse_in_header) + 8);
  wire.OnRequest(shortw.data(), shortw.size());
}

TEST(FuseWireTest, CountsRequestsByOpcode) {
  FuseWire wire;
  EXPECT_EQ(wire.RequestCounts(), "") << "nothing read yet";
  fuse_write_in w{};
  for (uint64_t u = 1; u <= 3; ++u) {
    auto write = Request(FUSE_WRITE, u, w, 8);
    wire.OnRequest(write.data(), write.size());
  }
  fuse_open_in o{};
  auto lookup = Request(FUSE_LOOKUP, 4, o);
  wire.OnRequest(lookup.data(), lookup.size());
  auto cuse = Request(CUSE_INIT, 5, o);  // beyond every FUSE opcode
  wire.OnRequest(cuse.data(), cuse.size());
  auto unnamed = Request(63, 6, o);  // below the bound, not in the table
  wire.OnRequest(unnamed.data(), unnamed.size());
  // Not a request: shorter than its header.
  std::vector<uint8_t> runt(sizeof(fuse_in_header) - 1, 0);
  wire.OnRequest(runt.data(), runt.size());
  EXPECT_EQ(wire.RequestCounts(),
            "requests_LOOKUP=1\nrequests_WRITE=3\nrequests_op63=1\n"
            "requests_other=1\n");
}

// A request spliced from "/dev/fuse" (a pipe here) reaches libfuse's pipe
// whole, in order, with its header patched.
TEST(FuseWireTest, SpliceRequestPatchesTheHeaderAndMovesTheData) {
  FuseWire wire;
  ASSERT_TRUE(Negotiate(&wire, FUSE_HANDLE_KILLPRIV_V2) &
              FUSE_HANDLE_KILLPRIV_V2);
  int dev[2], lib[2];
  ASSERT_EQ(::pipe(dev), 0);
  ASSERT_EQ(::pipe(lib), 0);
  ASSERT_GE(::fcntl(dev[0], F_SETPIPE_SZ, 1 << 20), 1 << 20);
  ASSERT_GE(::fcntl(lib[0], F_SETPIPE_SZ, 1 << 20), 1 << 20);

  for (const size_t data : {size_t{0}, size_t{3}, size_t{200000}}) {
    fuse_write_in w{};
    w.write_flags = FUSE_WRITE_KILL_SUIDGID;
    w.flags = O_WRONLY;
    w.size = static_cast<uint32_t>(data);
    auto req = Request(FUSE_WRITE, 20 + data, w, data);
    for (size_t i = 0; i < data; ++i)
      req[sizeof(fuse_in_header) + sizeof w + i] = static_cast<uint8_t>(i * 7);
    ASSERT_EQ(::write(dev[1], req.data(), req.size()),
              static_cast<ssize_t>(req.size()));
    ASSERT_EQ(wire.SpliceRequest(dev[0], lib[1], 1 << 20, 0),
              static_cast<ssize_t>(req.size()));
    std::vector<uint8_t> got(req.size());
    size_t have = 0;
    while (have < got.size()) {
      const ssize_t r = ::read(lib[0], got.data() + have, got.size() - have);
      ASSERT_GT(r, 0);
      have += static_cast<size_t>(r);
    }
    int flags = static_cast<int>(ArgOf<fuse_write_in>(got).flags);
    EXPECT_TRUE(TakeKillFlag(&flags)) << data << " bytes of data";
    auto expect = req;
    std::memcpy(
        expect.data() + sizeof(fuse_in_header) + offsetof(fuse_write_in, flags),
        &flags, sizeof flags);
    std::memcpy(
        got.data() + sizeof(fuse_in_header) + offsetof(fuse_write_in, flags),
        &flags, sizeof flags);
    EXPECT_EQ(got, expect) << data << " bytes of data";
  }
  for (int fd : {dev[0], dev[1], lib[0], lib[1]}) ::close(fd);
}

// Splice steering: the FUSE_CAP_SPLICE_READ bit of conn->want follows the
// requests, on only while big writes come in.
TEST(FuseWireTest, SteersSplicingByTheRequestsThatComeIn) {
  constexpr unsigned kBit = 1u << 9;
  constexpr unsigned kOther = 1u << 3;
  unsigned want = kBit | kOther;
  FuseWire wire;
  fuse_write_in w{};
  auto big = Request(FUSE_WRITE, 2, w, FuseWire::kSpliceFrom);
  auto small_write = Request(FUSE_WRITE, 3, w, FuseWire::kSpliceFrom - 1);
  fuse_getattr_in g{};
  auto getattr = Request(FUSE_GETATTR, 4, g);

  // Not steering: the bit is left alone.
  wire.OnRequest(getattr.data(), getattr.size());
  EXPECT_EQ(kBit | kOther, want);

  wire.SteerSplice(&want, kBit);
  EXPECT_EQ(kOther, want) << "requests are read until a big write";
  wire.OnRequest(small_write.data(), small_write.size());
  EXPECT_EQ(kOther, want) << "a write below kSpliceFrom is read";
  wire.OnRequest(big.data(), big.size());
  EXPECT_EQ(kBit | kOther, want) << "a big write turns splicing on";
  EXPECT_EQ(1u, wire.splice_switches());
  for (uint32_t i = 0; i + 1 < FuseWire::kReadAfter; ++i)
    wire.OnRequest(getattr.data(), getattr.size());
  EXPECT_EQ(kBit | kOther, want) << "one request short of kReadAfter";
  wire.OnRequest(big.data(), big.size());  // starts the count again
  for (uint32_t i = 0; i + 1 < FuseWire::kReadAfter; ++i)
    wire.OnRequest(getattr.data(), getattr.size());
  EXPECT_EQ(kBit | kOther, want);
  wire.OnRequest(getattr.data(), getattr.size());
  EXPECT_EQ(kOther, want) << "kReadAfter requests without a big write";
  EXPECT_EQ(2u, wire.splice_switches());
}

// A request read into memory is patched like a spliced one.
TEST(FuseWireTest, ReadRequestPatchesAndCounts) {
  int p[2];
  ASSERT_EQ(0, pipe(p));
  FuseWire wire;
  fuse_getattr_in g{};
  auto req = Request(FUSE_GETATTR, 9, g);
  ASSERT_EQ(static_cast<ssize_t>(req.size()),
            write(p[1], req.data(), req.size()));
  std::vector<uint8_t> buf(256 << 10);
  EXPECT_EQ(static_cast<ssize_t>(req.size()),
            wire.ReadRequest(p[0], buf.data(), buf.size()));
  EXPECT_EQ(0, std::memcmp(req.data(), buf.data(), req.size()));
  EXPECT_NE(std::string::npos, wire.RequestCounts().find("requests_GETATTR=1"));
  close(p[0]);
  close(p[1]);
}

}  // namespace
}  // namespace wavefs
