#include "tools/commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>

#include "client/control_client.h"
#include "common/size.h"
#include "common/unique_fd.h"
#include "tools/arguments.h"
#include "tools/copy_session.h"
#include "tools/formatting.h"
#include "tools/image_exporter.h"
#include "tools/image_importer.h"
#include "tools/usage_error.h"

namespace blockd::tools {

namespace {

client::ControlClient connect(const GlobalOptions& g) {
  std::string error;
  auto address = client::ServerAddress::resolve(g.server, error);
  if (!address) throw UsageError(error);
  return client::ControlClient(*address);
}

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

void print_json(const google::protobuf::Message& m) { std::cout << client::to_json(m, true) << "\n"; }

std::string quoted(const std::string& name) { return "\"" + name + "\""; }

std::string checked_size(const std::string& text) {
  std::string note;
  const std::uint64_t bytes = parse_volume_size(text, &note);
  if (!note.empty()) std::cerr << "blockctl: " << note << "\n";
  return std::to_string(bytes);
}

// `skipped` says what happened to the zero ranges that were not copied as data.
std::string summary(const CopyStats& s, const char* skipped) {
  std::string text = common::format_size(s.data_bytes) + " of data";
  if (s.zeroed_bytes > 0) text += ", " + common::format_size(s.zeroed_bytes) + " zeroed";
  if (s.skipped_bytes > 0) text += ", " + common::format_size(s.skipped_bytes) + " " + skipped;
  return text;
}

}  // namespace

void volume_create(const GlobalOptions& g, const CreateOptions& o) {
  check_volume_name(o.name);
  v1::CreateVolumeRequest request;
  request.set_name(o.name);
  // Sent as bytes: the server parses sizes with the same rules, but a number leaves
  // nothing to interpret.
  request.set_size(checked_size(o.size));
  request.set_storage_class(o.storage_class);
  for (auto mode : parse_access_modes(o.access_modes)) request.add_access_modes(mode);
  request.set_description(o.description);
  for (const auto& [k, v] : parse_labels(o.labels)) (*request.mutable_labels())[k] = v;
  const v1::Volume volume = connect(g).create_volume(request);
  if (g.output == OutputFormat::kJson) return print_json(volume);
  if (g.output == OutputFormat::kName) {
    std::cout << volume.name() << "\n";
    return;
  }
  std::cout << "volume " << quoted(volume.name()) << " created: " << common::format_size(volume.size_bytes())
            << ", class " << volume.storage_class() << ", " << format_access_modes(volume) << "\n";
}

void volume_list(const GlobalOptions& g, const ListOptions& o) {
  const auto labels = parse_labels(o.labels);
  const auto list = connect(g).list_volumes(o.storage_class, labels);
  if (g.output == OutputFormat::kJson) return print_json(list);
  if (g.output == OutputFormat::kName) {
    for (const auto& v : list.volumes()) std::cout << v.name() << "\n";
    return;
  }
  if (list.volumes_size() == 0) {
    std::cerr << "no volumes" << (o.storage_class.empty() && labels.empty() ? "" : " match") << "\n";
    return;
  }
  std::cout << render_volume_table(list, now());
}

void volume_show(const GlobalOptions& g, const std::string& name) {
  check_volume_name(name);
  const v1::Volume volume = connect(g).get_volume(name);
  if (g.output == OutputFormat::kJson) return print_json(volume);
  if (g.output == OutputFormat::kName) {
    std::cout << volume.name() << "\n";
    return;
  }
  std::cout << render_volume_details(volume, now());
}

void volume_resize(const GlobalOptions& g, const std::string& name, const std::string& size) {
  check_volume_name(name);
  const v1::Volume volume = connect(g).resize_volume(name, checked_size(size));
  if (g.output == OutputFormat::kJson) return print_json(volume);
  std::cout << "volume " << quoted(volume.name()) << " resized to " << common::format_size(volume.size_bytes())
            << " (" << volume.size_bytes() << " bytes); clients see it when they reconnect\n";
}

void volume_delete(const GlobalOptions& g, const std::string& name) {
  check_volume_name(name);
  connect(g).delete_volume(name);
  if (g.output == OutputFormat::kJson) {
    std::cout << "{}\n";
    return;
  }
  std::cout << "volume " << quoted(name) << " deleted\n";
}

void volume_import(const GlobalOptions& g, const CopyOptions& o) {
  check_volume_name(o.name);
  common::UniqueFd owned;
  int fd = STDIN_FILENO;
  if (o.path != "-") {
    owned.reset(::open(o.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!owned.valid()) throw std::runtime_error("cannot open " + o.path + ": " + std::strerror(errno));
    fd = owned.get();
  } else if (::isatty(STDIN_FILENO)) {
    throw UsageError("refusing to read a disk image from a terminal: give FILE, or pipe the image in");
  }
  CopySession session(g, o, true);
  ImageImporter::Options options;
  options.source_name = o.path == "-" ? "stdin" : o.path;
  options.volume_name = o.name;
  options.verify = o.verify;
  options.progress = Progress::detect(stderr, g.quiet);
  const CopyStats stats = ImageImporter(session.nbd(), fd, options).run();
  session.end();
  if (!g.quiet) {
    std::cerr << "imported " << options.source_name << " (" << common::format_size(stats.source_bytes) << ") into volume "
              << quoted(o.name) << ": " << summary(stats, "already zero, not sent") << "; "
              << (stats.verified ? "verified" : "not verified (--no-verify)") << "\n";
  }
}

void volume_export(const GlobalOptions& g, const CopyOptions& o) {
  check_volume_name(o.name);
  if (o.path == "-" && ::isatty(STDOUT_FILENO))
    throw UsageError("refusing to write a disk image to a terminal: give FILE, or redirect the output");
  CopySession session(g, o, false);
  common::UniqueFd owned;
  int fd = STDOUT_FILENO;
  if (o.path != "-") {
    // No O_TRUNC here: ImageExporter truncates a regular file itself, and a block
    // device or a FIFO must not be truncated.
    owned.reset(::open(o.path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!owned.valid()) throw std::runtime_error("cannot open " + o.path + ": " + std::strerror(errno));
    fd = owned.get();
  }
  ImageExporter::Options options;
  options.output_name = o.path == "-" ? "stdout" : o.path;
  options.volume_name = o.name;
  options.verify = o.verify;
  options.progress = Progress::detect(stderr, g.quiet);
  ImageExporter exporter(session.nbd(), fd, options);
  const CopyStats stats = exporter.run();
  session.end();
  if (!g.quiet) {
    std::string verdict = stats.verified ? "verified"
                          : !exporter.output_is_file() ? "not verified (the output is not a file that can be read back)"
                                                        : "not verified (--no-verify)";
    std::cerr << "exported volume " << quoted(o.name) << " (" << common::format_size(stats.source_bytes) << ") to "
              << options.output_name << ": "
              << summary(stats, exporter.output_is_file() ? "left as holes" : "of zeroes not read") << "; " << verdict
              << "\n";
  }
}

void class_list(const GlobalOptions& g) {
  const auto list = connect(g).list_storage_classes();
  if (g.output == OutputFormat::kJson) return print_json(list);
  if (g.output == OutputFormat::kName) {
    for (const auto& c : list.storage_classes()) std::cout << c.name() << "\n";
    return;
  }
  std::cout << render_class_table(list);
}

}  // namespace blockd::tools
