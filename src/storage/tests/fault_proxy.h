#pragma once
// FaultProxy: a one-connection-at-a-time HTTP proxy in front of s3rver that fails, cuts, answers
// or stalls (with an on_request hook) chosen requests, and records every request's head. Shared
// by the storage and backup tests. Header-only; include it after s3rver_fixture.h.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "storage/tests/s3rver_fixture.h"

namespace ck::s3test {

inline bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// What FaultProxy does with a request that a Rule matches.
enum class Fault {
  k500,           // answers 500 InternalError
  kClose,         // reads the whole request, then closes without answering
  kCloseMidBody,  // reads the head and a little of the body, then closes
  kCutResponse,   // forwards, but relays only the first 200 KiB of the answer, then closes
  kCanned,        // answers Rule::canned without forwarding
};

struct Rule {
  std::vector<std::string> match;  // substrings of the lower-cased request head, all required
  Fault fault = Fault::k500;
  int times = -1;      // how many matching requests it applies to; -1: every one
  std::string canned;  // Fault::kCanned: the whole answer (http_response())
};

inline std::string http_response(int status, std::string_view reason, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
         "\r\nContent-Type: application/xml\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + std::string(body);
}

/// Forwards each request (one per connection, one connection at a time) to s3rver, except that
/// the first rule matching a request (with times left) fails or answers it instead; records every
/// request's lower-cased header block. The legacy form fails the first `faults` requests with a
/// 500 or by closing the connection.
class FaultProxy {
 public:
  FaultProxy(int upstream, int faults, bool close_mode)
      : FaultProxy(upstream, {Rule{{}, close_mode ? Fault::kClose : Fault::k500, faults, {}}}) {}
  FaultProxy(int upstream, std::vector<Rule> rules)
      : upstream_(upstream), rules_(std::move(rules)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 64);
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
  /// Requests whose head contains every one of `parts`.
  std::vector<std::string> requests_with(const std::vector<std::string>& parts) {
    std::vector<std::string> out;
    for (auto& r : requests()) {
      if (std::all_of(parts.begin(), parts.end(),
                      [&](const std::string& p) { return r.find(p) != std::string::npos; })) {
        out.push_back(r);
      }
    }
    return out;
  }
  /// Called on the proxy thread with each request's head before it is handled.
  void on_request(std::function<void(const std::string&)> f) {
    std::lock_guard lock(mu_);
    hook_ = std::move(f);
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

  const Rule* take_rule(const std::string& head) {
    for (auto& r : rules_) {
      if (r.times == 0) {
        continue;
      }
      bool all = std::all_of(r.match.begin(), r.match.end(), [&](const std::string& m) {
        return head.find(m) != std::string::npos;
      });
      if (all) {
        if (r.times > 0) {
          --r.times;
        }
        return &r;
      }
    }
    return nullptr;
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
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard lock(mu_);
      hook = hook_;
    }
    if (hook) {
      hook(lower_head);
    }
    const Rule* rule = take_rule(lower_head);
    if (rule != nullptr && rule->fault == Fault::kCloseMidBody) {
      std::lock_guard lock(mu_);
      requests_.push_back(lower_head);
      return;  // the head and at most one read of the body have arrived
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
    if (rule != nullptr) {
      switch (rule->fault) {
        case Fault::k500:
          write_all(c, http_response(500, "Internal Server Error",
                                     "<Error><Code>InternalError</Code><Message>injected</Message>"
                                     "</Error>"));
          return;
        case Fault::kClose:
        case Fault::kCloseMidBody:
          return;  // closed without an answer
        case Fault::kCanned:
          write_all(c, rule->canned);
          return;
        case Fault::kCutResponse:
          break;
      }
    }
    int u = connect_to(upstream_);
    if (u < 0) {
      return;
    }
    std::size_t line_end = req.find("\r\n");
    std::string fwd =
        req.substr(0, line_end + 2) + "Connection: close\r\n" + req.substr(line_end + 2);
    write_all(u, fwd);
    std::size_t relayed = 0;
    const std::size_t limit = rule != nullptr ? 200 * 1024 : SIZE_MAX;
    while (relayed < limit) {
      ssize_t n = ::recv(u, buf, std::min(sizeof buf, limit - relayed), 0);
      if (n <= 0) {
        break;
      }
      write_all(c, std::string_view(buf, static_cast<std::size_t>(n)));
      relayed += static_cast<std::size_t>(n);
    }
    ::close(u);
  }

  int upstream_;
  std::vector<Rule> rules_;  // the proxy thread's
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::function<void(const std::string&)> hook_;
};

}  // namespace ck::s3test
