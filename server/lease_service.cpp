#include "server/lease_service.h"

#include <future>

#include "common/logging.h"
#include "server/catalog/catalog_error.h"
#include "server/lease/lease_error.h"
#include "server/lease_proto.h"

namespace blockd::server {

using catalog::CatalogError;
using catalog::ErrorCode;

namespace {

// The lease manager's errors in the control API's vocabulary (the same words).
[[noreturn]] void rethrow(const lease::LeaseError& e) {
  switch (e.code()) {
    case lease::LeaseErrorCode::kInvalidArgument: throw CatalogError(ErrorCode::kInvalidArgument, e.what());
    case lease::LeaseErrorCode::kNotFound: throw CatalogError(ErrorCode::kNotFound, e.what());
    case lease::LeaseErrorCode::kFailedPrecondition: throw CatalogError(ErrorCode::kFailedPrecondition, e.what());
    case lease::LeaseErrorCode::kInternal: break;
  }
  throw CatalogError(ErrorCode::kInternal, e.what());
}

template <typename Call>
auto translated(Call call) {
  try {
    return call();
  } catch (const lease::LeaseError& e) {
    rethrow(e);
  }
}

lease::LeaseMode parse_mode(const std::string& mode) {
  if (mode.empty() || mode == "rw") return lease::LeaseMode::kReadWrite;
  if (mode == "ro") return lease::LeaseMode::kReadOnly;
  throw CatalogError(ErrorCode::kInvalidArgument, "mode '" + mode + "' is unknown; use \"rw\" or \"ro\"");
}

std::optional<lease::Duration> ttl_of(std::uint32_t seconds) {
  if (seconds == 0) return std::nullopt;
  return std::chrono::duration_cast<lease::Duration>(std::chrono::seconds(seconds));
}

void require_holder(const std::string& holder) {
  if (holder.empty())
    throw CatalogError(ErrorCode::kInvalidArgument, "the holder is required, e.g. {\"holder\": \"node-a\"}");
}

}  // namespace

LeaseService::LeaseService(lease::LeaseManager& leases, const storage::VolumeRegistry& volumes)
    : leases_(leases), volumes_(volumes) {}

std::shared_ptr<storage::Volume> LeaseService::require_volume(const std::string& volume) const {
  auto found = volumes_.find(volume);
  if (!found || volume.empty())
    throw CatalogError(ErrorCode::kNotFound, "volume '" + volume + "' does not exist");
  return found;
}

std::vector<v1::Lease> LeaseService::list() const {
  std::vector<v1::Lease> out;
  for (const auto& volume : volumes_.list()) out.push_back(to_proto(leases_.show(volume->name())));
  return out;
}

v1::Lease LeaseService::show(const std::string& volume) const {
  require_volume(volume);
  return translated([&] { return to_proto(leases_.show(volume)); });
}

v1::Lease LeaseService::acquire(const std::string& volume, const v1::AcquireLeaseRequest& request) {
  auto live = require_volume(volume);
  require_holder(request.holder());
  const auto mode = parse_mode(request.mode());
  return translated([&] {
    return to_proto(leases_.acquire(volume, request.holder(), mode, live->allowed_modes(), ttl_of(request.ttl_seconds())));
  });
}

v1::Lease LeaseService::renew(const std::string& volume, const v1::RenewLeaseRequest& request) {
  require_volume(volume);
  require_holder(request.holder());
  return translated([&] { return to_proto(leases_.renew(volume, request.holder(), ttl_of(request.ttl_seconds()))); });
}

v1::Lease LeaseService::release(const std::string& volume, const v1::ReleaseLeaseRequest& request) {
  require_volume(volume);
  require_holder(request.holder());
  return translated([&] { return to_proto(leases_.release(volume, request.holder())); });
}

v1::BreakLeaseResponse LeaseService::break_lease(const std::string& volume, const v1::BreakLeaseRequest& request) {
  require_volume(volume);
  std::optional<std::string> to;
  if (!request.to_holder().empty()) to = request.to_holder();
  // on_finished runs on whichever worker closes the last fenced session.
  auto finished = std::make_shared<std::promise<void>>();
  std::future<void> done = finished->get_future();
  const lease::BreakStart start = translated([&] {
    return leases_.begin_break(volume, to, [finished] { finished->set_value(); }, ttl_of(request.ttl_seconds()));
  });
  if (done.wait_for(kBreakTimeout) != std::future_status::ready)
    throw CatalogError(ErrorCode::kUnavailable,
                       "the lease on volume '" + volume + "' is broken (generation " + std::to_string(start.generation) +
                           ") but " + std::to_string(start.fenced_connections) +
                           " session(s) of the old holder have not finished their writes after " +
                           std::to_string(kBreakTimeout.count()) + " s; the break completes when they do");
  v1::BreakLeaseResponse response;
  *response.mutable_lease() = to_proto(leases_.show(volume));
  for (const auto& holder : start.fenced_holders) response.add_fenced_holders(holder);
  response.set_fenced_connections(static_cast<std::uint32_t>(start.fenced_connections));
  return response;
}

}  // namespace blockd::server
