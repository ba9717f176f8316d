#include "server/config_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "common/logging.h"
#include "common/unique_fd.h"

namespace blockd::server {

namespace {

constexpr std::size_t kMaxConfigBytes = 1 << 20;
constexpr std::array<std::string_view, 12> kTopLevelKeys = {
    "listen",    "state_dir",         "control_socket",   "control_listen",  "metrics_listen", "workers",
    "log_level", "handshake_timeout", "shutdown_timeout", "max_connections", "lease_grace",    "busy_poll_us"};
constexpr std::string_view kStorageClassKey = "storage_class";
constexpr std::array<std::string_view, 5> kClassKeys = {"name", "directory", "allocation", "io", "default"};

// Thrown inside the parser, caught at its edge and turned into the `error` text.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Parser {
 public:
  explicit Parser(std::string source_name) : source_name_(std::move(source_name)) {}

  FileConfig parse(const toml::table& root) {
    FileConfig config;
    for (auto&& [key, node] : root) {
      const std::string_view name = key.str();
      if (name == "listen") {
        config.listen = parse_listen(node);
      } else if (name == "state_dir") {
        config.state_dir = parse_absolute_path(node, "state_dir", "/var/lib/blockd");
      } else if (name == "control_socket") {
        config.control_socket = parse_absolute_path(node, "control_socket", "/run/blockd/control.sock");
        if (config.control_socket.size() >= 108)
          fail(node, "control_socket is " + std::to_string(config.control_socket.size()) +
                         " bytes long; a Unix socket path must be at most 107, choose a shorter one");
      } else if (name == "control_listen") {
        config.control_listen = parse_tcp_address(node, "control_listen");
      } else if (name == "metrics_listen") {
        config.metrics_listen = parse_tcp_address(node, "metrics_listen");
      } else if (name == "workers") {
        config.workers = static_cast<unsigned>(parse_integer(node, "workers", 0, 256, "(0: one per core)"));
      } else if (name == "busy_poll_us") {
        config.busy_poll = std::chrono::microseconds(
            parse_integer(node, "busy_poll_us", 0, kMaxBusyPollMicroseconds, "(microseconds; 0: off)"));
      } else if (name == "log_level") {
        config.log_level = parse_log_level(node);
      } else if (name == "handshake_timeout") {
        config.handshake_timeout = parse_seconds(node, "handshake_timeout");
      } else if (name == "shutdown_timeout") {
        config.shutdown_timeout = parse_seconds(node, "shutdown_timeout");
      } else if (name == "max_connections") {
        config.max_connections =
            static_cast<unsigned>(parse_integer(node, "max_connections", 1, 1'000'000, ""));
      } else if (name == "lease_grace") {
        config.lease_grace = parse_seconds(node, "lease_grace");
      } else if (name == kStorageClassKey) {
        config.storage_classes = parse_storage_classes(node);
      } else {
        unknown_key(key, "at the top level", kTopLevelKeys, "storage_class tables ([[storage_class]])");
      }
    }
    return config;
  }

  [[noreturn]] void fail(const toml::source_region& where, const std::string& what) const {
    std::string out = source_name_;
    if (where.begin.line > 0)
      out += ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
    throw ConfigError(out + ": " + what);
  }
  [[noreturn]] void fail(const toml::node& node, const std::string& what) const { fail(node.source(), what); }

 private:
  static std::string type_name(const toml::node& node) {
    switch (node.type()) {
      case toml::node_type::table: return "a table";
      case toml::node_type::array: return "an array";
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::date: return "a date";
      case toml::node_type::time: return "a time";
      case toml::node_type::date_time: return "a date-time";
      default: return "nothing";
    }
  }

  [[noreturn]] void wrong_type(const toml::node& node, std::string_view key, std::string_view expected,
                               std::string_view example) const {
    fail(node, std::string(key) + " must be " + std::string(expected) + ", not " + type_name(node) +
                   "; e.g. " + std::string(example));
  }

  static std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
      std::size_t diagonal = row[0];
      row[0] = i;
      for (std::size_t j = 1; j <= b.size(); ++j) {
        const std::size_t above = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diagonal = above;
      }
    }
    return row[b.size()];
  }

  template <std::size_t N>
  [[noreturn]] void unknown_key(const toml::key& key, std::string_view where,
                                const std::array<std::string_view, N>& known, std::string_view also) const {
    std::string message = "unknown key '" + std::string(key.str()) + "' " + std::string(where) + "; ";
    bool suggested = false;
    for (std::string_view candidate : known) {
      if (edit_distance(key.str(), candidate) <= 2) {
        message += "did you mean '" + std::string(candidate) + "'? ";
        suggested = true;
        break;
      }
    }
    message += suggested ? "The keys are" : "the keys are";
    for (std::size_t i = 0; i < N; ++i) message += (i ? ", " : " ") + std::string(known[i]);
    if (!also.empty()) message += ", and " + std::string(also);
    fail(key.source(), message);
  }

  std::string parse_string(const toml::node& node, std::string_view key, std::string_view example) const {
    const auto* value = node.as_string();
    if (!value) wrong_type(node, key, "a string", example);
    if (value->get().find('\0') != std::string::npos) fail(node, std::string(key) + " must not contain a NUL character");
    return value->get();
  }

  std::string parse_absolute_path(const toml::node& node, std::string_view key, std::string_view example) const {
    const std::string path = parse_string(node, key, std::string(key) + " = \"" + std::string(example) + "\"");
    if (path.empty() || path.front() != '/')
      fail(node, std::string(key) + " '" + path + "' must be an absolute path (starting with '/'), e.g. \"" +
                     std::string(example) + "\"");
    return storage::normalize_directory(path);
  }

  std::int64_t parse_integer(const toml::node& node, std::string_view key, std::int64_t min, std::int64_t max,
                             std::string_view note) const {
    const std::string range = "a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
                              (note.empty() ? "" : " " + std::string(note));
    const auto* value = node.as_integer();
    if (!value) wrong_type(node, key, range, std::string(key) + " = " + std::to_string(min == 0 ? 4 : min * 64));
    if (value->get() < min || value->get() > max)
      fail(node, std::string(key) + " is " + std::to_string(value->get()) + "; it must be " + range);
    return value->get();
  }

  std::chrono::milliseconds parse_seconds(const toml::node& node, std::string_view key) const {
    double seconds = 0;
    if (const auto* integer = node.as_integer()) {
      seconds = static_cast<double>(integer->get());
    } else if (const auto* floating = node.as_floating_point()) {
      seconds = floating->get();
    } else {
      wrong_type(node, key, "a number of seconds", std::string(key) + " = 30 or " + std::string(key) + " = 2.5");
    }
    if (!std::isfinite(seconds) || seconds < 0.1 || seconds > 3600)
      fail(node, std::string(key) + " must be from 0.1 to 3600 seconds; write e.g. " + std::string(key) + " = 30");
    return std::chrono::milliseconds(static_cast<long>(std::llround(seconds * 1000)));
  }

  spdlog::level::level_enum parse_log_level(const toml::node& node) const {
    const std::string text = parse_string(node, "log_level", "log_level = \"info\"");
    spdlog::level::level_enum level{};
    if (!common::parse_log_level(text, level))
      fail(node, "log_level '" + text + "' is not one of trace, debug, info, warn, error, critical, off");
    return level;
  }

  std::vector<ListenAddress> parse_listen(const toml::node& node) const {
    const auto* array = node.as_array();
    if (!array) wrong_type(node, "listen", "an array of addresses", "listen = [\"[::]:10809\", \"unix:/run/blockd/nbd.sock\"]");
    std::vector<ListenAddress> out;
    for (const toml::node& item : *array) {
      const std::string text = parse_string(item, "each listen address", "\"127.0.0.1:10809\"");
      std::string error;
      auto address = parse_listen_address(text, error);
      if (!address) fail(item, "listen address " + error);
      out.push_back(*address);
    }
    return out;
  }

  ListenAddress parse_tcp_address(const toml::node& node, std::string_view key) const {
    const std::string name(key);
    const std::string text = parse_string(node, key, name + " = \"127.0.0.1:10810\"");
    std::string error;
    auto address = parse_listen_address(text, error);
    if (!address) fail(node, name + " " + error);
    if (address->kind != ListenAddress::Kind::kTcp)
      fail(node, name + " takes a TCP address such as \"127.0.0.1:10810\"; the Unix socket is control_socket");
    return *address;
  }

  std::vector<storage::StorageClass> parse_storage_classes(const toml::node& node) const {
    const auto* array = node.as_array();
    if (!array || !array->is_array_of_tables()) {
      fail(node, std::string("storage classes are an array of tables: write each one under its own "
                             "[[storage_class]] header (double brackets), not ") +
                     (node.is_table() ? "[storage_class]" : "storage_class = " + type_name(node)));
    }
    std::vector<storage::StorageClass> classes;
    std::vector<const toml::table*> tables;
    for (const toml::node& item : *array) {
      const toml::table& table = *item.as_table();
      classes.push_back(parse_storage_class(table, classes, tables));
      tables.push_back(&table);
    }
    // Exactly one default; a single class is the default whether or not it says so.
    if (classes.size() == 1) classes.front().is_default = true;
    const auto defaults = std::count_if(classes.begin(), classes.end(), [](const auto& c) { return c.is_default; });
    if (defaults == 0) {
      std::string names;
      for (std::size_t i = 0; i < classes.size(); ++i)
        names += (i ? ", '" : "'") + classes[i].name + "' (line " + std::to_string(tables[i]->source().begin.line) + ")";
      fail(*tables.front(), "no storage class is the default among " + names +
                                "; add `default = true` to the one a volume gets when it names no class");
    }
    return classes;
  }

  storage::StorageClass parse_storage_class(const toml::table& table, const std::vector<storage::StorageClass>& earlier,
                                            const std::vector<const toml::table*>& earlier_tables) const {
    storage::StorageClass c;
    const toml::node* default_node = nullptr;
    for (auto&& [key, value] : table) {
      const std::string_view name = key.str();
      if (name == "name") {
        c.name = parse_string(value, "name", "name = \"fast\"");
        if (!is_valid_volume_name(c.name))
          fail(value, "storage class name '" + c.name +
                          "' must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit");
      } else if (name == "directory") {
        c.directory = parse_absolute_path(value, "directory", "/srv/blockd/fast");
      } else if (name == "allocation") {
        const std::string text = parse_string(value, "allocation", "allocation = \"sparse\"");
        const auto allocation = storage::parse_allocation(text);
        if (!allocation)
          fail(value, "allocation '" + text +
                          "' is unknown; use \"sparse\" (space taken as written) or \"preallocate\" (reserved at creation)");
        c.allocation = *allocation;
      } else if (name == "io") {
        const std::string text = parse_string(value, "io", "io = \"buffered\"");
        const auto io = storage::parse_io_mode(text);
        if (!io) fail(value, "io '" + text + "' is unknown; use \"buffered\" (page cache) or \"direct\" (O_DIRECT)");
        c.io = *io;
      } else if (name == "default") {
        const auto* flag = value.as_boolean();
        if (!flag) wrong_type(value, "default", "true or false", "default = true");
        c.is_default = flag->get();
        default_node = &value;
      } else {
        unknown_key(key, "in [[storage_class]]", kClassKeys, "");
      }
    }
    if (c.name.empty()) fail(table, "this [[storage_class]] has no name; add e.g. name = \"fast\"");
    if (c.directory.empty())
      fail(table, "storage class '" + c.name + "' has no directory; add e.g. directory = \"/srv/blockd/" + c.name + "\"");
    for (std::size_t i = 0; i < earlier.size(); ++i) {
      if (earlier[i].name == c.name)
        fail(table, "storage class '" + c.name + "' is already declared at line " +
                        std::to_string(earlier_tables[i]->source().begin.line) + "; give each class its own name");
      if (c.is_default && earlier[i].is_default)
        fail(*default_node, "storage classes '" + earlier[i].name + "' (line " +
                                std::to_string(earlier_tables[i]->source().begin.line) + ") and '" + c.name +
                                "' are both the default; keep `default = true` on one of them only");
    }
    return c;
  }

  std::string source_name_;
};

}  // namespace

std::optional<FileConfig> parse_config_text(std::string_view text, const std::string& source_name, std::string& error) {
  Parser parser(source_name);
  try {
    toml::table root = toml::parse(text, std::string_view(source_name));
    FileConfig config = parser.parse(root);
    // The set as a whole, as the catalog will see it; the parser has already reported
    // every problem with a line number, so this only guards against the two drifting.
    if (!config.storage_classes.empty()) {
      try {
        config.storage_classes = storage::StorageClassSet(config.storage_classes).all();
      } catch (const std::invalid_argument& e) {
        throw ConfigError(source_name + ": " + e.what());
      }
    }
    return config;
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << source_name;
    if (e.source().begin.line > 0) out << ":" << e.source().begin.line << ":" << e.source().begin.column;
    out << ": not valid TOML: " << e.description();
    error = out.str();
  } catch (const ConfigError& e) {
    error = e.what();
  }
  return std::nullopt;
}

std::optional<FileConfig> parse_config_file(const std::string& path, std::string& error) {
  // Read it ourselves: toml++ says only "could not be opened", we can say why.
  auto cannot_read = [&](int saved) {
    error = path + ": cannot read the config file: " + std::strerror(saved) +
            (saved == ENOENT ? " (give another one with --config PATH)" : "");
    return std::nullopt;
  };
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return cannot_read(errno);
  std::string content;
  char buffer[16384];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return cannot_read(errno);
    if (n == 0) break;
    content.append(buffer, static_cast<std::size_t>(n));
    if (content.size() > kMaxConfigBytes) {
      error = path + ": the config file is larger than 1 MiB; is it the right file?";
      return std::nullopt;
    }
  }
  return parse_config_text(content, path, error);
}

}  // namespace blockd::server
