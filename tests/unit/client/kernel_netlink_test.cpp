// The netlink messages NetlinkNbd sends, built and parsed back without a kernel:
// every attribute nbd_genl_connect / nbd_genl_reconfigure / nbd_genl_disconnect /
// nbd_genl_status read, with the types drivers/block/nbd.c's policy expects.
#include <gtest/gtest.h>
#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include <vector>

#include "client/kernel_nbd.h"

namespace blockd::client {
namespace {

constexpr int kFamily = 0x1d;

struct Parsed {
  nlattr* tb[NBD_ATTR_MAX + 1] = {};
  genlmsghdr* gnlh = nullptr;
};

Parsed parse(nl_msg* msg) {
  Parsed p;
  nlmsghdr* hdr = nlmsg_hdr(msg);
  EXPECT_EQ(hdr->nlmsg_type, kFamily);
  p.gnlh = static_cast<genlmsghdr*>(nlmsg_data(hdr));
  EXPECT_EQ(p.gnlh->version, NBD_GENL_VERSION);
  EXPECT_EQ(genlmsg_parse(hdr, 0, p.tb, NBD_ATTR_MAX, nullptr), 0);
  return p;
}

std::vector<int> socket_fds(nlattr* socks) {
  std::vector<int> fds;
  nlattr* item = nullptr;
  int rem = 0;
  nla_for_each_nested(item, socks, rem) {
    EXPECT_EQ(nla_type(item), NBD_SOCK_ITEM);
    nlattr* sock[NBD_SOCK_MAX + 1] = {};
    EXPECT_EQ(nla_parse_nested(sock, NBD_SOCK_MAX, item, nullptr), 0);
    EXPECT_NE(sock[NBD_SOCK_FD], nullptr);
    EXPECT_EQ(nla_len(sock[NBD_SOCK_FD]), 4);  // NLA_U32
    fds.push_back(static_cast<int>(nla_get_u32(sock[NBD_SOCK_FD])));
  }
  return fds;
}

TEST(KernelNetlink, ConnectCarriesEverything) {
  NbdConnectRequest r;
  r.index = 3;
  r.size_bytes = 256ULL << 20;
  r.block_size = 4096;
  r.server_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN;
  r.client_flags = NBD_CFLAG_DISCONNECT_ON_CLOSE;
  r.timeout = std::chrono::seconds(5);
  r.dead_conn_timeout = std::chrono::seconds(90);
  r.socket_fds = {7, 9};
  r.backend = "nbd://127.0.0.1:10809/disk?holder=node-a";
  NlMsgPtr msg = build_connect_message(kFamily, r);
  Parsed p = parse(msg.get());
  EXPECT_EQ(p.gnlh->cmd, NBD_CMD_CONNECT);
  EXPECT_EQ(message_command(msg.get()), NBD_CMD_CONNECT);
  ASSERT_NE(p.tb[NBD_ATTR_INDEX], nullptr);
  EXPECT_EQ(nla_get_u32(p.tb[NBD_ATTR_INDEX]), 3U);
  EXPECT_EQ(parse_index(msg.get()), 3U);
  for (int a : {NBD_ATTR_SIZE_BYTES, NBD_ATTR_BLOCK_SIZE_BYTES, NBD_ATTR_SERVER_FLAGS, NBD_ATTR_CLIENT_FLAGS,
                NBD_ATTR_TIMEOUT, NBD_ATTR_DEAD_CONN_TIMEOUT}) {
    ASSERT_NE(p.tb[a], nullptr) << a;
    EXPECT_EQ(nla_len(p.tb[a]), 8) << a;  // NLA_U64 in the kernel's policy
  }
  EXPECT_EQ(nla_get_u64(p.tb[NBD_ATTR_SIZE_BYTES]), 256ULL << 20);
  EXPECT_EQ(nla_get_u64(p.tb[NBD_ATTR_BLOCK_SIZE_BYTES]), 4096U);
  EXPECT_EQ(nla_get_u64(p.tb[NBD_ATTR_SERVER_FLAGS]), r.server_flags);
  EXPECT_EQ(nla_get_u64(p.tb[NBD_ATTR_CLIENT_FLAGS]), static_cast<std::uint64_t>(NBD_CFLAG_DISCONNECT_ON_CLOSE));
  EXPECT_EQ(nla_get_u64(p.tb[NBD_ATTR_TIMEOUT]), 5U);  // seconds
  EXPECT_EQ(nla_get_u64(p.tb[NBD_ATTR_DEAD_CONN_TIMEOUT]), 90U);
  ASSERT_NE(p.tb[NBD_ATTR_BACKEND_IDENTIFIER], nullptr);
  EXPECT_STREQ(nla_get_string(p.tb[NBD_ATTR_BACKEND_IDENTIFIER]), r.backend.c_str());
  ASSERT_NE(p.tb[NBD_ATTR_SOCKETS], nullptr);
  EXPECT_EQ(socket_fds(p.tb[NBD_ATTR_SOCKETS]), (std::vector<int>{7, 9}));
}

TEST(KernelNetlink, ConnectWithoutIndexLetsTheKernelChoose) {
  NbdConnectRequest r;
  r.size_bytes = 1 << 20;
  r.socket_fds = {4};
  NlMsgPtr msg = build_connect_message(kFamily, r);
  Parsed p = parse(msg.get());
  EXPECT_EQ(p.tb[NBD_ATTR_INDEX], nullptr);
  EXPECT_EQ(p.tb[NBD_ATTR_BACKEND_IDENTIFIER], nullptr);
  EXPECT_FALSE(parse_index(msg.get()).has_value());
  EXPECT_EQ(socket_fds(p.tb[NBD_ATTR_SOCKETS]), (std::vector<int>{4}));
}

TEST(KernelNetlink, ReconfigureNamesTheDeviceAndTheNewSockets) {
  NlMsgPtr msg = build_reconfigure_message(kFamily, 5, {11}, "nbd://h:1/d");
  Parsed p = parse(msg.get());
  EXPECT_EQ(p.gnlh->cmd, NBD_CMD_RECONFIGURE);
  EXPECT_EQ(nla_get_u32(p.tb[NBD_ATTR_INDEX]), 5U);
  // nbd_genl_reconfigure refuses a device with a backend unless the same one is named.
  ASSERT_NE(p.tb[NBD_ATTR_BACKEND_IDENTIFIER], nullptr);
  EXPECT_STREQ(nla_get_string(p.tb[NBD_ATTR_BACKEND_IDENTIFIER]), "nbd://h:1/d");
  EXPECT_EQ(socket_fds(p.tb[NBD_ATTR_SOCKETS]), (std::vector<int>{11}));
  EXPECT_EQ(p.tb[NBD_ATTR_SIZE_BYTES], nullptr);
}

TEST(KernelNetlink, DisconnectAndStatus) {
  NlMsgPtr d = build_disconnect_message(kFamily, 2);
  Parsed pd = parse(d.get());
  EXPECT_EQ(pd.gnlh->cmd, NBD_CMD_DISCONNECT);
  EXPECT_EQ(nla_get_u32(pd.tb[NBD_ATTR_INDEX]), 2U);
  NlMsgPtr all = build_status_message(kFamily, std::nullopt);
  Parsed pa = parse(all.get());
  EXPECT_EQ(pa.gnlh->cmd, NBD_CMD_STATUS);
  EXPECT_EQ(pa.tb[NBD_ATTR_INDEX], nullptr);
  NlMsgPtr one = build_status_message(kFamily, 1);
  EXPECT_EQ(parse_index(one.get()), 1U);
}

// A reply as nbd_genl_status builds it: NBD_ATTR_DEVICE_LIST { NBD_DEVICE_ITEM { INDEX, CONNECTED } ... }.
TEST(KernelNetlink, StatusReplyIsParsed) {
  NlMsgPtr msg(nlmsg_alloc());
  ASSERT_NE(genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, kFamily, 0, 0, NBD_CMD_STATUS, NBD_GENL_VERSION),
            nullptr);
  nlattr* list = nla_nest_start(msg.get(), NBD_ATTR_DEVICE_LIST);
  for (auto [index, connected] : {std::pair{0U, 1}, std::pair{1U, 0}, std::pair{7U, 1}}) {
    nlattr* item = nla_nest_start(msg.get(), NBD_DEVICE_ITEM);
    nla_put_u32(msg.get(), NBD_DEVICE_INDEX, index);
    nla_put_u8(msg.get(), NBD_DEVICE_CONNECTED, static_cast<std::uint8_t>(connected));
    nla_nest_end(msg.get(), item);
  }
  nla_nest_end(msg.get(), list);
  const auto devices = parse_status_reply(msg.get());
  ASSERT_EQ(devices.size(), 3U);
  EXPECT_EQ(devices[0].index, 0U);
  EXPECT_TRUE(devices[0].connected);
  EXPECT_EQ(devices[1].index, 1U);
  EXPECT_FALSE(devices[1].connected);
  EXPECT_EQ(devices[2].index, 7U);
  EXPECT_TRUE(devices[2].connected);
}

// The multicast nbd_mcast_index sends: NBD_CMD_LINK_DEAD with NBD_ATTR_INDEX.
TEST(KernelNetlink, LinkDeadNotificationIsParsed) {
  NlMsgPtr msg(nlmsg_alloc());
  ASSERT_NE(genlmsg_put(msg.get(), 0, 0, kFamily, 0, 0, NBD_CMD_LINK_DEAD, NBD_GENL_VERSION), nullptr);
  nla_put_u32(msg.get(), NBD_ATTR_INDEX, 4);
  EXPECT_EQ(message_command(msg.get()), NBD_CMD_LINK_DEAD);
  EXPECT_EQ(parse_index(msg.get()), 4U);
}

}  // namespace
}  // namespace blockd::client
