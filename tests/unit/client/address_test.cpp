// ServerAddress (control API) and NbdAddress (data plane) parsing.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "client/nbd_address.h"
#include "client/server_address.h"

namespace blockd::client {
namespace {

ServerAddress parse_ok(const std::string& text) {
  std::string error;
  auto a = ServerAddress::parse(text, error);
  EXPECT_TRUE(a.has_value()) << text << ": " << error;
  return a.value_or(ServerAddress{});
}

std::string parse_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(ServerAddress::parse(text, error).has_value()) << text;
  return error;
}

TEST(ServerAddress, UnixForms) {
  auto a = parse_ok("unix:///run/blockd/control.sock");
  EXPECT_EQ(a.kind(), ServerAddress::Kind::kUnix);
  EXPECT_EQ(a.path(), "/run/blockd/control.sock");
  EXPECT_EQ(a.to_string(), "unix:///run/blockd/control.sock");
  EXPECT_EQ(parse_ok("unix:/tmp/x.sock").path(), "/tmp/x.sock");
  EXPECT_EQ(parse_ok("unix:rel/x.sock").path(), "rel/x.sock");
  EXPECT_EQ(parse_ok("unix:rel/x.sock").to_string(), "unix:rel/x.sock");
}

TEST(ServerAddress, HttpForms) {
  auto a = parse_ok("http://127.0.0.1:8080");
  EXPECT_EQ(a.kind(), ServerAddress::Kind::kTcp);
  EXPECT_EQ(a.host(), "127.0.0.1");
  EXPECT_EQ(a.port(), 8080);
  EXPECT_EQ(parse_ok("http://localhost").port(), 80);
  EXPECT_EQ(parse_ok("http://localhost:9/").port(), 9);
  auto v6 = parse_ok("http://[::1]:8080");
  EXPECT_EQ(v6.host(), "::1");
  EXPECT_EQ(v6.to_string(), "http://[::1]:8080");
}

TEST(ServerAddress, Rejects) {
  EXPECT_NE(parse_error("unix:").find("names no socket"), std::string::npos);
  EXPECT_NE(parse_error("unix://").find("names no socket"), std::string::npos);
  EXPECT_NE(parse_error("https://x:1").find("unix:///PATH"), std::string::npos);
  EXPECT_NE(parse_error("/run/blockd/control.sock").find("not a server address"), std::string::npos);
  EXPECT_NE(parse_error("http://x:0").find("bad port"), std::string::npos);
  EXPECT_NE(parse_error("http://x:65536").find("bad port"), std::string::npos);
  EXPECT_NE(parse_error("http://x:12ab").find("bad port"), std::string::npos);
  EXPECT_NE(parse_error("http://::1:80").find("brackets"), std::string::npos);
  EXPECT_NE(parse_error("http://[::1:80").find("unclosed"), std::string::npos);
  EXPECT_NE(parse_error("http://x:80/v1").find("without a path"), std::string::npos);
  EXPECT_NE(parse_error("http://:80").find("no host"), std::string::npos);
  EXPECT_NE(parse_error("unix:/" + std::string(200, 'a')).find("107"), std::string::npos);
}

TEST(ServerAddress, ResolveOrder) {
  std::string error;
  ::unsetenv("BLOCKD_SERVER");
  EXPECT_EQ(ServerAddress::resolve(std::nullopt, error)->path(), "/run/blockd/control.sock");
  ::setenv("BLOCKD_SERVER", "unix:/tmp/env.sock", 1);
  EXPECT_EQ(ServerAddress::resolve(std::nullopt, error)->path(), "/tmp/env.sock");
  EXPECT_EQ(ServerAddress::resolve(std::string("unix:/tmp/flag.sock"), error)->path(), "/tmp/flag.sock");
  ::setenv("BLOCKD_SERVER", "bogus", 1);
  EXPECT_FALSE(ServerAddress::resolve(std::nullopt, error).has_value());
  EXPECT_EQ(error.rfind("BLOCKD_SERVER: ", 0), 0u) << error;
  ::unsetenv("BLOCKD_SERVER");
}

NbdAddress uri_ok(const std::string& text) {
  std::string error;
  auto a = NbdAddress::parse_uri(text, error);
  EXPECT_TRUE(a.has_value()) << text << ": " << error;
  return a.value_or(NbdAddress{});
}

TEST(NbdAddress, Uris) {
  auto a = uri_ok("nbd://127.0.0.1:10810/db");
  EXPECT_EQ(a.kind(), NbdAddress::Kind::kTcp);
  EXPECT_EQ(a.host(), "127.0.0.1");
  EXPECT_EQ(a.port(), 10810);
  EXPECT_EQ(a.export_name(), "db");
  EXPECT_EQ(uri_ok("nbd://localhost").port(), kNbdDefaultPort);
  EXPECT_EQ(uri_ok("nbd://localhost").export_name(), "");
  EXPECT_EQ(uri_ok("nbd://[::1]/a%20b").export_name(), "a b");
  auto u = uri_ok("nbd+unix:///db?socket=/run/x.sock");
  EXPECT_EQ(u.kind(), NbdAddress::Kind::kUnix);
  EXPECT_EQ(u.path(), "/run/x.sock");
  EXPECT_EQ(u.export_name(), "db");
  EXPECT_EQ(uri_ok("nbd+unix:///?socket=/s").export_name(), "");
  EXPECT_EQ(u.to_uri(), "nbd+unix:///db?socket=/run/x.sock");
  EXPECT_EQ(a.to_uri(), "nbd://127.0.0.1:10810/db");
}

TEST(NbdAddress, BadUris) {
  std::string error;
  EXPECT_FALSE(NbdAddress::parse_uri("nbd+unix:///db", error));
  EXPECT_NE(error.find("socket=PATH"), std::string::npos);
  EXPECT_FALSE(NbdAddress::parse_uri("nbd+unix://host/db?socket=/s", error));
  EXPECT_FALSE(NbdAddress::parse_uri("nbds://x", error));
  EXPECT_FALSE(NbdAddress::parse_uri("nbd://x:99999", error));
  EXPECT_FALSE(NbdAddress::parse_uri("nbd://x/%zz", error));
  EXPECT_FALSE(NbdAddress::parse_uri("nbd://x/%4", error));
}

TEST(NbdAddress, FromListen) {
  std::string error;
  EXPECT_EQ(NbdAddress::from_listen("0.0.0.0:10809", error)->host(), "127.0.0.1");
  EXPECT_EQ(NbdAddress::from_listen("[::]:10809", error)->host(), "::1");
  EXPECT_EQ(NbdAddress::from_listen("[::1]:7", error)->port(), 7);
  EXPECT_EQ(NbdAddress::from_listen("10.0.0.1:7", error)->host(), "10.0.0.1");
  auto u = NbdAddress::from_listen("unix:/run/blockd/nbd.sock", error);
  EXPECT_EQ(u->kind(), NbdAddress::Kind::kUnix);
  EXPECT_EQ(u->path(), "/run/blockd/nbd.sock");
  EXPECT_FALSE(NbdAddress::from_listen("unix:", error));
}

}  // namespace
}  // namespace blockd::client
