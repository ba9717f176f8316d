// blockctl's commands, one function each, behind the CLI11 wiring in cli.cpp. Each
// prints its result on stdout (tables, or the API's JSON with -o json) and throws on
// failure: UsageError (exit 2), ControlError / NbdError / std::runtime_error (exit 1).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace blockd::tools {

enum class OutputFormat { kTable, kJson, kName };

struct GlobalOptions {
  std::optional<std::string> server;  // --server, else BLOCKD_SERVER, else the default
  OutputFormat output = OutputFormat::kTable;
  bool quiet = false;
};

struct CreateOptions {
  std::string name;
  std::string size;
  std::string storage_class;
  std::vector<std::string> access_modes;
  std::string description;
  std::vector<std::string> labels;
};

struct ListOptions {
  std::string storage_class;
  std::vector<std::string> labels;
};

struct CopyOptions {
  std::string name;
  std::string path;  // "-": stdin (import) or stdout (export)
  std::optional<std::string> nbd;  // --nbd URI: skip the control API
  bool verify = true;
};

void volume_create(const GlobalOptions& g, const CreateOptions& o);
void volume_list(const GlobalOptions& g, const ListOptions& o);
void volume_show(const GlobalOptions& g, const std::string& name);
void volume_resize(const GlobalOptions& g, const std::string& name, const std::string& size);
void volume_delete(const GlobalOptions& g, const std::string& name);
void volume_import(const GlobalOptions& g, const CopyOptions& o);
void volume_export(const GlobalOptions& g, const CopyOptions& o);
void class_list(const GlobalOptions& g);
// In status_command.cpp.
void show_status(const GlobalOptions& g);

}  // namespace blockd::tools
