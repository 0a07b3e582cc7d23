// The S3 client against a real s3rver (npm s3rver@3) on 127.0.0.1, started once per binary.
// s3rver is found through CK_S3RVER (the path of its bin, set by scripts/test.sh) or the cache
// that scripts/s3rver.sh installs into; without it every test is skipped with the reason.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/s3/client.h"

extern char** environ;

namespace ck::s3 {
namespace {

namespace fs = std::filesystem;

std::string md5_hex(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_md5(), nullptr);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", out[i]);
    hex += buf;
  }
  return hex;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string s3rver_path() {
  if (const char* p = std::getenv("CK_S3RVER"); p != nullptr && *p != '\0') {
    return p;
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/cloudyknight/s3rver/node_modules/.bin/s3rver";
}

/// One s3rver for the whole binary.
struct S3rver {
  pid_t pid = -1;
  int port = 0;
  fs::path dir;
  std::string skip_reason;

  void start() {
    std::string bin = s3rver_path();
    if (::access(bin.c_str(), X_OK) != 0) {
      skip_reason = "s3rver not found at " + bin +
                    " (run scripts/s3rver.sh or set CK_S3RVER to the s3rver bin)";
      return;
    }
    char tmpl[] = "/tmp/ck-s3rver-XXXXXX";
    dir = ::mkdtemp(tmpl);
    port = free_port();
    std::string port_s = std::to_string(port);
    std::string dir_s = dir.string();
    std::vector<std::string> args = {bin,    "--address",   "127.0.0.1", "--port",
                                     port_s, "--directory", dir_s,       "--silent"};
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).substr(0, 13) != "NODE_OPTIONS=") {
        env_s.emplace_back(*e);
      }
    }
    env_s.emplace_back("NODE_OPTIONS=--openssl-legacy-provider");
    std::vector<char*> envp;
    for (auto& e : env_s) {
      envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    int rc = ::posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid = -1;
      skip_reason = "could not start s3rver at " + bin;
      return;
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int fd = connect_to(port);
      if (fd >= 0) {
        ::close(fd);
        return;
      }
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        skip_reason = "s3rver exited at startup (status " + std::to_string(status) + ")";
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    skip_reason = "s3rver did not listen on 127.0.0.1:" + port_s + " within 20 s";
  }

  void stop() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int status = 0;
      ::waitpid(pid, &status, 0);
      pid = -1;
    }
    if (!dir.empty()) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  }
};

S3rver& server() {
  static S3rver s;
  return s;
}

class S3rverEnv : public ::testing::Environment {
 public:
  void SetUp() override { server().start(); }
  void TearDown() override { server().stop(); }
};

const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new S3rverEnv);

ClientOptions options(int port, int max_retries = 4) {
  ClientOptions o;
  o.endpoint = "http://127.0.0.1:" + std::to_string(port);
  o.credentials = {"S3RVER", "S3RVER", ""};
  o.max_retries = max_retries;
  o.timeout = std::chrono::milliseconds(10000);
  return o;
}

#define REQUIRE_S3RVER()                    \
  do {                                      \
    if (!server().skip_reason.empty()) {    \
      GTEST_SKIP() << server().skip_reason; \
    }                                       \
  } while (0)

/// Forwards each request (one per connection) to s3rver, but answers the first `faults`
/// requests with a 500 or by closing the connection; records every request's header block.
class FaultProxy {
 public:
  FaultProxy(int upstream, int faults, bool close_mode)
      : upstream_(upstream), faults_(faults), close_mode_(close_mode) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~FaultProxy() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  std::vector<std::string> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        continue;
      }
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) {
        continue;
      }
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      handle(c);
      ::close(c);
    }
  }

  void handle(int c) {
    std::string req;
    char buf[65536];
    std::size_t head_end;
    while ((head_end = req.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) {
        return;
      }
      req.append(buf, static_cast<std::size_t>(n));
    }
    std::string head = req.substr(0, head_end + 4);
    std::string lower_head = head;
    std::transform(lower_head.begin(), lower_head.end(), lower_head.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    std::size_t length = 0;
    if (auto p = lower_head.find("\r\ncontent-length:"); p != std::string::npos) {
      length = std::strtoul(lower_head.c_str() + p + 17, nullptr, 10);
    }
    while (req.size() < head_end + 4 + length) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) {
        return;
      }
      req.append(buf, static_cast<std::size_t>(n));
    }
    {
      std::lock_guard lock(mu_);
      requests_.push_back(lower_head);
    }
    if (faults_ > 0) {
      --faults_;
      if (!close_mode_) {
        write_all(c,
                  "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
                  "Content-Length: 84\r\nConnection: close\r\n\r\n"
                  "<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                  "                ");
      }
      return;  // close_mode: the connection is closed without an answer
    }
    int u = connect_to(upstream_);
    if (u < 0) {
      return;
    }
    std::size_t line_end = req.find("\r\n");
    std::string fwd =
        req.substr(0, line_end + 2) + "Connection: close\r\n" + req.substr(line_end + 2);
    write_all(u, fwd);
    while (true) {
      ssize_t n = ::recv(u, buf, sizeof buf, 0);
      if (n <= 0) {
        break;
      }
      write_all(c, std::string_view(buf, static_cast<std::size_t>(n)));
    }
    ::close(u);
  }

  int upstream_;
  std::atomic<int> faults_;
  bool close_mode_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

std::string binary_body(std::size_t n, unsigned seed) {
  std::string s;
  s.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    s += static_cast<char>((i * 31 + seed) & 0xFF);
  }
  return s;
}

TEST(S3Client, RoundTripOfAwkwardKeysAndBodies) {
  REQUIRE_S3RVER();
  Client c(options(server().port));
  ASSERT_TRUE(c.create_bucket("roundtrip")) << c.create_bucket("roundtrip").error().message;
  const std::vector<std::string> keys = {
      "plain.txt",
      "with space/and  two spaces.bin",
      "unicode/h\xC3\xA9llo w\xC3\xB6rld \xE2\x98\x83 \xE6\x97\xA5\xE6\x9C\xAC.txt",
      "chars/+ & = ( ) ! * '.dat",
      "deep/ly/nested/sl/ash/es/file",
      "tilde~and,comma;semi@at$dollar",
      "empty",
  };
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    std::string body = key == "empty" ? std::string() : binary_body(1000 + i * 777, unsigned(i));
    auto etag = c.put_object("roundtrip", key, body, key == "plain.txt" ? "text/plain" : "");
    ASSERT_TRUE(etag) << key << ": " << etag.error().message;
    EXPECT_EQ(etag.value(), md5_hex(body)) << key;
    auto got = c.get_object("roundtrip", key);
    ASSERT_TRUE(got) << key << ": " << got.error().message;
    EXPECT_EQ(got.value(), body) << key;
    auto head = c.head_object("roundtrip", key);
    ASSERT_TRUE(head) << key << ": " << head.error().message;
    ASSERT_TRUE(head.value().has_value()) << key;
    EXPECT_EQ(head.value()->size, body.size()) << key;
    EXPECT_EQ(head.value()->etag, md5_hex(body)) << key;
    EXPECT_GT(head.value()->mtime_ms, 1'600'000'000'000) << key;
  }
  auto listed = c.list_objects("roundtrip", "");
  ASSERT_TRUE(listed) << listed.error().message;
  std::vector<std::string> names;
  for (const auto& o : listed.value()) {
    names.push_back(o.key);
    EXPECT_EQ(o.etag.size(), 32u) << o.key;
    EXPECT_GT(o.mtime_ms, 1'600'000'000'000) << o.key;
  }
  std::vector<std::string> expected = keys;
  std::sort(expected.begin(), expected.end());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, expected);

  for (const auto& key : keys) {
    ASSERT_TRUE(c.delete_object("roundtrip", key)) << key;
    auto head = c.head_object("roundtrip", key);
    ASSERT_TRUE(head);
    EXPECT_FALSE(head.value().has_value()) << key;
  }
}

TEST(S3Client, ListPaginatesAndDeleteObjectsBatches) {
  REQUIRE_S3RVER();
  Client c(options(server().port));
  ASSERT_TRUE(c.create_bucket("many"));
  constexpr int kCount = 2500;
  std::vector<std::string> keys;
  for (int i = 0; i < kCount; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "k/%05d", i);
    keys.emplace_back(buf);
  }
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 8; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < kCount; i = next++) {
        if (!c.put_object("many", keys[i], keys[i])) {
          ++failures;
        }
      }
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  ASSERT_EQ(failures.load(), 0);
  for (const char* k : {"other/a", "other/b", "other/c"}) {
    ASSERT_TRUE(c.put_object("many", k, "x"));
  }

  auto all = c.list_objects("many", "k/");
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all.value().size(), static_cast<std::size_t>(kCount));
  std::vector<std::string> names;
  for (const auto& o : all.value()) {
    names.push_back(o.key);
    EXPECT_EQ(o.size, o.key.size());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, keys);
  {
    // Through a recording proxy: s3rver pages at 1000 keys, so 2,500 keys take three pages.
    FaultProxy proxy(server().port, 0, false);
    auto paged = Client(options(proxy.port())).list_objects("many", "k/");
    ASSERT_TRUE(paged) << paged.error().message;
    EXPECT_EQ(paged.value().size(), static_cast<std::size_t>(kCount));
    auto reqs = proxy.requests();
    ASSERT_EQ(reqs.size(), 3u);
    EXPECT_EQ(reqs[0].find("continuation-token"), std::string::npos);
    EXPECT_NE(reqs[1].find("continuation-token="), std::string::npos) << reqs[1];
    EXPECT_NE(reqs[2].find("continuation-token="), std::string::npos) << reqs[2];
  }
  auto other = c.list_objects("many", "other/");
  ASSERT_TRUE(other);
  EXPECT_EQ(other.value().size(), 3u);
  auto everything = c.list_objects("many", "");
  ASSERT_TRUE(everything);
  EXPECT_EQ(everything.value().size(), static_cast<std::size_t>(kCount + 3));

  auto deleted = c.delete_objects("many", keys);
  ASSERT_TRUE(deleted) << deleted.error().message;
  auto left = c.list_objects("many", "");
  ASSERT_TRUE(left);
  ASSERT_EQ(left.value().size(), 3u);
  EXPECT_EQ(left.value()[0].key.substr(0, 6), "other/");
  EXPECT_TRUE(c.delete_objects("many", {}));
}

TEST(S3Client, MissingKeysAndBucketsAreNotFound) {
  REQUIRE_S3RVER();
  Client c(options(server().port));
  ASSERT_TRUE(c.create_bucket("present"));
  auto head = c.head_object("present", "no/such key");
  ASSERT_TRUE(head) << head.error().message;
  EXPECT_FALSE(head.value().has_value());

  auto got = c.get_object("present", "no/such key");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::not_found);
  EXPECT_NE(got.error().message.find("NoSuchKey"), std::string::npos) << got.error().message;
  EXPECT_NE(got.error().message.find("no/such key"), std::string::npos) << got.error().message;
  EXPECT_NE(got.error().message.find("404"), std::string::npos) << got.error().message;

  auto nb = c.get_object("absent-bucket", "k");
  ASSERT_FALSE(nb);
  EXPECT_EQ(nb.error().code, Errc::not_found);
  EXPECT_NE(nb.error().message.find("absent-bucket"), std::string::npos) << nb.error().message;
  EXPECT_NE(nb.error().message.find("NoSuchBucket"), std::string::npos) << nb.error().message;
  EXPECT_NE(nb.error().message.find("create the bucket"), std::string::npos) << nb.error().message;

  auto list = c.list_objects("absent-bucket", "");
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, Errc::not_found);
  EXPECT_NE(list.error().message.find("absent-bucket"), std::string::npos);
}

TEST(S3Client, RetriesServerErrorsAndDroppedConnections) {
  REQUIRE_S3RVER();
  ASSERT_TRUE(Client(options(server().port)).create_bucket("retry"));
  Client direct(options(server().port));
  const std::string body = binary_body(5000, 7);
  for (bool close_mode : {false, true}) {
    FaultProxy proxy(server().port, 2, close_mode);
    Client c(options(proxy.port(), 4));
    std::string key = close_mode ? "after/closes" : "after/500s";
    auto etag = c.put_object("retry", key, body);
    ASSERT_TRUE(etag) << etag.error().message;
    EXPECT_EQ(etag.value(), md5_hex(body));
    auto got = direct.get_object("retry", key);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(got.value(), body);
    auto reqs = proxy.requests();
    ASSERT_EQ(reqs.size(), 3u);
    for (const auto& r : reqs) {
      EXPECT_NE(r.find("\r\nauthorization: aws4-hmac-sha256 credential=s3rver/"), std::string::npos)
          << r;
      EXPECT_NE(r.find("\r\nx-amz-content-sha256: " + sha256_hex(body)), std::string::npos) << r;
      EXPECT_NE(r.find("\r\ncontent-md5: "), std::string::npos) << r;
    }
  }
  for (bool close_mode : {false, true}) {
    FaultProxy proxy(server().port, 1, close_mode);
    Client c(options(proxy.port(), 0));
    auto etag = c.put_object("retry", "never", body);
    ASSERT_FALSE(etag);
    EXPECT_EQ(etag.error().code, Errc::unavailable) << etag.error().message;
    EXPECT_EQ(proxy.requests().size(), 1u);
  }
}

TEST(S3Client, TimeoutsAndUnreachableEndpoints) {
  // A socket that listens but never answers: the request times out.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(fd, 4);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ClientOptions o = options(ntohs(a.sin_port), 0);
  o.timeout = std::chrono::milliseconds(300);
  auto got = Client(o).get_object("b", "k");
  ::close(fd);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::timeout) << got.error().message;

  // Nothing listens: connection refused, retried, then unavailable.
  auto refused = Client(options(free_port(), 1)).get_object("b", "k");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::unavailable) << refused.error().message;
  EXPECT_NE(refused.error().message.find("2 attempts"), std::string::npos)
      << refused.error().message;

  ClientOptions bad;
  bad.endpoint = "127.0.0.1:1";
  auto invalid = Client(bad).get_object("b", "k");
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code, Errc::invalid_argument);
}

TEST(S3Xml, DecodesEntities) {
  EXPECT_EQ(xml::decode_entities("a&amp;b&lt;c&gt;d&quot;e&apos;f"), "a&b<c>d\"e'f");
  EXPECT_EQ(xml::decode_entities("&#65;&#x42;&#xe9;&#x2603;"), "AB\xC3\xA9\xE2\x98\x83");
  EXPECT_EQ(xml::decode_entities("&bogus; & &#xZZ;"), "&bogus; & &#xZZ;");
  EXPECT_EQ(xml::escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
}

}  // namespace
}  // namespace ck::s3
