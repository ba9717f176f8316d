#include "tools/lease_commands.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <ctime>
#include <iostream>
#include <memory>

#include "client/control_client.h"
#include "tools/arguments.h"
#include "tools/lease_formatting.h"
#include "tools/usage_error.h"

namespace blockd::tools {

namespace {

client::ControlClient connect(const GlobalOptions& g,
                              std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  std::string error;
  auto address = client::ServerAddress::resolve(g.server, error);
  if (!address) throw UsageError(error);
  return client::ControlClient(*address, timeout);
}

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string lease_path(const std::string& volume, const char* operation = nullptr) {
  std::string path = "/v1/volumes/" + client::url_encode(volume) + "/lease";
  if (operation != nullptr) path += std::string("/") + operation;
  return path;
}

template <typename M>
M answer(const client::HttpResponse& response) {
  client::throw_unless_success(response);
  M message;
  client::from_json(response.body, message);
  return message;
}

v1::Lease post_lease(const GlobalOptions& g, const std::string& volume, const char* operation,
                     const google::protobuf::Message& request) {
  return answer<v1::Lease>(connect(g).post(lease_path(volume, operation), client::to_json(request, false)));
}

std::string holder_of(const LeaseOptions& o) {
  std::string holder = o.holder.empty() ? host_name() : o.holder;
  if (o.holder.empty() && holder.empty()) throw UsageError("cannot tell this host's name: give --holder");
  check_holder(holder);
  return holder;
}

void print_change(const GlobalOptions& g, const char* verb, const std::string& holder, const v1::Lease& lease) {
  if (g.output == OutputFormat::kJson) {
    std::cout << client::to_json(lease, true) << "\n";
  } else if (g.output == OutputFormat::kName) {
    std::cout << lease.volume() << "\n";
  } else {
    std::cout << describe_lease_change(verb, holder, lease, now());
  }
}

}  // namespace

void lease_list(const GlobalOptions& g) {
  const auto list = answer<v1::ListLeasesResponse>(connect(g).get("/v1/leases"));
  if (g.output == OutputFormat::kJson) {
    std::cout << client::to_json(list, true) << "\n";
    return;
  }
  if (g.output == OutputFormat::kName) {
    for (const auto& lease : list.leases()) std::cout << lease.volume() << "\n";
    return;
  }
  if (list.leases_size() == 0) {
    std::cerr << "no volumes\n";
    return;
  }
  std::cout << render_lease_table(list, now());
}

void lease_show(const GlobalOptions& g, const LeaseOptions& o) {
  check_volume_name(o.volume);
  const auto lease = answer<v1::Lease>(connect(g).get(lease_path(o.volume)));
  if (g.output == OutputFormat::kJson) {
    std::cout << client::to_json(lease, true) << "\n";
    return;
  }
  if (g.output == OutputFormat::kName) {
    std::cout << lease.volume() << "\n";
    return;
  }
  v1::ListLeasesResponse one;
  *one.add_leases() = lease;
  std::cout << render_lease_table(one, now());
}

void lease_acquire(const GlobalOptions& g, const LeaseOptions& o) {
  check_volume_name(o.volume);
  v1::AcquireLeaseRequest request;
  request.set_holder(holder_of(o));
  request.set_mode(o.mode);
  if (o.ttl) request.set_ttl_seconds(parse_duration_seconds(*o.ttl));
  print_change(g, "acquired", request.holder(), post_lease(g, o.volume, "acquire", request));
}

void lease_renew(const GlobalOptions& g, const LeaseOptions& o) {
  check_volume_name(o.volume);
  v1::RenewLeaseRequest request;
  request.set_holder(holder_of(o));
  if (o.ttl) request.set_ttl_seconds(parse_duration_seconds(*o.ttl));
  print_change(g, "renewed", request.holder(), post_lease(g, o.volume, "renew", request));
}

void lease_release(const GlobalOptions& g, const LeaseOptions& o) {
  check_volume_name(o.volume);
  v1::ReleaseLeaseRequest request;
  request.set_holder(holder_of(o));
  print_change(g, "released", request.holder(), post_lease(g, o.volume, "release", request));
}

void lease_break(const GlobalOptions& g, const LeaseOptions& o) {
  check_volume_name(o.volume);
  v1::BreakLeaseRequest request;
  if (!o.to_holder.empty()) {
    check_holder(o.to_holder);
    request.set_to_holder(o.to_holder);
  } else if (o.ttl) {
    throw UsageError("--ttl is how long the --to holder keeps the lease before it connects: give --to");
  }
  if (o.ttl) request.set_ttl_seconds(parse_duration_seconds(*o.ttl));
  // The generation before, for the report (a break always moves it up by one; reading
  // it first also names an unknown volume before anything is fenced).
  const auto before = answer<v1::Lease>(connect(g).get(lease_path(o.volume)));
  const auto response = answer<v1::BreakLeaseResponse>(
      connect(g, std::chrono::seconds(kBreakTimeoutSeconds))
          .post(lease_path(o.volume, "break"), client::to_json(request, false)));
  if (g.output == OutputFormat::kJson) {
    std::cout << client::to_json(response, true) << "\n";
    return;
  }
  if (g.output == OutputFormat::kName) {
    std::cout << response.lease().volume() << "\n";
    return;
  }
  std::cout << describe_break(response, before.generation(), now());
}

void add_lease_commands(CLI::App& app, const GlobalOptions& g) {
  auto o = std::make_shared<LeaseOptions>();
  CLI::App* lease = app.add_subcommand("lease", "Show, acquire, renew, release and break volume leases (who may write)");
  lease->require_subcommand(1);

  const std::string host = host_name();
  const std::string holder_help =
      "Lease holder: a node name or pod UID, 1-253 of A-Z a-z 0-9 . _ : - (default: this host's name" +
      (host.empty() ? std::string() : ", \"" + host + "\"") + ")";
  const char* ttl_help = "How long the lease lasts without a connection: 30s, 5m, 1h, 1h30m or seconds "
                         "(default: blockd's --lease-grace)";

  lease->add_subcommand("list", "List every volume's lease: holder, mode, generation, connections, expiry")
      ->alias("ls")
      ->callback([&g] { lease_list(g); });

  CLI::App* show = lease->add_subcommand("show", "Show one volume's lease");
  show->add_option("VOLUME", o->volume, "Volume name")->required();
  show->callback([&g, o] { lease_show(g, *o); });

  CLI::App* acquire = lease->add_subcommand(
      "acquire", "Take a volume's lease for a holder (before it connects, or to re-admit a holder that was broken)");
  acquire->add_option("VOLUME", o->volume, "Volume name")->required();
  acquire->add_option("--holder", o->holder, holder_help);
  acquire->add_option("--mode", o->mode, "rw (the write lease, default) or ro (a shared read lease)")
      ->check(CLI::IsMember({"rw", "ro"}));
  acquire->add_option("--ttl", o->ttl, ttl_help);
  acquire->callback([&g, o] { lease_acquire(g, *o); });

  CLI::App* renew = lease->add_subcommand("renew", "Extend a holder's lease");
  renew->add_option("VOLUME", o->volume, "Volume name")->required();
  renew->add_option("--holder", o->holder, holder_help);
  renew->add_option("--ttl", o->ttl, ttl_help);
  renew->callback([&g, o] { lease_renew(g, *o); });

  CLI::App* release = lease->add_subcommand(
      "release", "Give a holder's lease back (at once, or when its last connection closes)");
  release->add_option("VOLUME", o->volume, "Volume name")->required();
  release->add_option("--holder", o->holder, holder_help);
  release->callback([&g, o] { lease_release(g, *o); });

  CLI::App* brk = lease->add_subcommand(
      "break",
      "Fence the current holder(s): bump the generation, wait for their writes, close their connections, "
      "then optionally hand the lease to --to. Waits up to " +
          std::to_string(kBreakTimeoutSeconds) + " s");
  brk->add_option("VOLUME", o->volume, "Volume name")->required();
  brk->add_option("--to", o->to_holder, "Holder that gets the write lease afterwards (default: nobody)");
  brk->add_option("--ttl", o->ttl, "How long the --to holder keeps it before it connects (default: blockd's --lease-grace)");
  brk->callback([&g, o] { lease_break(g, *o); });
}

}  // namespace blockd::tools
