// ControlClient: a synchronous HTTP/1.1 client of blockd's control API
// (server/control/README.md), over a Unix socket or TCP, with Boost.Beast.
//
// One connection per request ("Connection: close"): blockctl makes a handful of calls,
// and a fresh connection never meets a server that closed an idle one.
// Bodies are protobuf's JSON mapping of common/proto/blockd.proto; unknown fields in
// answers are ignored so that an older blockctl keeps working with a newer blockd.
//
// Thread affinity: none; an instance holds no connection, but is not meant to be shared
// between threads while a call runs. Every call throws ControlError on failure.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client/server_address.h"
#include "common/proto/blockd.pb.h"

namespace blockd::client {

struct HttpResponse {
  unsigned status = 0;
  std::string body;
};

class ControlClient {
 public:
  explicit ControlClient(ServerAddress address,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));

  const ServerAddress& address() const { return address_; }

  // Raw calls: any HTTP status is returned; only transport failures throw.
  HttpResponse get(std::string_view target);
  HttpResponse post(std::string_view target, std::string_view json_body);
  HttpResponse del(std::string_view target);

  // Typed calls: a non-2xx answer throws ControlError with the server's code and message.
  v1::StatusResponse status();
  v1::ListVolumesResponse list_volumes(const std::string& storage_class,
                                       const std::map<std::string, std::string>& labels);
  v1::Volume get_volume(const std::string& name);
  v1::Volume create_volume(const v1::CreateVolumeRequest& request);
  v1::Volume resize_volume(const std::string& name, const std::string& size);
  void delete_volume(const std::string& name);
  v1::ListStorageClassesResponse list_storage_classes();
  // POST /v1/volumes/NAME/lease/release for `holder` (DESIGN.md §4).
  v1::Lease release_lease(const std::string& name, const std::string& holder);

 private:
  HttpResponse request(unsigned method, std::string_view target, std::string_view body);

  ServerAddress address_;
  std::chrono::milliseconds timeout_;
};

// Percent-encodes everything but RFC 3986 unreserved characters, for query values.
std::string url_encode(std::string_view text);

// Throws ControlError built from an ErrorResponse body (or from the bare status when
// the body is not one) unless `response` is 2xx.
void throw_unless_success(const HttpResponse& response);

// protobuf JSON mapping, both ways. to_json prints default values too (as the API does)
// and, with `pretty`, indents. from_json throws ControlError("protocol") on bad JSON.
std::string to_json(const google::protobuf::Message& message, bool pretty);
void from_json(std::string_view json, google::protobuf::Message& message);

}  // namespace blockd::client
