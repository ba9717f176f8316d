// ControlClient against a fake HTTP server on a Unix socket: requests as sent, answers
// parsed, ErrorResponse turned into ControlError, and the message when nothing listens.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "client/control_client.h"
#include "client/control_error.h"

namespace blockd::client {
namespace {

// Accepts one connection, records the request, sends `answer`, closes.
class FakeHttpServer {
 public:
  explicit FakeHttpServer(std::string answer) : answer_(std::move(answer)) {
    char dir[] = "/tmp/blockctl-http-XXXXXX";
    dir_ = ::mkdtemp(dir);
    path_ = dir_ + "/control.sock";
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path_.c_str(), sizeof sa.sun_path - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeHttpServer() {
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  ServerAddress address() const {
    std::string error;
    return *ServerAddress::parse("unix://" + path_, error);
  }
  std::string request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  void serve() {
    const int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    char buf[4096];
    // Read the head, then as many body bytes as Content-Length says.
    for (;;) {
      const ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      request_.append(buf, static_cast<std::size_t>(n));
      const auto head_end = request_.find("\r\n\r\n");
      if (head_end == std::string::npos) continue;
      std::size_t length = 0;
      if (auto cl = request_.find("Content-Length: "); cl != std::string::npos)
        length = std::stoul(request_.substr(cl + 16));
      if (request_.size() >= head_end + 4 + length) break;
    }
    (void)!::write(c, answer_.data(), answer_.size());
    ::close(c);
  }

  std::string answer_;
  std::string dir_;
  std::string path_;
  int fd_ = -1;
  std::string request_;
  std::thread thread_;
};

std::string http(int status, const std::string& reason, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

TEST(ControlClient, CreateSendsTheProtoJsonAndParsesTheVolume) {
  FakeHttpServer server(http(201, "Created",
                             R"({"name":"db","sizeBytes":"10737418240","storageClass":"fast",)"
                             R"("accessModes":["READ_WRITE_ONCE"],"futureField":1})"));
  ControlClient client(server.address());
  v1::CreateVolumeRequest request;
  request.set_name("db");
  request.set_size("10737418240");
  (*request.mutable_labels())["app"] = "pg";
  const v1::Volume v = client.create_volume(request);
  EXPECT_EQ(v.name(), "db");
  EXPECT_EQ(v.size_bytes(), 10ULL << 30);
  EXPECT_EQ(v.storage_class(), "fast");  // and the unknown field was ignored
  const std::string sent = server.request();
  EXPECT_EQ(sent.rfind("POST /v1/volumes HTTP/1.1\r\n", 0), 0u) << sent;
  EXPECT_NE(sent.find("Content-Type: application/json\r\n"), std::string::npos) << sent;
  EXPECT_NE(sent.find(R"("name":"db")"), std::string::npos) << sent;
  EXPECT_NE(sent.find(R"("size":"10737418240")"), std::string::npos) << sent;
  EXPECT_NE(sent.find(R"("labels":{"app":"pg"})"), std::string::npos) << sent;
}

TEST(ControlClient, ListEncodesFilters) {
  FakeHttpServer server(http(200, "OK", R"({"volumes":[{"name":"a"},{"name":"b"}]})"));
  ControlClient client(server.address());
  const auto list = client.list_volumes("fast", {{"app", "p g"}, {"tier", "db"}});
  EXPECT_EQ(list.volumes_size(), 2);
  EXPECT_EQ(server.request().rfind("GET /v1/volumes?class=fast&label=app=p%20g&label=tier=db HTTP/1.1\r\n", 0), 0u)
      << server.request();
}

TEST(ControlClient, ErrorResponseBecomesControlError) {
  FakeHttpServer server(http(404, "Not Found", R"({"code":"not_found","message":"volume \"db\" not found"})"));
  ControlClient client(server.address());
  try {
    client.get_volume("db");
    FAIL();
  } catch (const ControlError& e) {
    EXPECT_EQ(e.code(), "not_found");
    EXPECT_EQ(e.http_status(), 404u);
    EXPECT_STREQ(e.what(), "volume \"db\" not found");
  }
}

TEST(ControlClient, NonJsonErrorStillSaysTheStatus) {
  FakeHttpServer server(http(502, "Bad Gateway", "upstream down"));
  ControlClient client(server.address());
  try {
    client.delete_volume("db");
    FAIL();
  } catch (const ControlError& e) {
    EXPECT_EQ(e.code(), "protocol");
    EXPECT_NE(std::string(e.what()).find("HTTP 502: upstream down"), std::string::npos) << e.what();
  }
  EXPECT_EQ(server.request().rfind("DELETE /v1/volumes/db HTTP/1.1\r\n", 0), 0u);
}

TEST(ControlClient, ResizeNamesTheVolume) {
  FakeHttpServer server(http(200, "OK", R"({"name":"db","sizeBytes":"2048"})"));
  ControlClient client(server.address());
  EXPECT_EQ(client.resize_volume("db", "2048").size_bytes(), 2048u);
  const std::string sent = server.request();
  EXPECT_EQ(sent.rfind("POST /v1/volumes/db/resize HTTP/1.1\r\n", 0), 0u) << sent;
  EXPECT_NE(sent.find(R"("size":"2048")"), std::string::npos) << sent;
}

TEST(ControlClient, NobodyListening) {
  std::string error;
  ControlClient client(*ServerAddress::parse("unix:///tmp/blockctl-test-no-such-dir/control.sock", error));
  try {
    client.status();
    FAIL();
  } catch (const ControlError& e) {
    EXPECT_EQ(e.code(), "unreachable");
    EXPECT_STREQ(e.what(),
                 "cannot reach blockd at unix:///tmp/blockctl-test-no-such-dir/control.sock: No such file or "
                 "directory; is blockd running? set --server or BLOCKD_SERVER");
  }
}

TEST(ControlClient, ServerThatSaysNothingTimesOut) {
  char dir[] = "/tmp/blockctl-http-XXXXXX";
  const std::string d = ::mkdtemp(dir);
  const std::string path = d + "/s.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 1), 0);  // accepted by the kernel, never answered
  std::string error;
  ControlClient client(*ServerAddress::parse("unix:" + path, error), std::chrono::milliseconds(300));
  try {
    client.status();
    FAIL();
  } catch (const ControlError& e) {
    EXPECT_NE(std::string(e.what()).find("did not answer GET /v1/status"), std::string::npos) << e.what();
  }
  ::close(fd);
  ::unlink(path.c_str());
  ::rmdir(d.c_str());
}

}  // namespace
}  // namespace blockd::client
