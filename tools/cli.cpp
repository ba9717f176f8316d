#include "tools/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>

#include "client/control_error.h"
#include "client/nbd_error.h"
#include "tools/attach_commands.h"
#include "tools/commands.h"
#include "tools/lease_commands.h"
#include "tools/usage_error.h"

namespace blockd::tools {

namespace {

struct Parsed {
  GlobalOptions global;
  std::string output = "table";
  CreateOptions create;
  ListOptions list;
  CopyOptions copy;
  bool no_verify = false;
  std::string name;
  std::string size;
};

const std::map<std::string, OutputFormat> kFormats = {
    {"table", OutputFormat::kTable}, {"json", OutputFormat::kJson}, {"name", OutputFormat::kName}};

void add_volume_commands(CLI::App& app, Parsed& p) {
  CLI::App* volume = app.add_subcommand("volume", "Create, list, show, resize, delete, import and export volumes");
  volume->require_subcommand(1);

  CLI::App* create = volume->add_subcommand("create", "Create a volume (an empty, sparse disk)");
  create->add_option("NAME", p.create.name, "Volume name: a DNS label such as db-0")->required();
  create->add_option("--size", p.create.size, "Size: 10GiB, 512MiB, 10G (binary units) or bytes")->required();
  create->add_option("--class", p.create.storage_class, "Storage class (default: the default class)");
  create->add_option("--access-modes", p.create.access_modes,
                     "ReadWriteOnce and/or ReadOnlyMany, comma-separated (default: ReadWriteOnce)")
      ->delimiter(',');
  create->add_option("--description", p.create.description, "Free text, shown to NBD clients");
  create->add_option("--label", p.create.labels, "KEY=VALUE, repeatable");
  create->callback([&p] { volume_create(p.global, p.create); });

  CLI::App* list = volume->add_subcommand("list", "List volumes, optionally filtered");
  list->alias("ls");
  list->add_option("--class", p.list.storage_class, "Only volumes of this storage class");
  list->add_option("--label", p.list.labels, "Only volumes with this KEY=VALUE label; repeatable (all must match)");
  list->callback([&p] { volume_list(p.global, p.list); });

  CLI::App* show = volume->add_subcommand("show", "Show one volume in detail");
  show->add_option("NAME", p.name, "Volume name")->required();
  show->callback([&p] { volume_show(p.global, p.name); });

  CLI::App* resize = volume->add_subcommand("resize", "Grow a volume (shrinking is refused)");
  resize->add_option("NAME", p.name, "Volume name")->required();
  resize->add_option("--size", p.size, "New size, larger than the current one")->required();
  resize->callback([&p] { volume_resize(p.global, p.name, p.size); });

  CLI::App* remove = volume->add_subcommand("delete", "Delete a volume and its data (refused while clients are connected)");
  remove->alias("rm");
  remove->add_option("NAME", p.name, "Volume name")->required();
  remove->callback([&p] { volume_delete(p.global, p.name); });

  auto add_copy = [&](const char* command, const char* help, const char* path_help) {
    CLI::App* sub = volume->add_subcommand(command, help);
    sub->add_option("NAME", p.copy.name, "Volume name")->required();
    sub->add_option("FILE", p.copy.path, path_help)->required();
    sub->add_option("--nbd", p.copy.nbd,
                    "NBD server to use instead of asking blockd: nbd://HOST:PORT[/EXPORT] or "
                    "nbd+unix:///[EXPORT]?socket=PATH");
    sub->add_flag("--no-verify", p.no_verify, "Do not read the result back and compare");
    return sub;
  };
  add_copy("import", "Copy a raw disk image into a volume (sparse-aware, verified)",
           "Raw image to read, or - for stdin (convert qcow2 first: qemu-img convert -O raw)")
      ->callback([&p] {
        p.copy.verify = !p.no_verify;
        volume_import(p.global, p.copy);
      });
  add_copy("export", "Copy a volume into a raw disk image (sparse-aware, verified)",
           "Raw image to write (replaced), or - for stdout")
      ->callback([&p] {
        p.copy.verify = !p.no_verify;
        volume_export(p.global, p.copy);
      });
}

void add_commands(CLI::App& app, Parsed& p) {
  add_volume_commands(app, p);
  CLI::App* klass = app.add_subcommand("class", "Storage classes");
  klass->require_subcommand(1);
  klass->add_subcommand("list", "List storage classes")->alias("ls")->callback([&p] { class_list(p.global); });
  app.add_subcommand("status",
                     "Show blockd's status: version, listeners, volumes, holders, connections, rates since the last call")
      ->callback([&p] { show_status(p.global); });
  add_attach_commands(app, p.global);
  add_lease_commands(app, p.global);
}

// "blockctl volume create" for hints: the deepest subcommand the user reached.
std::string command_path(const CLI::App& app) {
  std::string path = app.get_name();
  const CLI::App* at = &app;
  for (;;) {
    const auto subs = at->get_subcommands();
    if (subs.empty()) break;
    at = subs.front();
    path += " " + at->get_name();
  }
  return path;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"blockctl: manage blockd's volumes and storage classes, and copy disk images in and out",
               "blockctl"};
  Parsed p;
  app.require_subcommand(1);
  // Global options may also come after the subcommand: `blockctl volume list -o json`.
  app.fallthrough();
  app.add_option("--server", p.global.server,
                 "blockd's control API: unix:///PATH or http://HOST:PORT (env BLOCKD_SERVER; default "
                 "unix:///run/blockd/control.sock)");
  app.add_option("-o,--output", p.output, "Output format: table, json (the API's JSON) or name")
      ->check(CLI::IsMember({"table", "json", "name"}));
  app.add_flag("-q,--quiet", p.global.quiet, "No progress or summary on stderr (import, export)");
  app.parse_complete_callback([&p] { p.global.output = kFormats.at(p.output); });
  add_commands(app, p);

  try {
    app.parse(argc, argv);
    return kExitOk;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const CLI::ParseError& e) {
    // "volume frobnicate" fails as "a subcommand is required"; naming the word that was
    // not understood is more use.
    const auto extra = app.remaining(true);
    if (!extra.empty() && dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
      std::cerr << "blockctl: unknown command \"" << extra.front() << "\"";
    } else {
      std::cerr << "blockctl: " << e.what();
    }
    std::cerr << "\nRun '" << command_path(app) << " --help' for usage.\n";
    return kExitUsage;
  } catch (const UsageError& e) {
    std::cerr << "blockctl: " << e.what() << "\n";
    return kExitUsage;
  } catch (const client::ControlError& e) {
    std::cerr << "blockctl: " << e.what();
    if (e.code() != "unreachable" && e.code() != "protocol") std::cerr << " (" << e.code() << ")";
    std::cerr << "\n";
    return kExitFailure;
  } catch (const client::NbdError& e) {
    std::cerr << "blockctl: " << e.what() << "\n";
    return kExitFailure;
  } catch (const std::exception& e) {
    std::cerr << "blockctl: " << e.what() << "\n";
    return kExitFailure;
  }
}

}  // namespace blockd::tools
