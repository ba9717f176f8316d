#include "server/control/api_handler.h"

#include <google/protobuf/util/json_util.h>

#include <boost/beast/http/field.hpp>

#include "common/logging.h"
#include "common/names.h"
#include "server/catalog/catalog_error.h"

namespace blockd::server::control {

using catalog::CatalogError;
using catalog::ErrorCode;

namespace {

// Thrown inside a route, answered by handle(): a 4xx that names what to fix.
struct HttpError {
  http::status status;
  std::string code;
  std::string message;
};

http::status status_of(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return http::status::bad_request;
    case ErrorCode::kNotFound: return http::status::not_found;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kFailedPrecondition: return http::status::conflict;
    case ErrorCode::kResourceExhausted: return http::status::insufficient_storage;
    case ErrorCode::kUnavailable: return http::status::service_unavailable;
    case ErrorCode::kDataLoss:
    case ErrorCode::kInternal: return http::status::internal_server_error;
  }
  return http::status::internal_server_error;
}

std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) return "{}";
  return json + "\n";
}

Response json_response(const Request& request, http::status status, const google::protobuf::Message& body) {
  Response response{status, request.version()};
  response.set(http::field::content_type, "application/json");
  response.body() = to_json(body);
  return response;
}

Response plain_json(const Request& request, http::status status, std::string body) {
  Response response{status, request.version()};
  response.set(http::field::content_type, "application/json");
  response.body() = std::move(body);
  return response;
}

[[noreturn]] void method_not_allowed(const Request& request, const std::string& allowed) {
  throw HttpError{http::status::method_not_allowed, "method_not_allowed",
                  std::string(request.method_string()) + " is not allowed on " + std::string(request.target()) +
                      "; use " + allowed};
}

// Parses the body as `message`, strictly. An empty body is refused: every route that
// takes one needs at least a field.
void parse_body(const Request& request, google::protobuf::Message& message) {
  // curl -d sends application/x-www-form-urlencoded unless told otherwise; `curl
  // --unix-socket ... -d '{...}'` must be enough (DESIGN.md §5), so that type is read as
  // JSON too. Anything else that is not JSON is refused.
  const auto type = request[http::field::content_type];
  if (!type.empty() && type.substr(0, 16) != "application/json" &&
      type.substr(0, 33) != "application/x-www-form-urlencoded")
    throw HttpError{http::status::unsupported_media_type, "unsupported_media_type",
                    "the body must be JSON (Content-Type: application/json), not " + std::string(type)};
  if (request.body().empty())
    throw HttpError{http::status::bad_request, "invalid_argument",
                    "a JSON body is required, e.g. {\"name\": \"db\", \"size\": \"10GiB\"}"};
  const auto status = google::protobuf::util::JsonStringToMessage(request.body(), &message);
  if (!status.ok())
    throw HttpError{http::status::bad_request, "invalid_argument",
                    "the body is not a valid " + message.GetDescriptor()->name() + ": " +
                        std::string(status.message())};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() + 0 && hex_value(text[i + 1]) >= 0 &&
               hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else if (text[i] == '%') {
      throw HttpError{http::status::bad_request, "invalid_argument",
                      "bad percent-encoding in the query: " + std::string(text)};
    } else {
      out += text[i];
    }
  }
  return out;
}

// ?class=C&label=k=v&label=k2=v2
catalog::VolumeFilter parse_filter(const std::string& query) {
  catalog::VolumeFilter filter;
  std::size_t start = 0;
  while (start < query.size()) {
    std::size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string_view item(query.data() + start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const std::string key = percent_decode(item.substr(0, eq));
    const std::string value = eq == std::string_view::npos ? "" : percent_decode(item.substr(eq + 1));
    if (key == "class") {
      filter.storage_class = value;
    } else if (key == "label") {
      const auto label_eq = value.find('=');
      if (label_eq == std::string::npos || label_eq == 0)
        throw HttpError{http::status::bad_request, "invalid_argument",
                        "label filter '" + value + "' must be KEY=VALUE, e.g. label=app=postgres"};
      filter.labels[value.substr(0, label_eq)] = value.substr(label_eq + 1);
    } else {
      throw HttpError{http::status::bad_request, "invalid_argument",
                      "unknown query parameter '" + key + "'; the filters are class=NAME and label=KEY=VALUE"};
    }
  }
  return filter;
}

void require_volume_name(const std::string& name) {
  if (!common::is_dns_label(name))
    throw HttpError{http::status::bad_request, "invalid_argument",
                    "'" + name + "' is not a volume name: 1-63 lowercase letters, digits or '-', starting and "
                    "ending with a letter or digit"};
}

}  // namespace

ApiHandler::ApiHandler(VolumeService& volumes, LeaseService& leases, NodeState node)
    : volumes_(volumes), leases_(leases), node_(std::move(node)) {}

Response ApiHandler::error(unsigned version, http::status status, const std::string& code,
                           const std::string& message) {
  v1::ErrorResponse body;
  body.set_code(code);
  body.set_message(message);
  Response response{status, version};
  response.set(http::field::content_type, "application/json");
  response.body() = to_json(body);
  return response;
}

Response ApiHandler::handle(const Request& request, bool metrics_only) {
  auto log = common::logger("control");
  try {
    Response response = route(request, metrics_only);
    log->debug("request method={} target={} status={}", std::string(request.method_string()),
               std::string(request.target()), response.result_int());
    return response;
  } catch (const HttpError& e) {
    log->info("request refused method={} target={} status={} code={} message=\"{}\"",
              std::string(request.method_string()), std::string(request.target()), static_cast<unsigned>(e.status),
              e.code, e.message);
    Response response = error(request.version(), e.status, e.code, e.message);
    if (e.status == http::status::method_not_allowed) {
      const auto use = e.message.rfind("; use ");
      if (use != std::string::npos) response.set(http::field::allow, e.message.substr(use + 6));
    }
    return response;
  } catch (const CatalogError& e) {
    const std::string code(catalog::to_string(e.code()));
    (e.code() == ErrorCode::kInternal ? log->error("request failed method={} target={} code={} message=\"{}\"",
                                                   std::string(request.method_string()),
                                                   std::string(request.target()), code, e.what())
                                      : log->info("request refused method={} target={} code={} message=\"{}\"",
                                                  std::string(request.method_string()),
                                                  std::string(request.target()), code, e.what()));
    return error(request.version(), status_of(e.code()), code, e.what());
  } catch (const std::exception& e) {
    log->error("request failed method={} target={} error=\"{}\"", std::string(request.method_string()),
               std::string(request.target()), e.what());
    return error(request.version(), http::status::internal_server_error, "internal",
                 std::string("internal error: ") + e.what() + " (see blockd's log)");
  }
}

Response ApiHandler::route(const Request& request, bool metrics_only) {
  const std::string target(request.target());
  const auto question = target.find('?');
  const std::string path = target.substr(0, question);
  const std::string query = question == std::string::npos ? "" : target.substr(question + 1);
  const auto method = request.method();
  const auto get_only = [&] {
    if (method != http::verb::get) method_not_allowed(request, "GET");
  };

  if (path == "/healthz") {
    get_only();
    return plain_json(request, http::status::ok, "{\"status\":\"ok\"}\n");
  }
  if (path == "/readyz") {
    get_only();
    return ready(request);
  }
  if (path == "/metrics") {
    get_only();
    Response response{http::status::ok, request.version()};
    response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.body() = node_.metrics ? node_.metrics() : std::string();
    return response;
  }
  if (metrics_only)
    throw HttpError{http::status::not_found, "not_found",
                    "the metrics listener serves /metrics, /healthz and /readyz only; the API is on the control socket"};
  if (path == "/v1/status") {
    get_only();
    return status(request);
  }
  if (path == "/v1/storage-classes") {
    get_only();
    v1::ListStorageClassesResponse body;
    for (auto& cls : volumes_.storage_classes()) *body.add_storage_classes() = std::move(cls);
    return json_response(request, http::status::ok, body);
  }
  if (path == "/v1/volumes" || path == "/v1/volumes/") return volumes_collection(request, query);

  if (path == "/v1/leases") {
    get_only();
    v1::ListLeasesResponse body;
    for (auto& lease : leases_.list()) *body.add_leases() = std::move(lease);
    return json_response(request, http::status::ok, body);
  }

  constexpr std::string_view kVolumes = "/v1/volumes/";
  if (path.rfind(kVolumes, 0) == 0) {
    std::string rest = path.substr(kVolumes.size());
    // NAME/lease or NAME/lease/OPERATION
    if (const auto slash = rest.find('/'); slash != std::string::npos && rest.compare(slash, 6, "/lease") == 0 &&
                                           (rest.size() == slash + 6 || rest[slash + 6] == '/')) {
      const std::string operation = rest.size() == slash + 6 ? "" : rest.substr(slash + 7);
      if (operation.find('/') == std::string::npos) return volume_lease(request, rest.substr(0, slash), operation);
    }
    constexpr std::string_view kResize = "/resize";
    if (rest.size() > kResize.size() && rest.compare(rest.size() - kResize.size(), kResize.size(), kResize) == 0) {
      rest.resize(rest.size() - kResize.size());
      if (rest.find('/') == std::string::npos) return volume_resize(request, rest);
    } else if (rest.find('/') == std::string::npos) {
      return volume_item(request, rest);
    }
  }
  throw HttpError{http::status::not_found, "not_found",
                  "no such route: " + path +
                      "; the API has /v1/volumes, /v1/volumes/NAME, /v1/volumes/NAME/resize, "
                      "/v1/volumes/NAME/lease[/acquire|/renew|/release|/break], /v1/leases, "
                      "/v1/storage-classes, /v1/status, /healthz and /readyz"};
}

Response ApiHandler::volumes_collection(const Request& request, const std::string& query) {
  if (request.method() == http::verb::get) {
    v1::ListVolumesResponse body;
    for (auto& volume : volumes_.list(parse_filter(query))) *body.add_volumes() = std::move(volume);
    return json_response(request, http::status::ok, body);
  }
  if (request.method() == http::verb::post) {
    v1::CreateVolumeRequest create;
    parse_body(request, create);
    return json_response(request, http::status::created, volumes_.create(create));
  }
  method_not_allowed(request, "GET, POST");
}

Response ApiHandler::volume_item(const Request& request, const std::string& name) {
  require_volume_name(name);
  if (request.method() == http::verb::get) {
    auto volume = volumes_.find(name);
    if (!volume) throw CatalogError(ErrorCode::kNotFound, "volume '" + name + "' does not exist");
    return json_response(request, http::status::ok, *volume);
  }
  if (request.method() == http::verb::delete_) {
    volumes_.remove(name);
    Response response{http::status::no_content, request.version()};
    return response;
  }
  method_not_allowed(request, "GET, DELETE");
}

Response ApiHandler::volume_resize(const Request& request, const std::string& name) {
  require_volume_name(name);
  if (request.method() != http::verb::post) method_not_allowed(request, "POST");
  v1::ResizeVolumeRequest resize;
  parse_body(request, resize);
  if (!resize.name().empty() && resize.name() != name)
    throw HttpError{http::status::bad_request, "invalid_argument",
                    "the body names volume '" + resize.name() + "' but the path names '" + name +
                        "'; omit \"name\" from the body"};
  resize.set_name(name);
  return json_response(request, http::status::ok, volumes_.resize(resize));
}

Response ApiHandler::volume_lease(const Request& request, const std::string& name, const std::string& operation) {
  require_volume_name(name);
  if (operation.empty()) {
    if (request.method() != http::verb::get) method_not_allowed(request, "GET");
    return json_response(request, http::status::ok, leases_.show(name));
  }
  if (operation != "acquire" && operation != "renew" && operation != "release" && operation != "break")
    throw HttpError{http::status::not_found, "not_found",
                    "no lease operation '" + operation + "'; use acquire, renew, release or break"};
  if (request.method() != http::verb::post) method_not_allowed(request, "POST");
  if (operation == "acquire") {
    v1::AcquireLeaseRequest body;
    parse_body(request, body);
    return json_response(request, http::status::ok, leases_.acquire(name, body));
  }
  if (operation == "renew") {
    v1::RenewLeaseRequest body;
    parse_body(request, body);
    return json_response(request, http::status::ok, leases_.renew(name, body));
  }
  if (operation == "release") {
    v1::ReleaseLeaseRequest body;
    parse_body(request, body);
    return json_response(request, http::status::ok, leases_.release(name, body));
  }
  // A break may have no body at all (nobody gets the lease afterwards).
  v1::BreakLeaseRequest body;
  if (!request.body().empty()) parse_body(request, body);
  return json_response(request, http::status::ok, leases_.break_lease(name, body));
}

Response ApiHandler::status(const Request& request) {
  v1::StatusResponse body;
  body.set_version("0.1.0");
  for (const auto& address : node_.nbd_listen) body.add_nbd_listen(address);
  body.set_state_dir(node_.state_dir);
  body.set_uptime_seconds(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - node_.started).count()));
  body.set_workers(node_.workers);
  for (auto& volume : volumes_.exported()) *body.add_volumes() = std::move(volume);
  return json_response(request, http::status::ok, body);
}

Response ApiHandler::ready(const Request& request) {
  if (node_.listening && !node_.listening())
    throw CatalogError(ErrorCode::kUnavailable, "blockd is shutting down");
  const auto poisoned = volumes_.poisoned();
  if (!poisoned.empty()) {
    std::string names;
    for (const auto& name : poisoned) names += (names.empty() ? "" : ", ") + name;
    throw CatalogError(ErrorCode::kUnavailable,
                       "poisoned: " + names + "; writes (or catalog changes) fail until blockd restarts");
  }
  return plain_json(request, http::status::ok, "{\"status\":\"ready\"}\n");
}

}  // namespace blockd::server::control
