#include "server/server.h"

#include <csignal>
#include <cstdlib>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <thread>

#include "common/logging.h"
#include "server/config_file.h"
#include "server/net/connection.h"
#include "server/storage/memory_backend.h"
#include "server/storage/uring_file_backend.h"

namespace blockd::server {

namespace asio = boost::asio;

namespace {

std::unique_ptr<storage::Backend> make_backend(const VolumeSpec& spec) {
  if (spec.backend == VolumeSpec::Backend::kMemory)
    return std::make_unique<storage::MemoryBackend>(*spec.size);
  return storage::UringFileBackend::open(
      {spec.path, spec.size, spec.read_only, spec.io == storage::IoMode::kDirect});
}

}  // namespace

Server::Server(ServerConfig config)
    : config_(std::move(config)),
      signals_(context_, SIGINT, SIGTERM),
      reload_signals_(context_, SIGHUP),
      hook_signals_(context_) {
  open_volumes();
  open_catalog();
  open_leases();
  start_workers();
  open_listeners();
  open_control_api();
}

Server::~Server() {
  if (control_) control_->stop();
  for (auto& worker : workers_) worker->stop();
}

void Server::open_catalog() {
  auto log = common::logger("server");
  std::vector<storage::StorageClass> classes = config_.storage_classes;
  if (classes.empty()) classes.push_back(storage::fallback_storage_class(config_.state_dir));
  try {
    catalog_ = std::make_unique<catalog::Catalog>(file_system_, config_.state_dir,
                                                  storage::StorageClassSet(std::move(classes)));
    // Logs what it did and what an operator should look at.
    catalog_->recover();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("cannot open the catalog in ") + config_.state_dir + ": " + e.what());
  }
  volume_service_ =
      std::make_unique<VolumeService>(*catalog_, volumes_, worker_count(), config_.unsafe_ack_without_sync);
  for (const VolumeSpec& spec : config_.volumes) volume_service_->add_command_line_volume(spec.name);
  const std::size_t served = volume_service_->export_catalog_volumes();
  log->info("catalog loaded path={} volumes={} served={} classes={}", catalog_->path(),
            catalog_->list_volumes().size(), served, catalog_->storage_classes().all().size());
}

void Server::open_leases() {
  generations_ = std::make_unique<CatalogGenerationStore>(*catalog_);
  // Restart grace: each volume's last writer keeps its lease for the grace period.
  std::vector<lease::LeaseManager::PreviousHolder> previous;
  for (const auto& volume : catalog_->list_volumes())
    if (!volume.last_writer().empty()) previous.push_back({volume.name(), volume.last_writer(), lease::LeaseMode::kReadWrite});
  lease::LeaseManager::Options options;
  options.grace = std::chrono::duration_cast<lease::Duration>(config_.lease_grace);
  try {
    leases_ = std::make_unique<lease::LeaseManager>(options, clock_, *generations_, previous);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("cannot restore the leases from the catalog: ") + e.what());
  }
  admission_ = std::make_unique<LeaseAdmission>(*leases_);
  volume_service_->set_leases(leases_.get());
  common::logger("server")->info("leases ready grace_ms={} restored={}", config_.lease_grace.count(), previous.size());
}

asio::awaitable<void> Server::expire_leases() {
  // Expiry is lazy in the LeaseManager; this makes its log lines timely.
  asio::steady_timer tick(context_);
  while (!shutting_down_) {
    tick.expires_after(std::chrono::seconds(1));
    co_await tick.async_wait(net::use_nothrow);
    leases_->expire_due();
  }
}

std::string Server::status_line() const {
  const auto volumes = volumes_.list();
  return "serving " + std::to_string(volumes.size()) + " volume(s), " + std::to_string(live_connections()) +
         " connection(s)";
}

asio::awaitable<void> Server::heartbeat() {
  auto log = common::logger("server");
  const auto watchdog = service_.watchdog_interval();
  const auto interval = watchdog ? std::min<std::chrono::microseconds>(*watchdog, std::chrono::seconds(5))
                                 : std::chrono::microseconds(std::chrono::seconds(5));
  if (watchdog) log->info("watchdog enabled interval_ms={}", watchdog->count() / 1000);
  for (auto& worker : workers_) worker->ping();
  asio::steady_timer tick(context_);
  while (!shutting_down_) {
    tick.expires_after(interval);
    co_await tick.async_wait(net::use_nothrow);
    if (shutting_down_) break;
    // WATCHDOG=1 only if every worker ran the ping posted one interval ago: a stuck
    // worker stops the heartbeat and systemd restarts blockd (WatchdogSec).
    bool all_turning = true;
    for (auto& worker : workers_) {
      if (worker->pings_answered() < worker->pings_sent()) {
        all_turning = false;
        log->error("worker {} has not run its event loop for {} ms: withholding the watchdog heartbeat",
                   worker->index(), std::chrono::duration_cast<std::chrono::milliseconds>(interval).count());
      }
      worker->ping();
    }
    if (watchdog && all_turning) service_.watchdog();
    service_.status(status_line());
  }
}

void Server::wait_for_reload() {
  reload_signals_.async_wait([this](boost::system::error_code ec, int) {
    if (ec || shutting_down_) return;
    reload();
    wait_for_reload();
  });
}

void Server::reload() {
  auto log = common::logger("server");
  if (config_.config_path.empty()) {
    log->warn("SIGHUP: there is no config file to reload (started without --config and without {}); nothing "
              "changed", kDefaultConfigPath);
    return;
  }
  service_.reloading();
  std::string error;
  auto file = parse_config_file(config_.config_path, error);
  if (!file) {
    log->error("SIGHUP: reload refused, nothing changed: {}", error);
    service_.reloaded(status_line());
    return;
  }
  std::vector<storage::StorageClass> classes = file->storage_classes;
  if (classes.empty()) classes.push_back(storage::fallback_storage_class(config_.state_dir));
  try {
    catalog_->replace_storage_classes(storage::StorageClassSet(std::move(classes)));
  } catch (const std::exception& e) {
    log->error("SIGHUP: reload refused, nothing changed: {}", e.what());
    service_.reloaded(status_line());
    return;
  }
  if (!config_.log_level_on_command_line && file->log_level) {
    config_.log_level = *file->log_level;
    common::set_log_level(config_.log_level);
  }
  if (file->state_dir != config_.state_dir || file->control_socket != config_.control_socket ||
      (!file->listen.empty() && file->listen.size() != config_.listen.size()))
    log->warn("SIGHUP: listen addresses, state_dir and control_socket take effect at the next restart");
  log->info("SIGHUP: reloaded path={} classes={} log_level={}", config_.config_path,
            catalog_->storage_classes().all().size(), spdlog::level::to_string_view(config_.log_level));
  service_.reloaded(status_line());
}

void Server::wait_for_test_hooks() {
  // TEST ONLY (BLOCKD_TEST_HOOKS=1): SIGUSR1 makes worker 0 hang, so the watchdog test
  // can see the heartbeat stop. Never set in production.
  const char* hooks = std::getenv("BLOCKD_TEST_HOOKS");
  if (hooks == nullptr || std::string(hooks) != "1") return;
  hook_signals_.add(SIGUSR1);
  hook_signals_.async_wait([this](boost::system::error_code ec, int) {
    if (ec || workers_.empty()) return;
    common::logger("server")->warn("BLOCKD_TEST_HOOKS: SIGUSR1: hanging worker 0 for an hour");
    asio::post(workers_.front()->context(), [] { std::this_thread::sleep_for(std::chrono::hours(1)); });
  });
}

void Server::open_control_api() {
  control::NodeState node;
  for (const auto& listener : listeners_) node.nbd_listen.push_back(listener->address());
  node.state_dir = config_.state_dir;
  node.workers = static_cast<unsigned>(workers_.size());
  node.started = started_;
  node.listening = [this] { return listening_.load(); };
  metrics_ = std::make_unique<MetricsExporter>(volumes_, *leases_, workers_, started_);
  node.metrics = [this] { return metrics_->render(); };
  lease_service_ = std::make_unique<LeaseService>(*leases_, volumes_);
  api_ = std::make_unique<control::ApiHandler>(*volume_service_, *lease_service_, std::move(node));
  int activated_control = -1;
  for (const ActivatedSocket& socket : service_.activated())
    if (socket.name == "control") activated_control = socket.fd;
  control_ = std::make_unique<control::ControlServer>(config_.control_socket, config_.control_listen, *api_,
                                                      activated_control, config_.metrics_listen);
}

void Server::open_volumes() {
  auto log = common::logger("server");
  for (const VolumeSpec& spec : config_.volumes) {
    // Not in the catalog, so no access modes of its own: a writable one takes a writer
    // or shared readers, a read-only one only readers.
    storage::Volume::Options options{spec.name, spec.description, spec.read_only,
                                     lease::AllowedModes{!spec.read_only, true}, worker_count(),
                                     config_.unsafe_ack_without_sync};
    auto backend = make_backend(spec);
    try {
      serve_volume(volumes_, std::move(options), std::move(backend));  // throws on a name given twice
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(e.what());
    }
  }
  if (config_.unsafe_ack_without_sync)
    log->warn("--unsafe-ack-without-sync is set: FUA and FLUSH are acknowledged WITHOUT syncing. "
              "Acknowledged writes will be lost on power failure. Testing only.");
}

unsigned Server::worker_count() const {
  return config_.workers != 0 ? config_.workers : std::max(1U, std::thread::hardware_concurrency());
}

void Server::start_workers() {
  const unsigned count = worker_count();
  for (unsigned i = 0; i < count; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, config_.ring_entries, config_.busy_poll));
    try {
      workers_.back()->start();
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot start worker " + std::to_string(i) + ": " + e.what());
    }
  }
  common::logger("server")->info("workers started count={} ring_entries={} busy_poll_us={}", count,
                                 config_.ring_entries, config_.busy_poll.count());
}

void Server::open_listeners() {
  // Socket activation: systemd's sockets replace the configured addresses.
  for (const ActivatedSocket& socket : service_.activated())
    if (socket.name != "control") listeners_.push_back(std::make_unique<net::Listener>(context_, socket.fd));
  if (!listeners_.empty()) {
    common::logger("server")->info("socket-activated: serving the {} NBD socket(s) systemd passed; --listen and "
                                   "the config's listen are not used", listeners_.size());
    return;
  }
  std::vector<ListenAddress> addresses = config_.listen;
  if (addresses.empty()) {
    ListenAddress any;
    any.host = "::";
    any.port = kDefaultPort;
    addresses.push_back(any);
    try {
      listeners_.push_back(std::make_unique<net::Listener>(context_, any));
    } catch (const std::runtime_error&) {
      // No IPv6 on this host: fall back to IPv4 only.
      any.host = "0.0.0.0";
      listeners_.push_back(std::make_unique<net::Listener>(context_, any));
    }
    return;
  }
  for (const auto& address : addresses)
    listeners_.push_back(std::make_unique<net::Listener>(context_, address));
}

int Server::run() {
  auto log = common::logger("server");
  for (auto& listener : listeners_) {
    log->info("listening address={}", listener->address());
    asio::co_spawn(context_, accept_loop(listener.get()), asio::detached);
  }
  signals_.async_wait([this](boost::system::error_code ec, int signal) {
    if (ec) return;
    common::logger("server")->info("received {}: shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    asio::co_spawn(context_, shutdown(), asio::detached);
  });
  listening_ = true;
  control_->start();
  asio::co_spawn(context_, expire_leases(), asio::detached);
  asio::co_spawn(context_, heartbeat(), asio::detached);
  wait_for_reload();
  wait_for_test_hooks();
  log->info("blockd ready volumes={} listeners={}", volumes_.list().size(), listeners_.size());
  service_.ready(status_line());
  context_.run();
  return exit_code_;
}

Worker& Server::next_worker() {
  // Fewest connections first, round-robin among equals.
  Worker* best = nullptr;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    Worker& candidate = *workers_[(next_worker_ + i) % workers_.size()];
    if (best == nullptr || candidate.connections() < best->connections()) best = &candidate;
  }
  next_worker_ = (next_worker_ + 1) % workers_.size();
  return *best;
}

std::size_t Server::live_connections() const {
  std::size_t total = 0;
  for (const auto& worker : workers_) total += worker->connections();
  return total;
}

asio::awaitable<void> Server::accept_loop(net::Listener* listener) {
  auto log = common::logger("server");
  const net::Connection::Services services{volumes_, *admission_, config_.handshake_timeout};
  for (;;) {
    Worker& worker = next_worker();
    auto [ec, socket] = co_await listener->acceptor().async_accept(worker.context(), net::use_nothrow);
    if (ec == asio::error::operation_aborted || shutting_down_) co_return;
    if (ec) {
      // EMFILE/ENFILE and friends: say so, back off briefly, keep serving.
      log->warn("accept failed address={} error=\"{}\"", listener->address(), ec.message());
      asio::steady_timer pause(context_, std::chrono::milliseconds(100));
      co_await pause.async_wait(net::use_nothrow);
      continue;
    }
    if (live_connections() >= config_.max_connections) {
      // Client-caused, so rate-limited: one line per second with the count.
      ++refused_;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_refusal_log_ >= std::chrono::seconds(1)) {
        log->warn("connections refused: max-connections={} reached refused={}",
                  config_.max_connections, refused_);
        refused_ = 0;
        last_refusal_log_ = now;
      }
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    auto connection = std::make_shared<net::Connection>(std::move(socket), worker, services);
    asio::co_spawn(worker.context(), net::Connection::serve(std::move(connection)), asio::detached);
  }
}

asio::awaitable<bool> Server::flush_volumes() {
  // Runs on worker 0 so the flushes go through its ring.
  Worker& worker = *workers_.front();
  bool ok = true;
  for (const auto& volume : volumes_.list()) {
    if (volume->read_only()) continue;
    auto result = co_await volume->flush(worker.ring());
    if (!result) {
      ok = false;
      common::logger("server")->error("final flush failed volume={} error=\"{}\"", volume->name(),
                                       std::strerror(result.error()));
    }
  }
  co_return ok;
}

asio::awaitable<void> Server::shutdown() {
  if (shutting_down_) co_return;
  shutting_down_ = true;
  listening_ = false;
  service_.stopping();
  auto log = common::logger("server");
  // No volume changes while draining: the API goes first.
  control_->stop();
  for (auto& listener : listeners_) listener->close();
  for (auto& worker : workers_) worker->drain();
  log->info("draining connections={} timeout_ms={}", live_connections(), config_.shutdown_timeout.count());

  asio::steady_timer tick(context_);
  const auto deadline = std::chrono::steady_clock::now() + config_.shutdown_timeout;
  while (live_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(net::use_nothrow);
  }
  if (live_connections() > 0) {
    log->warn("shutdown timeout: closing {} connections with requests still in flight", live_connections());
    for (auto& worker : workers_) worker->close_all();
    while (live_connections() > 0) {
      tick.expires_after(std::chrono::milliseconds(20));
      co_await tick.async_wait(net::use_nothrow);
    }
  }
  const bool flushed =
      co_await asio::co_spawn(workers_.front()->context(), flush_volumes(), asio::use_awaitable);
  exit_code_ = flushed ? 0 : 1;
  for (auto& worker : workers_) worker->stop();
  log->info("stopped exit_code={}", exit_code_);
  context_.stop();
}

}  // namespace blockd::server
