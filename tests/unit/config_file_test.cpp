// The TOML config file (server/config_file.h): every setting, defaults, and every
// invalid case, each with the file, line and column in the message and a way to fix it.
#include "server/config_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "test_support.h"

namespace {

using blockd::server::FileConfig;
using blockd::server::ListenAddress;
using blockd::server::parse_config_file;
using blockd::server::parse_config_text;
using blockd::server::storage::Allocation;
using blockd::server::storage::IoMode;
using testing::HasSubstr;
using testing::StartsWith;

const std::string kFile = "/etc/blockd/blockd.toml";

FileConfig parse_ok(const std::string& text) {
  std::string error;
  auto config = parse_config_text(text, kFile, error);
  EXPECT_TRUE(config) << error;
  EXPECT_EQ(error, "");
  return config ? *config : FileConfig{};
}

std::string parse_error(const std::string& text) {
  std::string error;
  auto config = parse_config_text(text, kFile, error);
  EXPECT_FALSE(config) << "accepted:\n" << text;
  return error;
}

// The error starts with "FILE:LINE:" (and the column, when given) and contains `text`.
void expect_error(const std::string& toml, const std::string& where, const std::string& text) {
  const std::string error = parse_error(toml);
  EXPECT_THAT(error, StartsWith(kFile + ":" + where + ":")) << toml;
  EXPECT_THAT(error, HasSubstr(text)) << toml;
}

// ---------------------------------------------------------------- valid files

TEST(ConfigFile, EmptyFileGivesTheDefaults) {
  const FileConfig config = parse_ok("");
  EXPECT_TRUE(config.listen.empty());
  EXPECT_EQ(config.state_dir, "/var/lib/blockd");
  EXPECT_EQ(config.control_socket, "/run/blockd/control.sock");
  EXPECT_FALSE(config.workers);
  EXPECT_FALSE(config.busy_poll);
  EXPECT_FALSE(config.log_level);
  EXPECT_FALSE(config.handshake_timeout);
  EXPECT_FALSE(config.shutdown_timeout);
  EXPECT_FALSE(config.max_connections);
  EXPECT_TRUE(config.storage_classes.empty());
}

TEST(ConfigFile, EverySetting) {
  const FileConfig config = parse_ok(R"(# blockd.toml
listen = ["127.0.0.1:10809", "[::1]:10810", "unix:/run/blockd/nbd.sock"]
state_dir = "/srv/blockd/state/"
control_socket = "/run/blockd/ctl.sock"
workers = 4
busy_poll_us = 50
log_level = "debug"
handshake_timeout = 5
shutdown_timeout = 2.5
max_connections = 64

[[storage_class]]
name = "fast"
directory = "/srv/nvme/blockd"
allocation = "preallocate"
io = "direct"

[[storage_class]]
name = "bulk"
directory = "/srv/hdd/blockd/"
allocation = "sparse"
io = "buffered"
default = true
)");
  ASSERT_EQ(config.listen.size(), 3U);
  EXPECT_EQ(config.listen[0].host, "127.0.0.1");
  EXPECT_EQ(config.listen[0].port, 10809);
  EXPECT_EQ(config.listen[1].host, "::1");
  EXPECT_EQ(config.listen[1].port, 10810);
  EXPECT_EQ(config.listen[2].kind, ListenAddress::Kind::kUnix);
  EXPECT_EQ(config.listen[2].path, "/run/blockd/nbd.sock");
  EXPECT_EQ(config.state_dir, "/srv/blockd/state");
  EXPECT_EQ(config.control_socket, "/run/blockd/ctl.sock");
  EXPECT_EQ(config.workers, 4U);
  EXPECT_EQ(config.busy_poll, std::chrono::microseconds(50));
  EXPECT_EQ(config.log_level, spdlog::level::debug);
  EXPECT_EQ(config.handshake_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(config.shutdown_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(config.max_connections, 64U);
  ASSERT_EQ(config.storage_classes.size(), 2U);
  const auto& fast = config.storage_classes[0];
  EXPECT_EQ(fast.name, "fast");
  EXPECT_EQ(fast.directory, "/srv/nvme/blockd");
  EXPECT_EQ(fast.allocation, Allocation::kPreallocate);
  EXPECT_EQ(fast.io, IoMode::kDirect);
  EXPECT_FALSE(fast.is_default);
  const auto& bulk = config.storage_classes[1];
  EXPECT_EQ(bulk.name, "bulk");
  EXPECT_EQ(bulk.directory, "/srv/hdd/blockd");
  EXPECT_EQ(bulk.allocation, Allocation::kSparse);
  EXPECT_EQ(bulk.io, IoMode::kBuffered);
  EXPECT_TRUE(bulk.is_default);
}

TEST(ConfigFile, ClassDefaultsAndASingleClassIsTheDefault) {
  const FileConfig config = parse_ok("[[storage_class]]\nname = \"only\"\ndirectory = \"/srv/only\"\n");
  ASSERT_EQ(config.storage_classes.size(), 1U);
  EXPECT_EQ(config.storage_classes[0].allocation, Allocation::kSparse);
  EXPECT_EQ(config.storage_classes[0].io, IoMode::kBuffered);
  EXPECT_TRUE(config.storage_classes[0].is_default);
}

TEST(ConfigFile, InlineTablesAreStorageClassesToo) {
  const FileConfig config = parse_ok(
      "storage_class = [{ name = \"a\", directory = \"/a\" }, { name = \"b\", directory = \"/b\", default = true }]\n");
  ASSERT_EQ(config.storage_classes.size(), 2U);
  EXPECT_TRUE(config.storage_classes[1].is_default);
}

TEST(ConfigFile, LimitsAreInclusive) {
  EXPECT_EQ(parse_ok("workers = 0").workers, 0U);
  EXPECT_EQ(parse_ok("workers = 256").workers, 256U);
  EXPECT_EQ(parse_ok("busy_poll_us = 0").busy_poll, std::chrono::microseconds(0));
  EXPECT_EQ(parse_ok("busy_poll_us = 10000").busy_poll, std::chrono::microseconds(10'000));
  EXPECT_EQ(parse_ok("max_connections = 1").max_connections, 1U);
  EXPECT_EQ(parse_ok("max_connections = 1000000").max_connections, 1000000U);
  EXPECT_EQ(parse_ok("handshake_timeout = 0.1").handshake_timeout, std::chrono::milliseconds(100));
  EXPECT_EQ(parse_ok("shutdown_timeout = 3600").shutdown_timeout, std::chrono::milliseconds(3'600'000));
  EXPECT_EQ(parse_ok("listen = []").listen.size(), 0U);
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    EXPECT_TRUE(parse_ok(std::string("log_level = \"") + level + "\"").log_level) << level;
}

// ---------------------------------------------------------------- invalid: TOML itself

TEST(ConfigFileErrors, SyntaxErrorsCarryTheLine) {
  expect_error("workers = 4\nlog_level = \n", "2", "not valid TOML");
  expect_error("workers = 4\n\nworkers = 5\n", "3", "not valid TOML");
  expect_error("[[storage_class]\n", "1", "not valid TOML");
  expect_error("state_dir = \"/unterminated\n", "1", "not valid TOML");
}

// ---------------------------------------------------------------- invalid: keys

TEST(ConfigFileErrors, UnknownKeysAreNamedWithASuggestion) {
  expect_error("workers = 2\nstate_dirr = \"/x\"\n", "2:1",
               "unknown key 'state_dirr' at the top level; did you mean 'state_dir'? The keys are listen, state_dir");
  expect_error("colour = \"blue\"\n", "1:1", "unknown key 'colour' at the top level; the keys are listen");
  expect_error("colour = \"blue\"\n", "1:1", "and storage_class tables ([[storage_class]])");
  expect_error("\n[server]\nworkers = 2\n", "2:2", "unknown key 'server' at the top level");
  expect_error("[[storage_class]]\nname = \"a\"\ndirectroy = \"/a\"\n", "3:1",
               "unknown key 'directroy' in [[storage_class]]; did you mean 'directory'? The keys are name, "
               "directory, allocation, io, default");
  expect_error("[[storage_class]]\nname = \"a\"\ndirectory = \"/a\"\nsize = 3\n", "4:1",
               "unknown key 'size' in [[storage_class]]");
}

// ---------------------------------------------------------------- invalid: types and values

TEST(ConfigFileErrors, Listen) {
  expect_error("listen = \"127.0.0.1:10809\"\n", "1:10",
               "listen must be an array of addresses, not a string; e.g. listen = [\"[::]:10809\"");
  expect_error("listen = [\n  \"127.0.0.1:1\",\n  10809,\n]\n", "3:3",
               "each listen address must be a string, not an integer");
  expect_error("listen = [\"127.0.0.1\"]\n", "1:11", "listen address '127.0.0.1' has no port");
  expect_error("listen = [\"localhost:10809\"]\n", "1:11", "host names are not resolved");
  expect_error("listen = [\"127.0.0.1:99999\"]\n", "1:11", "port must be a number from 0 to 65535");
}

TEST(ConfigFileErrors, Paths) {
  expect_error("state_dir = \"var/lib/blockd\"\n", "1:13",
               "state_dir 'var/lib/blockd' must be an absolute path (starting with '/'), e.g. \"/var/lib/blockd\"");
  expect_error("state_dir = \"\"\n", "1:13", "state_dir '' must be an absolute path");
  expect_error("state_dir = 1979-05-27\n", "1:13", "state_dir must be a string, not a date");
  expect_error("state_dir = [\"/a\"]\n", "1:13", "state_dir must be a string, not an array");
  expect_error("control_socket = \"run/ctl.sock\"\n", "1:18", "control_socket 'run/ctl.sock' must be an absolute path");
  expect_error("control_socket = \"/" + std::string(120, 'x') + "\"\n", "1:18",
               "control_socket is 121 bytes long; a Unix socket path must be at most 107");
  expect_error("state_dir = \"/a\\u0000b\"\n", "1:13", "state_dir must not contain a NUL character");
}

TEST(ConfigFileErrors, Numbers) {
  expect_error("workers = -1\n", "1:11", "workers is -1; it must be a whole number from 0 to 256 (0: one per core)");
  expect_error("workers = 257\n", "1:11", "workers is 257; it must be a whole number from 0 to 256");
  expect_error("workers = \"4\"\n", "1:11", "workers must be a whole number from 0 to 256 (0: one per core), not a string");
  expect_error("workers = 4.0\n", "1:11", "not a float");
  expect_error("busy_poll_us = 10001\n", "1:16",
               "busy_poll_us is 10001; it must be a whole number from 0 to 10000 (microseconds; 0: off)");
  expect_error("busy_poll_us = 0.5\n", "1:16", "not a float");
  expect_error("max_connections = 0\n", "1:19", "max_connections is 0; it must be a whole number from 1 to 1000000");
  expect_error("max_connections = true\n", "1:19", "not a boolean");
  expect_error("handshake_timeout = 0\n", "1:21", "handshake_timeout must be from 0.1 to 3600 seconds");
  expect_error("handshake_timeout = -5\n", "1:21", "from 0.1 to 3600 seconds");
  expect_error("handshake_timeout = 3601\n", "1:21", "from 0.1 to 3600 seconds");
  expect_error("handshake_timeout = nan\n", "1:21", "from 0.1 to 3600 seconds");
  expect_error("shutdown_timeout = inf\n", "1:20", "from 0.1 to 3600 seconds");
  expect_error("shutdown_timeout = \"10s\"\n", "1:20",
               "shutdown_timeout must be a number of seconds, not a string; e.g. shutdown_timeout = 30");
}

TEST(ConfigFileErrors, LogLevel) {
  expect_error("log_level = \"verbose\"\n", "1:13",
               "log_level 'verbose' is not one of trace, debug, info, warn, error, critical, off");
  expect_error("log_level = \"INFO\"\n", "1:13", "log_level 'INFO' is not one of");
  expect_error("log_level = 3\n", "1:13", "log_level must be a string, not an integer");
}

// ---------------------------------------------------------------- invalid: storage classes

TEST(ConfigFileErrors, StorageClassShape) {
  expect_error("[storage_class]\nname = \"a\"\n", "1:1",
               "storage classes are an array of tables: write each one under its own [[storage_class]] header "
               "(double brackets), not [storage_class]");
  expect_error("storage_class = \"fast\"\n", "1:17", "not storage_class = a string");
  expect_error("storage_class = [1, 2]\n", "1:17", "storage classes are an array of tables");
}

TEST(ConfigFileErrors, StorageClassFields) {
  expect_error("[[storage_class]]\ndirectory = \"/a\"\n", "1:1",
               "this [[storage_class]] has no name; add e.g. name = \"fast\"");
  expect_error("[[storage_class]]\nname = \"fast\"\n", "1:1",
               "storage class 'fast' has no directory; add e.g. directory = \"/srv/blockd/fast\"");
  expect_error("[[storage_class]]\nname = \"Fast_1\"\ndirectory = \"/a\"\n", "2:8",
               "storage class name 'Fast_1' must be 1-63 lowercase letters, digits or '-'");
  expect_error("[[storage_class]]\nname = 7\ndirectory = \"/a\"\n", "2:8", "name must be a string, not an integer");
  expect_error("[[storage_class]]\nname = \"a\"\ndirectory = \"srv/a\"\n", "3:13",
               "directory 'srv/a' must be an absolute path");
  expect_error("[[storage_class]]\nname = \"a\"\ndirectory = \"/a\"\nallocation = \"thick\"\n", "4:14",
               "allocation 'thick' is unknown; use \"sparse\" (space taken as written) or \"preallocate\"");
  expect_error("[[storage_class]]\nname = \"a\"\ndirectory = \"/a\"\nio = \"o_direct\"\n", "4:6",
               "io 'o_direct' is unknown; use \"buffered\" (page cache) or \"direct\" (O_DIRECT)");
  expect_error("[[storage_class]]\nname = \"a\"\ndirectory = \"/a\"\ndefault = \"yes\"\n", "4:11",
               "default must be true or false, not a string; e.g. default = true");
}

TEST(ConfigFileErrors, StorageClassSet) {
  const std::string a = "[[storage_class]]\nname = \"a\"\ndirectory = \"/a\"\n";  // 3 lines
  expect_error(a + "\n[[storage_class]]\nname = \"a\"\ndirectory = \"/b\"\n", "5:1",
               "storage class 'a' is already declared at line 1; give each class its own name");
  expect_error(a + "default = true\n\n[[storage_class]]\nname = \"b\"\ndirectory = \"/b\"\ndefault = true\n", "9:11",
               "storage classes 'a' (line 1) and 'b' are both the default; keep `default = true` on one of them only");
  expect_error(a + "\n[[storage_class]]\nname = \"b\"\ndirectory = \"/b\"\n", "1:1",
               "no storage class is the default among 'a' (line 1), 'b' (line 5); add `default = true` to the one "
               "a volume gets when it names no class");
  // One class is the default even if it says otherwise: a create naming no class needs one.
  EXPECT_TRUE(parse_ok(a + "default = false\n").storage_classes[0].is_default);
}

// ---------------------------------------------------------------- files

TEST(ConfigFileRead, ErrorsNameTheFile) {
  blockd::test::TempFile file;
  std::ofstream(file.path()) << "workers = 2\nlog_level = \"loud\"\n";
  std::string error;
  EXPECT_FALSE(parse_config_file(file.path(), error));
  EXPECT_THAT(error, StartsWith(file.path() + ":2:13: log_level 'loud' is not one of"));

  std::ofstream(file.path()) << "workers = 2\n";
  auto config = parse_config_file(file.path(), error);
  ASSERT_TRUE(config) << error;
  EXPECT_EQ(config->workers, 2U);
}

TEST(ConfigFileRead, MissingOrUnreadableFile) {
  std::string error;
  EXPECT_FALSE(parse_config_file("/nonexistent/blockd.toml", error));
  EXPECT_EQ(error,
            "/nonexistent/blockd.toml: cannot read the config file: No such file or directory (give another one "
            "with --config PATH)");
  EXPECT_FALSE(parse_config_file("/tmp", error));
  EXPECT_EQ(error, "/tmp: cannot read the config file: Is a directory");
}

}  // namespace

namespace {

// The sample shipped in server/examples/ must stay a valid config: it is what operators
// copy. BLOCKD_SOURCE_DIR is set by tests/unit/CMakeLists.txt.
TEST(ConfigFile, TheShippedExampleParses) {
  const std::string path = std::string(BLOCKD_SOURCE_DIR) + "/server/examples/blockd.toml";
  std::string error;
  const auto config = blockd::server::parse_config_file(path, error);
  ASSERT_TRUE(config) << error;
  ASSERT_EQ(config->storage_classes.size(), 1U);
  EXPECT_EQ(config->storage_classes[0].name, "standard");
  EXPECT_TRUE(config->storage_classes[0].is_default);
  EXPECT_EQ(config->state_dir, "/var/lib/blockd");
  EXPECT_FALSE(config->control_listen);
}

TEST(ConfigFile, ControlListenIsTcpOnly) {
  std::string error;
  auto config = blockd::server::parse_config_text("control_listen = \"127.0.0.1:10810\"\n", "t.toml", error);
  ASSERT_TRUE(config) << error;
  ASSERT_TRUE(config->control_listen);
  EXPECT_EQ(config->control_listen->port, 10810);
  EXPECT_FALSE(blockd::server::parse_config_text("control_listen = \"unix:/x\"\n", "t.toml", error));
  EXPECT_THAT(error, HasSubstr("t.toml:1:18: control_listen takes a TCP address"));
}

}  // namespace
