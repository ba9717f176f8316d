// The NBD client against FakeNbdServer: handshake (what is sent, what is understood,
// refusals with the server's message), request encoding, structured and simple
// replies, errors, and an out-of-order reply from a scripted raw server.
#include <gtest/gtest.h>

#include <array>
#include <thread>

#include "client/nbd_client.h"
#include "client/nbd_error.h"
#include "client/nbd_handshake.h"
#include "fake_nbd_server.h"

namespace blockd::client {
namespace {

using test::FakeNbdServer;
namespace nbd = common::nbd;

NbdClient connect_to(FakeNbdServer& server, const NegotiateOptions& options, const std::string& name = "disk") {
  common::UniqueFd fd = server.take_client();
  server.start();
  ExportInfo info = nbd_negotiate(fd.get(), name, options);
  return NbdClient(std::move(fd), info);
}

NegotiateOptions full() {
  NegotiateOptions o;
  o.structured_replies = true;
  o.base_allocation = true;
  return o;
}

TEST(NbdHandshake, GoWithBlockSizeAndStructuredReplies) {
  FakeNbdServer server({});
  {
    NbdClient c = connect_to(server, full());
    EXPECT_EQ(c.info().size, 4u << 20);
    EXPECT_TRUE(c.info().structured_replies);
    ASSERT_TRUE(c.info().base_allocation_id.has_value());
    EXPECT_EQ(*c.info().base_allocation_id, 7u);
    EXPECT_TRUE(c.info().block_size_advertised);
    EXPECT_EQ(c.info().min_block, 512u);
    EXPECT_TRUE(c.info().has(nbd::kFlagSendFlush));
    c.disconnect();
  }
  server.join();
  EXPECT_EQ(server.client_flags, nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes);
  EXPECT_EQ(server.options_seen,
            (std::vector<std::uint32_t>{static_cast<std::uint32_t>(nbd::Option::kStructuredReply),
                                        static_cast<std::uint32_t>(nbd::Option::kSetMetaContext),
                                        static_cast<std::uint32_t>(nbd::Option::kGo)}));
  EXPECT_EQ(server.info_requests, (std::vector<std::uint16_t>{nbd::kInfoBlockSize}));
  ASSERT_EQ(server.seen.size(), 1u);
  EXPECT_EQ(server.seen[0].type, static_cast<std::uint16_t>(nbd::Command::kDisc));
}

TEST(NbdHandshake, PlainGoForTheKernel) {
  // What `blockctl attach` will do: GO only, no structured replies, then hand the fd over.
  FakeNbdServer server({});
  common::UniqueFd fd = server.take_client();
  server.start();
  NegotiateOptions o;
  o.request_block_size = false;
  const ExportInfo info = nbd_negotiate(fd.get(), "disk", o);
  EXPECT_FALSE(info.structured_replies);
  EXPECT_FALSE(info.base_allocation_id);
  fd.reset();
  server.join();
  EXPECT_EQ(server.options_seen, (std::vector<std::uint32_t>{static_cast<std::uint32_t>(nbd::Option::kGo)}));
  EXPECT_TRUE(server.info_requests.empty());
}

TEST(NbdHandshake, ServerWithoutStructuredReplies) {
  FakeNbdServer::Config config;
  config.structured = false;
  FakeNbdServer server(config);
  NbdClient c = connect_to(server, full());
  EXPECT_FALSE(c.info().structured_replies);
  EXPECT_FALSE(c.info().base_allocation_id);
  std::vector<std::byte> data(4096, std::byte{9});
  c.write(4096, data);
  std::vector<std::byte> back(4096);
  c.read(4096, back);  // a simple reply with data
  EXPECT_EQ(back, data);
  EXPECT_THROW(c.block_status(0, 4096), std::logic_error);
}

TEST(NbdHandshake, UnknownExportIsAClearError) {
  FakeNbdServer server({});
  common::UniqueFd fd = server.take_client();
  server.start();
  try {
    nbd_negotiate(fd.get(), "nope", full());
    FAIL() << "no error";
  } catch (const NbdError& e) {
    EXPECT_NE(std::string(e.what()).find("refused export \"nope\": NBD_REP_ERR_UNKNOWN"), std::string::npos)
        << e.what();
  }
}

TEST(NbdHandshake, RefusalCarriesTheServersMessage) {
  FakeNbdServer::Config config;
  config.go_error = nbd::kRepErrPolicy;
  config.go_error_message = "volume db is held by node-a";
  FakeNbdServer server(config);
  common::UniqueFd fd = server.take_client();
  server.start();
  try {
    nbd_negotiate(fd.get(), "disk", full());
    FAIL() << "no error";
  } catch (const NbdError& e) {
    EXPECT_NE(std::string(e.what()).find("NBD_REP_ERR_POLICY (refused by policy): volume db is held by node-a"),
              std::string::npos)
        << e.what();
  }
}

TEST(NbdHandshake, NotAnNbdServer) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  common::UniqueFd client(fds[0]), server(fds[1]);
  const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
  ASSERT_GT(::write(server.get(), junk, sizeof junk), 0);
  try {
    nbd_negotiate(client.get(), "disk", {});
    FAIL();
  } catch (const NbdError& e) {
    EXPECT_NE(std::string(e.what()).find("not an NBD server"), std::string::npos) << e.what();
  }
  server.reset();
  common::UniqueFd c2;
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  c2.reset(fds[0]);
  ::close(fds[1]);
  EXPECT_THROW(nbd_negotiate(c2.get(), "disk", {}), NbdError);  // closed at once
}

TEST(NbdClient, RequestsAreEncodedAsTheSpecSays) {
  FakeNbdServer server({});
  {
    NbdClient c = connect_to(server, full());
    std::vector<std::byte> data(8192, std::byte{0x5a});
    c.write(65536, data);
    c.write_zeroes(1 << 20, 1 << 20);
    c.flush();
    std::vector<std::byte> back(8192);
    c.read(65536, back);
    EXPECT_EQ(back, data);
    c.disconnect();
  }
  server.join();
  ASSERT_EQ(server.seen.size(), 5u);
  EXPECT_EQ(server.seen[0].type, static_cast<std::uint16_t>(nbd::Command::kWrite));
  EXPECT_EQ(server.seen[0].offset, 65536u);
  EXPECT_EQ(server.seen[0].length, 8192u);
  EXPECT_EQ(server.seen[1].type, static_cast<std::uint16_t>(nbd::Command::kWriteZeroes));
  EXPECT_EQ(server.seen[1].length, 1u << 20);
  EXPECT_EQ(server.seen[2].type, static_cast<std::uint16_t>(nbd::Command::kFlush));
  EXPECT_EQ(server.seen[2].offset, 0u);
  EXPECT_EQ(server.seen[2].length, 0u);
  EXPECT_EQ(server.seen[3].type, static_cast<std::uint16_t>(nbd::Command::kRead));
}

TEST(NbdClient, StructuredReadsWithHolesAndBlockStatus) {
  FakeNbdServer server({});
  std::fill(server.data().begin() + (1 << 20), server.data().begin() + (1 << 20) + 4096, std::byte{1});
  NbdClient c = connect_to(server, full());
  std::vector<std::byte> back(128 << 10, std::byte{0xee});
  c.read(0, back);  // first half comes back as a hole chunk: must be zero-filled
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](std::byte b) { return b == std::byte{0}; }));
  const auto extents = c.block_status(0, 2 << 20);
  ASSERT_FALSE(extents.empty());
  EXPECT_EQ(extents.front().offset, 0u);
  EXPECT_TRUE(extents.front().zero());
  std::uint64_t end = 0;
  bool saw_data = false;
  for (const auto& e : extents) {
    EXPECT_EQ(e.offset, end);
    end += e.length;
    if (e.offset == (1u << 20)) {
      saw_data = true;
      EXPECT_FALSE(e.zero());
    }
  }
  EXPECT_EQ(end, 2u << 20);
  EXPECT_TRUE(saw_data);
}

TEST(NbdClient, ErrorReplyIsACompletionNotAnException) {
  FakeNbdServer::Config config;
  config.fail_writes_at = 4096;
  FakeNbdServer server(config);
  NbdClient c = connect_to(server, full());
  std::vector<std::byte> data(4096, std::byte{1});
  const auto bad = c.send_write(4096, data);
  const auto good = c.send_write(8192, data);
  EXPECT_EQ(c.in_flight(), 2u);
  Completion first = c.wait_one();
  Completion second = c.wait_one();
  EXPECT_EQ(first.cookie, bad);
  EXPECT_EQ(first.error, 5u);
  EXPECT_EQ(first.message, "disk full");
  EXPECT_EQ(second.cookie, good);
  EXPECT_TRUE(second.ok());
  try {
    c.write(4096, data);
    FAIL();
  } catch (const NbdError& e) {
    EXPECT_NE(std::string(e.what()).find("EIO (input/output error): disk full"), std::string::npos) << e.what();
  }
}

TEST(NbdClient, RefusesRequestsTheSpecForbids) {
  FakeNbdServer server({});
  NbdClient c = connect_to(server, full());
  std::vector<std::byte> odd(100);
  EXPECT_THROW(c.send_read(0, odd), std::invalid_argument);           // below the minimum block
  std::vector<std::byte> page(4096);
  EXPECT_THROW(c.send_read(4u << 20, page), std::invalid_argument);   // past the end
  EXPECT_THROW(c.send_write_zeroes(0, 0), std::invalid_argument);     // zero length
  EXPECT_EQ(c.in_flight(), 0u);
}

// A scripted server: answers two pipelined reads in reverse order (allowed by
// "Transmission": replies need not be in request order).
TEST(NbdClient, OutOfOrderReplies) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  common::UniqueFd client_fd(fds[0]);
  common::UniqueFd server_fd(fds[1]);
  std::thread server([&] {
    std::array<std::byte, 56> two{};
    std::size_t got = 0;
    while (got < two.size()) {
      const ssize_t n = ::read(server_fd.get(), two.data() + got, two.size() - got);
      if (n <= 0) return;
      got += static_cast<std::size_t>(n);
    }
    for (int which : {1, 0}) {
      const std::byte* h = two.data() + which * 28;
      nbd::ByteWriter w;
      w.u32(nbd::kSimpleReplyMagic);
      w.u32(0);
      w.u64(nbd::load_u64(h + 8));
      std::vector<std::byte> payload(nbd::load_u32(h + 24), std::byte(which + 1));
      w.bytes(std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()));
      const auto& b = w.buffer();
      if (::write(server_fd.get(), b.data(), b.size()) != static_cast<ssize_t>(b.size())) return;
    }
    // Read the DISC, then close: the client waits for the close.
    std::array<std::byte, 28> disc{};
    (void)!::read(server_fd.get(), disc.data(), disc.size());
    server_fd.reset();
  });
  ExportInfo info;
  info.size = 1 << 20;
  info.transmission_flags = nbd::kFlagHasFlags;
  {
    NbdClient c(std::move(client_fd), info);
    std::vector<std::byte> a(512), b(1024);
    const auto ca = c.send_read(0, a);
    const auto cb = c.send_read(4096, b);
    EXPECT_EQ(c.wait_one().cookie, cb);
    EXPECT_EQ(c.wait_one().cookie, ca);
    EXPECT_TRUE(std::all_of(a.begin(), a.end(), [](std::byte x) { return x == std::byte{1}; }));
    EXPECT_TRUE(std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{2}; }));
  }
  server.join();
}

}  // namespace
}  // namespace blockd::client
