// ApiHandler: the control API's routes (server/control/README.md), one HTTP request in,
// one response out. It knows nothing of sockets, so unit tests drive it directly.
//
// Bodies are protobuf's JSON mapping of common/proto/blockd.proto: parsed strictly
// (unknown fields and wrong types are 400s) and printed with every field. Every error is
// an ErrorResponse with the HTTP status of its code; a rejected request changes nothing
// (validation happens before anything is touched; see VolumeService and Catalog).
//
// Thread affinity: the control thread; the VolumeService it calls is thread-safe.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/proto/blockd.pb.h"
#include "server/lease_service.h"
#include "server/volume_service.h"

namespace blockd::server::control {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

inline constexpr std::size_t kMaxBodyBytes = 64 * 1024;

// What /v1/status and /readyz need from the rest of the process.
struct NodeState {
  std::vector<std::string> nbd_listen;
  std::string state_dir;
  unsigned workers = 0;
  std::chrono::steady_clock::time_point started{};
  std::function<bool()> listening;  // false once shutdown has closed the listeners
  std::function<std::string()> metrics;  // the Prometheus text for GET /metrics
};

class ApiHandler {
 public:
  ApiHandler(VolumeService& volumes, LeaseService& leases, NodeState node);

  // `metrics_only`: the request came on the metrics listener, which serves only
  // /metrics, /healthz and /readyz (never the volume API).
  Response handle(const Request& request, bool metrics_only = false);

  // An ErrorResponse with the status of `code` ("invalid_argument" -> 400, ...).
  static Response error(unsigned version, http::status status, const std::string& code,
                        const std::string& message);

 private:
  Response route(const Request& request, bool metrics_only);
  Response volumes_collection(const Request& request, const std::string& query);
  Response volume_item(const Request& request, const std::string& name);
  Response volume_resize(const Request& request, const std::string& name);
  // /v1/volumes/NAME/lease and /v1/volumes/NAME/lease/{acquire,renew,release,break}.
  Response volume_lease(const Request& request, const std::string& name, const std::string& operation);
  Response status(const Request& request);
  Response ready(const Request& request);

  VolumeService& volumes_;
  LeaseService& leases_;
  NodeState node_;
};

}  // namespace blockd::server::control
