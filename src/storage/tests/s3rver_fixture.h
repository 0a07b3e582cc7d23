#pragma once
// A real S3 server for the storage tests: s3rver (npm s3rver@3) on 127.0.0.1, started once per
// test binary by a GoogleTest environment that including this header registers. s3rver is found
// through CK_S3RVER (the path of its bin, set by scripts/test.sh) or the cache that
// scripts/s3rver.sh installs into; without it, tests that start with REQUIRE_S3RVER() are
// skipped with the reason. s3rver does not check signatures (s3_test.cc checks signing).
// Include it from one file per test binary.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "storage/s3/client.h"

extern char** environ;

namespace ck::s3test {

/// The MD5 of `data` as 32 lowercase hex digits (an S3 ETag of a single-part object).
inline std::string md5_hex(std::string_view data) {
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

/// A TCP port on 127.0.0.1 that was free a moment ago.
inline int free_port() {
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

/// A connected socket to 127.0.0.1:port, or -1.
inline int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline std::string s3rver_path() {
  if (const char* p = std::getenv("CK_S3RVER"); p != nullptr && *p != '\0') {
    return p;
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/cloudyknight/s3rver/node_modules/.bin/s3rver";
}

/// One s3rver process over its own data folder. start() picks a port and a folder the first
/// time; kill() stops the process but keeps both, so start() brings the same server back (an
/// outage in the middle of a test); stop() also removes the folder.
struct S3rver {
  pid_t pid = -1;
  int port = 0;
  std::filesystem::path dir;
  std::string skip_reason;  // non-empty: the server could not start, tests skip

  bool running() const { return pid > 0; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port); }

  void start() {
    skip_reason.clear();
    std::string bin = s3rver_path();
    if (::access(bin.c_str(), X_OK) != 0) {
      skip_reason = "s3rver not found at " + bin +
                    " (run scripts/s3rver.sh or set CK_S3RVER to the s3rver bin)";
      return;
    }
    if (dir.empty()) {
      char tmpl[] = "/tmp/ck-s3rver-XXXXXX";
      const char* made = ::mkdtemp(tmpl);
      if (made == nullptr) {
        skip_reason = "cannot create a temporary folder for s3rver";
        return;
      }
      dir = made;
    }
    if (port == 0) {
      port = free_port();
    }
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

  /// Stops the process (keeps the port and the data folder).
  void kill() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int status = 0;
      ::waitpid(pid, &status, 0);
      pid = -1;
    }
  }

  void stop() {
    kill();
    if (!dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      dir.clear();
    }
  }
};

/// The binary's server.
inline S3rver& server() {
  static S3rver s;
  return s;
}

class S3rverEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { server().start(); }
  void TearDown() override { server().stop(); }
};

inline const auto* const kS3rverEnvironment =
    ::testing::AddGlobalTestEnvironment(new S3rverEnvironment);

/// Client options for s3rver on `port` (s3rver takes any keys).
inline s3::ClientOptions client_options(int port, int max_retries = 4) {
  s3::ClientOptions o;
  o.endpoint = "http://127.0.0.1:" + std::to_string(port);
  o.credentials = {"S3RVER", "S3RVER", ""};
  o.max_retries = max_retries;
  o.timeout = std::chrono::milliseconds(10000);
  return o;
}

}  // namespace ck::s3test

#define REQUIRE_S3RVER()                                  \
  do {                                                    \
    if (!::ck::s3test::server().skip_reason.empty()) {    \
      GTEST_SKIP() << ::ck::s3test::server().skip_reason; \
    }                                                     \
  } while (0)
