// Server: the blockd process. Opens the volumes (command line, then the catalog, after
// its crash recovery), starts the workers, the NBD listeners and the control API,
// accepts connections and spreads them over the workers, and shuts down gracefully
// on SIGTERM/SIGINT: stop accepting, drain sessions (ESHUTDOWN for new requests,
// in-flight ones finish), flush every volume, exit 0. SIGHUP reloads the config file
// (log level, storage classes) without touching a connection. Under systemd it reports
// READY/STATUS/STOPPING, sends watchdog heartbeats only while every worker's loop turns,
// and serves the sockets blockd.socket passes.
//
// Thread affinity: constructed and run on the main thread, whose io_context carries
// the listeners and the signal handling.
#pragma once

#include <atomic>
#include <chrono>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <memory>
#include <vector>

#include "server/catalog/catalog.h"
#include "server/catalog/real_file_system.h"
#include "server/config.h"
#include "server/control/api_handler.h"
#include "server/control/control_server.h"
#include "server/catalog_generation_store.h"
#include "server/lease/lease_manager.h"
#include "server/lease/steady_clock.h"
#include "server/lease_admission.h"
#include "server/lease_service.h"
#include "server/metrics_exporter.h"
#include "server/net/listener.h"
#include "server/storage/volume_registry.h"
#include "server/service_manager.h"
#include "server/volume_service.h"
#include "server/worker.h"

namespace blockd::server {

class Server {
 public:
  // Throws std::runtime_error with a message for the operator when a volume cannot
  // be opened, a worker cannot start or an address cannot be bound.
  explicit Server(ServerConfig config);
  ~Server();

  // Serves until a shutdown signal; returns the process exit code.
  int run();

 private:
  void open_volumes();
  void open_catalog();
  void open_leases();
  void open_control_api();
  boost::asio::awaitable<void> expire_leases();
  // Every interval: WATCHDOG=1 if every worker answered the last ping, and STATUS=.
  boost::asio::awaitable<void> heartbeat();
  std::string status_line() const;
  void wait_for_reload();
  void reload();
  void wait_for_test_hooks();
  void start_workers();
  unsigned worker_count() const;
  void open_listeners();
  boost::asio::awaitable<void> accept_loop(net::Listener* listener);
  boost::asio::awaitable<void> shutdown();
  boost::asio::awaitable<bool> flush_volumes();
  std::size_t live_connections() const;
  Worker& next_worker();

  ServerConfig config_;
  ServiceManager service_;  // first: it takes the sockets systemd passed
  boost::asio::io_context context_{1};
  boost::asio::signal_set signals_;
  boost::asio::signal_set reload_signals_;
  boost::asio::signal_set hook_signals_;
  storage::VolumeRegistry volumes_;
  catalog::RealFileSystem file_system_;
  std::unique_ptr<catalog::Catalog> catalog_;
  lease::SteadyClock clock_;
  std::unique_ptr<CatalogGenerationStore> generations_;
  std::unique_ptr<lease::LeaseManager> leases_;
  std::unique_ptr<LeaseAdmission> admission_;
  std::unique_ptr<VolumeService> volume_service_;
  std::unique_ptr<LeaseService> lease_service_;
  std::unique_ptr<MetricsExporter> metrics_;
  std::unique_ptr<control::ApiHandler> api_;
  std::unique_ptr<control::ControlServer> control_;
  std::atomic<bool> listening_{false};
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::size_t next_worker_ = 0;
  bool shutting_down_ = false;
  std::uint64_t refused_ = 0;
  std::chrono::steady_clock::time_point last_refusal_log_{};
  int exit_code_ = 0;
};

}  // namespace blockd::server
