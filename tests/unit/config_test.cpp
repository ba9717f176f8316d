// parse_volume_spec(), parse_listen_address(), is_valid_volume_name() (server/config.h):
// valid forms, and for each invalid one an error message that says what is wrong.
#include "server/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace {

using blockd::server::is_valid_volume_name;
using blockd::server::ListenAddress;
using blockd::server::parse_listen_address;
using blockd::server::parse_volume_spec;
using blockd::server::VolumeSpec;
using testing::HasSubstr;

// ---------------------------------------------------------------- volume names

TEST(VolumeName, DnsLabelsAreValid) {
  for (const char* name : {"a", "0", "demo", "demo-1", "0abc", "a-b-c", "pg-data-01"}) {
    EXPECT_TRUE(is_valid_volume_name(name)) << name;
  }
  EXPECT_TRUE(is_valid_volume_name(std::string(63, 'a')));
}

TEST(VolumeName, EverythingElseIsInvalid) {
  for (const char* name : {"", "-a", "a-", "-", "A", "Demo", "a_b", "a.b", "a b", "a/b", "é", "a:b", "a,b"}) {
    EXPECT_FALSE(is_valid_volume_name(name)) << "'" << name << "'";
  }
  EXPECT_FALSE(is_valid_volume_name(std::string(64, 'a')));
}

// ---------------------------------------------------------------- volume specs

TEST(VolumeSpec, MinimalFileVolume) {
  std::string error;
  auto spec = parse_volume_spec("name=demo,path=/var/lib/blockd/demo.img", error);
  ASSERT_TRUE(spec) << error;
  EXPECT_EQ(spec->name, "demo");
  EXPECT_EQ(spec->backend, VolumeSpec::Backend::kFile);
  EXPECT_EQ(spec->path, "/var/lib/blockd/demo.img");
  EXPECT_FALSE(spec->size);
  EXPECT_FALSE(spec->read_only);
  EXPECT_EQ(spec->description, "");
}

TEST(VolumeSpec, FileVolumeWithEveryKey) {
  std::string error;
  auto spec = parse_volume_spec("name=pg-1,path=/data/pg.img,size=10GiB,read-only,description=Postgres primary",
                                error);
  ASSERT_TRUE(spec) << error;
  EXPECT_EQ(spec->name, "pg-1");
  EXPECT_EQ(spec->backend, VolumeSpec::Backend::kFile);
  EXPECT_EQ(spec->path, "/data/pg.img");
  ASSERT_TRUE(spec->size);
  EXPECT_EQ(*spec->size, 10ULL << 30);
  EXPECT_TRUE(spec->read_only);
  EXPECT_EQ(spec->description, "Postgres primary");
}

TEST(VolumeSpec, KeysInAnyOrderAndExplicitFileBackend) {
  std::string error;
  auto spec = parse_volume_spec("size=1G,path=/x.img,backend=file,name=x", error);
  ASSERT_TRUE(spec) << error;
  EXPECT_EQ(spec->name, "x");
  EXPECT_EQ(spec->backend, VolumeSpec::Backend::kFile);
  EXPECT_EQ(spec->path, "/x.img");
  EXPECT_EQ(spec->size, std::optional<std::uint64_t>(1ULL << 30));
}

TEST(VolumeSpec, MemoryVolume) {
  std::string error;
  auto spec = parse_volume_spec("name=mem,backend=memory,size=64MiB", error);
  ASSERT_TRUE(spec) << error;
  EXPECT_EQ(spec->name, "mem");
  EXPECT_EQ(spec->backend, VolumeSpec::Backend::kMemory);
  EXPECT_EQ(spec->path, "");
  EXPECT_EQ(spec->size, std::optional<std::uint64_t>(64ULL << 20));
  EXPECT_FALSE(spec->read_only);
}

TEST(VolumeSpec, ReadOnlySpellings) {
  std::string error;
  for (const char* flag : {"read-only", "ro", "read-only=true", "ro=true"}) {
    auto spec = parse_volume_spec(std::string("name=a,path=/a,") + flag, error);
    ASSERT_TRUE(spec) << flag << ": " << error;
    EXPECT_TRUE(spec->read_only) << flag;
  }
  auto spec = parse_volume_spec("name=a,path=/a,read-only=false", error);
  ASSERT_TRUE(spec) << error;
  EXPECT_FALSE(spec->read_only);
}

TEST(VolumeSpec, DescriptionMayContainEqualsSigns) {
  std::string error;
  auto spec = parse_volume_spec("name=a,path=/a,description=tier=gold", error);
  ASSERT_TRUE(spec) << error;
  EXPECT_EQ(spec->description, "tier=gold");
}

TEST(VolumeSpec, UnknownKeyIsNamed) {
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=a,path=/a,colour=blue", error));
  EXPECT_THAT(error, HasSubstr("unknown key 'colour'"));
  EXPECT_THAT(error, HasSubstr("name=a,path=/a,colour=blue"));
  EXPECT_THAT(error, HasSubstr("expected name=NAME,path=PATH"));
}

TEST(VolumeSpec, EmptyItemIsAnUnknownKey) {
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=a,path=/a,", error));
  EXPECT_THAT(error, HasSubstr("unknown key ''"));
}

TEST(VolumeSpec, BadSizeIsQuoted) {
  for (const char* size : {"abc", "", "1.5G", "-1", "10XB", "99999999999999999999"}) {
    std::string error;
    EXPECT_FALSE(parse_volume_spec(std::string("name=a,path=/a,size=") + size, error)) << size;
    EXPECT_THAT(error, HasSubstr(std::string("size '") + size + "' is not a size")) << size;
  }
}

TEST(VolumeSpec, ZeroSizeIsRejected) {
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=a,backend=memory,size=0", error));
  EXPECT_THAT(error, HasSubstr("size '0' is not a size"));
}

TEST(VolumeSpec, SizeMustBeAMultipleOf512) {
  for (const char* size : {"1000", "513", "1"}) {
    std::string error;
    EXPECT_FALSE(parse_volume_spec(std::string("name=a,path=/a,size=") + size, error)) << size;
    EXPECT_THAT(error, HasSubstr("size must be a multiple of 512 bytes")) << size;
  }
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=a,backend=memory,size=1000", error));
  EXPECT_THAT(error, HasSubstr("multiple of 512"));
}

TEST(VolumeSpec, UnknownBackendIsNamed) {
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=a,backend=nfs,size=1G", error));
  EXPECT_THAT(error, HasSubstr("backend 'nfs' is unknown; use file or memory"));
}

TEST(VolumeSpec, IoMode) {
  std::string error;
  auto spec = parse_volume_spec("name=a,path=/a", error);
  ASSERT_TRUE(spec) << error;
  EXPECT_EQ(spec->io, blockd::server::storage::IoMode::kBuffered);
  spec = parse_volume_spec("name=a,path=/a,io=direct", error);
  ASSERT_TRUE(spec) << error;
  EXPECT_EQ(spec->io, blockd::server::storage::IoMode::kDirect);
  spec = parse_volume_spec("name=a,path=/a,io=buffered", error);
  ASSERT_TRUE(spec) << error;
  EXPECT_EQ(spec->io, blockd::server::storage::IoMode::kBuffered);
}

TEST(VolumeSpec, IoModeErrors) {
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=a,path=/a,io=odirect", error));
  EXPECT_THAT(error, HasSubstr("io 'odirect' is unknown; use buffered or direct"));
  EXPECT_FALSE(parse_volume_spec("name=a,backend=memory,size=1MiB,io=direct", error));
  EXPECT_THAT(error, HasSubstr("io=direct is for files and block devices"));
}

TEST(VolumeSpec, ReadOnlyTakesNoOtherValue) {
  for (const char* flag : {"read-only=yes", "ro=1", "read-only=TRUE"}) {
    std::string error;
    EXPECT_FALSE(parse_volume_spec(std::string("name=a,path=/a,") + flag, error)) << flag;
    EXPECT_THAT(error, HasSubstr("read-only takes no value, or true/false")) << flag;
  }
}

TEST(VolumeSpec, MissingNameIsExplained) {
  std::string error;
  EXPECT_FALSE(parse_volume_spec("path=/a", error));
  EXPECT_THAT(error, HasSubstr("name ''"));
  EXPECT_THAT(error, HasSubstr("must be 1-63 lowercase letters, digits or '-'"));
}

TEST(VolumeSpec, InvalidNameIsQuotedAndExplained) {
  for (const char* name : {"Demo", "-a", "a_b", "a-"}) {
    std::string error;
    EXPECT_FALSE(parse_volume_spec(std::string("name=") + name + ",path=/a", error)) << name;
    EXPECT_THAT(error, HasSubstr(std::string("name '") + name + "'")) << name;
    EXPECT_THAT(error, HasSubstr("starting and ending with a letter or digit")) << name;
  }
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=" + std::string(64, 'a') + ",path=/a", error));
  EXPECT_THAT(error, HasSubstr("must be 1-63"));
}

TEST(VolumeSpec, FileVolumeNeedsPath) {
  for (const char* text : {"name=a", "name=a,size=1G", "name=a,path=", "name=a,backend=file,size=1G"}) {
    std::string error;
    EXPECT_FALSE(parse_volume_spec(text, error)) << text;
    EXPECT_THAT(error, HasSubstr("path= is required")) << text;
  }
}

TEST(VolumeSpec, MemoryVolumeNeedsSize) {
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=a,backend=memory", error));
  EXPECT_THAT(error, HasSubstr("a memory volume needs size="));
}

TEST(VolumeSpec, ErrorQuotesTheWholeSpec) {
  std::string error;
  EXPECT_FALSE(parse_volume_spec("name=a,backend=memory", error));
  EXPECT_THAT(error, HasSubstr("volume 'name=a,backend=memory'"));
}

// ---------------------------------------------------------------- listen addresses

TEST(ListenAddress, Ipv4WithPort) {
  std::string error;
  auto a = parse_listen_address("127.0.0.1:10809", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->kind, ListenAddress::Kind::kTcp);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 10809);
  EXPECT_EQ(to_string(*a), "127.0.0.1:10809");
}

TEST(ListenAddress, BracketedIpv6WithPort) {
  std::string error;
  auto a = parse_listen_address("[::1]:10809", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->kind, ListenAddress::Kind::kTcp);
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 10809);
  EXPECT_EQ(to_string(*a), "[::1]:10809");

  a = parse_listen_address("[fe80::1:2]:80", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->host, "fe80::1:2");
  EXPECT_EQ(a->port, 80);
}

TEST(ListenAddress, EmptyHostMeansAllAddresses) {
  std::string error;
  auto a = parse_listen_address(":10809", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->host, "::");
  EXPECT_EQ(a->port, 10809);
  a = parse_listen_address("[]:1", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->host, "::");
  EXPECT_EQ(a->port, 1);
}

TEST(ListenAddress, PortRange) {
  std::string error;
  auto a = parse_listen_address("0.0.0.0:0", error);  // 0 picks a free port
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->port, 0);
  a = parse_listen_address("0.0.0.0:65535", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->port, 65535);
}

TEST(ListenAddress, UnixSocket) {
  std::string error;
  auto a = parse_listen_address("unix:/run/blockd/nbd.sock", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->kind, ListenAddress::Kind::kUnix);
  EXPECT_EQ(a->path, "/run/blockd/nbd.sock");
  EXPECT_EQ(to_string(*a), "unix:/run/blockd/nbd.sock");

  const std::string longest(107, 'p');  // sun_path holds 108 bytes with the NUL
  a = parse_listen_address("unix:" + longest, error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->path, longest);
}

TEST(ListenAddress, UnixPathEmptyOrTooLong) {
  for (const std::string& text : {std::string("unix:"), "unix:" + std::string(108, 'p')}) {
    std::string error;
    EXPECT_FALSE(parse_listen_address(text, error)) << text;
    EXPECT_THAT(error, HasSubstr("a Unix socket path must be 1 to 107 characters")) << text;
  }
}

TEST(ListenAddress, MissingPort) {
  for (const char* text : {"127.0.0.1", "localhost", ""}) {
    std::string error;
    EXPECT_FALSE(parse_listen_address(text, error)) << text;
    EXPECT_THAT(error, HasSubstr("has no port; write ADDRESS:PORT")) << text;
  }
}

TEST(ListenAddress, BracketedIpv6WithoutPortSaysThePortIsMissing) {
  // "[::1]" has colons, but none of them separates a port: the message must say the
  // port is missing, not that some fragment of the address is not an address.
  std::string error;
  EXPECT_FALSE(parse_listen_address("[::1]", error));
  EXPECT_THAT(error, HasSubstr("no port"));
}

TEST(ListenAddress, HostNamesAreNotResolved) {
  for (const char* text : {"localhost:10809", "example.com:80", "256.1.1.1:80", "[::g]:80", "[::1:80"}) {
    std::string error;
    EXPECT_FALSE(parse_listen_address(text, error)) << text;
    EXPECT_THAT(error, HasSubstr("is not an IPv4 or IPv6 address")) << text;
  }
  std::string error;
  EXPECT_FALSE(parse_listen_address("localhost:10809", error));
  EXPECT_THAT(error, HasSubstr("'localhost' is not an IPv4 or IPv6 address (host names are not resolved)"));
}

TEST(ListenAddress, BadPort) {
  for (const char* text : {"127.0.0.1:", "127.0.0.1:http", "127.0.0.1:65536", "127.0.0.1:99999999999",
                           "127.0.0.1:10809x", "127.0.0.1:-1", "[::1]:1.5"}) {
    std::string error;
    EXPECT_FALSE(parse_listen_address(text, error)) << text;
    EXPECT_THAT(error, HasSubstr("port must be a number from 0 to 65535")) << text;
  }
}

}  // namespace
