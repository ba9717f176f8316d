#include "client/control_client.h"

#include <google/protobuf/util/json_util.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <exception>

#include "client/control_error.h"

namespace blockd::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// Answers larger than this are not from blockd (a list of thousands of volumes is a few MiB).
constexpr std::uint64_t kMaxResponseBody = 64ULL << 20;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// What went wrong in one exchange, kept apart from the exception so that the caller can
// tell "could not connect" from "connected, then failed".
struct Outcome {
  bool connected = false;
  boost::system::error_code error;
  std::exception_ptr exception;
};

// One request and its answer on a fresh stream. The stream's expiry bounds the whole
// exchange: a server that accepts and then says nothing cannot hang blockctl.
// Pointers, not references: the caller's frame outlives the io_context run.
template <typename Stream, typename Endpoints>
asio::awaitable<void> exchange(Stream* stream, Endpoints endpoints, Request* request,
                               Response* response, std::chrono::milliseconds timeout,
                               Outcome* outcome) {
  try {
    stream->expires_after(timeout);
    co_await stream->async_connect(endpoints, asio::use_awaitable);
    outcome->connected = true;
    stream->expires_after(timeout);
    co_await http::async_write(*stream, *request, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    co_await http::async_read(*stream, buffer, parser, asio::use_awaitable);
    *response = parser.release();
  } catch (const boost::system::system_error& e) {
    outcome->error = e.code();
  } catch (...) {
    outcome->exception = std::current_exception();
  }
}

std::string describe_connect_error(const ServerAddress& address, const boost::system::error_code& ec) {
  std::string why = ec == beast::error::timeout ? "timed out" : ec.message();
  std::string hint = "; is blockd running? set --server or BLOCKD_SERVER";
  if (ec == boost::system::errc::permission_denied)
    hint = "; run as root or as a member of the socket's group, or set --server or BLOCKD_SERVER";
  return "cannot reach blockd at " + address.to_string() + ": " + why + hint;
}

template <typename Protocol, typename Endpoints>
void run_exchange(asio::io_context& io, Endpoints endpoints, Request& request, Response& response,
                  std::chrono::milliseconds timeout, Outcome& outcome) {
  beast::basic_stream<Protocol> stream(io);
  asio::co_spawn(io, exchange(&stream, std::move(endpoints), &request, &response, timeout, &outcome),
                 asio::detached);
  io.run();
}

}  // namespace

ControlClient::ControlClient(ServerAddress address, std::chrono::milliseconds timeout)
    : address_(std::move(address)), timeout_(timeout) {}

HttpResponse ControlClient::get(std::string_view target) {
  return request(static_cast<unsigned>(http::verb::get), target, {});
}

HttpResponse ControlClient::post(std::string_view target, std::string_view json_body) {
  return request(static_cast<unsigned>(http::verb::post), target, json_body);
}

HttpResponse ControlClient::del(std::string_view target) {
  return request(static_cast<unsigned>(http::verb::delete_), target, {});
}

HttpResponse ControlClient::request(unsigned method, std::string_view target, std::string_view body) {
  Request req{static_cast<http::verb>(method), std::string(target), 11};
  // A Unix socket has no host name; "localhost" is what curl --unix-socket sends.
  req.set(http::field::host, address_.kind() == ServerAddress::Kind::kUnix
                                 ? std::string("localhost")
                                 : address_.host());
  req.set(http::field::user_agent, "blockctl");
  req.set(http::field::accept, "application/json");
  req.set(http::field::connection, "close");
  if (static_cast<http::verb>(method) == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::string(body);
  }
  req.prepare_payload();

  asio::io_context io;
  Response res;
  Outcome outcome;
  if (address_.kind() == ServerAddress::Kind::kUnix) {
    using Local = asio::local::stream_protocol;
    run_exchange<Local>(io, Local::endpoint(address_.path()), req, res, timeout_, outcome);
  } else {
    asio::ip::tcp::resolver resolver(io);
    boost::system::error_code ec;
    auto endpoints = resolver.resolve(address_.host(), std::to_string(address_.port()), ec);
    if (ec) throw ControlError("unreachable", describe_connect_error(address_, ec), 0);
    run_exchange<asio::ip::tcp>(io, endpoints, req, res, timeout_, outcome);
  }
  if (outcome.exception) std::rethrow_exception(outcome.exception);
  if (outcome.error) {
    if (!outcome.connected)
      throw ControlError("unreachable", describe_connect_error(address_, outcome.error), 0);
    const std::string why = outcome.error == beast::error::timeout ? "no answer within " +
                                std::to_string(timeout_.count() / 1000) + " s"
                                : outcome.error.message();
    throw ControlError("unreachable",
                       "blockd at " + address_.to_string() + " did not answer " +
                           std::string(http::to_string(static_cast<http::verb>(method))) + " " +
                           std::string(target) + ": " + why,
                       0);
  }
  return HttpResponse{res.result_int(), std::move(res.body())};
}

void throw_unless_success(const HttpResponse& response) {
  if (response.status >= 200 && response.status < 300) return;
  v1::ErrorResponse error;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto parsed = google::protobuf::util::JsonStringToMessage(response.body, &error, options);
  if (parsed.ok() && !error.code().empty()) {
    throw ControlError(error.code(), error.message(), response.status);
  }
  // Not blockd's ErrorResponse: perhaps a proxy, or something else on that socket.
  std::string excerpt = response.body.substr(0, 200);
  throw ControlError("protocol",
                     "the server answered HTTP " + std::to_string(response.status) +
                         (excerpt.empty() ? std::string() : ": " + excerpt),
                     response.status);
}

std::string to_json(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.always_print_primitive_fields = true;
  std::string out;
  const auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) throw ControlError("protocol", "cannot print JSON: " + status.ToString(), 0);
  return out;
}

void from_json(std::string_view json, google::protobuf::Message& message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // a newer blockd may add fields
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &message, options);
  if (!status.ok()) {
    throw ControlError("protocol",
                       "blockd's answer is not a valid " + message.GetDescriptor()->name() +
                           ": " + status.ToString(),
                       0);
  }
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

namespace {

template <typename M>
M parse_answer(const HttpResponse& response) {
  throw_unless_success(response);
  M message;
  from_json(response.body, message);
  return message;
}

}  // namespace

v1::StatusResponse ControlClient::status() { return parse_answer<v1::StatusResponse>(get("/v1/status")); }

v1::ListVolumesResponse ControlClient::list_volumes(const std::string& storage_class,
                                                    const std::map<std::string, std::string>& labels) {
  std::string target = "/v1/volumes";
  char separator = '?';
  if (!storage_class.empty()) {
    target += separator + std::string("class=") + url_encode(storage_class);
    separator = '&';
  }
  for (const auto& [key, value] : labels) {
    target += separator + std::string("label=") + url_encode(key) + "=" + url_encode(value);
    separator = '&';
  }
  return parse_answer<v1::ListVolumesResponse>(get(target));
}

v1::Volume ControlClient::get_volume(const std::string& name) {
  return parse_answer<v1::Volume>(get("/v1/volumes/" + url_encode(name)));
}

v1::Volume ControlClient::create_volume(const v1::CreateVolumeRequest& request) {
  return parse_answer<v1::Volume>(post("/v1/volumes", to_json(request, false)));
}

v1::Volume ControlClient::resize_volume(const std::string& name, const std::string& size) {
  v1::ResizeVolumeRequest request;
  // Sent although optional: with default values printed, an empty name would be "given".
  request.set_name(name);
  request.set_size(size);
  return parse_answer<v1::Volume>(post("/v1/volumes/" + url_encode(name) + "/resize", to_json(request, false)));
}

void ControlClient::delete_volume(const std::string& name) {
  throw_unless_success(del("/v1/volumes/" + url_encode(name)));
}

v1::ListStorageClassesResponse ControlClient::list_storage_classes() {
  return parse_answer<v1::ListStorageClassesResponse>(get("/v1/storage-classes"));
}

v1::Lease ControlClient::release_lease(const std::string& name, const std::string& holder) {
  v1::ReleaseLeaseRequest request;
  request.set_holder(holder);
  return parse_answer<v1::Lease>(post("/v1/volumes/" + url_encode(name) + "/lease/release", to_json(request, false)));
}

}  // namespace blockd::client
