#include "git/http_backend.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/unique_fd.h"

namespace ck::git {
namespace fs = std::filesystem;

namespace {

bool env_safe(std::string_view v) {
  return v.find('\0') == std::string_view::npos && v.find('\n') == std::string_view::npos &&
         v.find('\r') == std::string_view::npos;
}

bool token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::optional<std::string> base64_decode(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (char c : in) {
    int v = base64_value(c);
    if (v < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> cgi_env(const CgiRequest& req, const fs::path& project_root,
                                 const fs::path& home, const EnvPairs& extra) {
  EnvPairs vars = {
      {"GATEWAY_INTERFACE", "CGI/1.1"},
      {"SERVER_PROTOCOL", "HTTP/1.1"},
      {"SERVER_SOFTWARE", "cloudyknight"},
      {"REQUEST_METHOD", req.method},
      {"PATH_INFO", req.path_info},
      {"QUERY_STRING", req.query},
      {"REMOTE_USER", req.remote_user},
      {"REMOTE_ADDR", req.remote_addr},
      {"GIT_PROJECT_ROOT", project_root.string()},
      {"GIT_HTTP_EXPORT_ALL", "1"},
      {"GIT_CONFIG_NOSYSTEM", "1"},
      {"HOME", home.string()},
      {"XDG_CONFIG_HOME", home.string()},
      {"PATH", "/usr/bin:/bin"},
      {"LANG", "C.UTF-8"},
  };
  if (!req.content_type.empty()) vars.emplace_back("CONTENT_TYPE", req.content_type);
  if (req.method == "POST") vars.emplace_back("CONTENT_LENGTH", std::to_string(req.content_length));
  if (!req.content_encoding.empty())
    vars.emplace_back("HTTP_CONTENT_ENCODING", req.content_encoding);
  // git's wire protocol v2 (git http-backend reads it from here); only its plain "k=v:k=v" form.
  if (!req.git_protocol.empty() && req.git_protocol.size() <= 256 &&
      req.git_protocol.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789=:.,-_") ==
          std::string::npos) {
    vars.emplace_back("HTTP_GIT_PROTOCOL", req.git_protocol);
  }
  for (const auto& kv : extra) vars.push_back(kv);
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [k, v] : vars) {
    if (k.empty() || !env_safe(k) || k.find('=') != std::string::npos || !env_safe(v)) continue;
    std::string entry = k;
    entry += '=';
    entry += v;
    out.push_back(std::move(entry));
  }
  return out;
}

Result<std::optional<CgiHeadParse>> parse_cgi_head(std::string_view out) {
  CgiHeadParse parsed;
  std::size_t pos = 0;
  bool have_type = false;
  while (true) {
    auto nl = out.find('\n', pos);
    if (nl == std::string_view::npos) {
      if (out.size() > kMaxCgiHead) {
        return fail(Errc::invalid_argument, "the CGI's header block is larger than 16 KiB");
      }
      return std::optional<CgiHeadParse>();
    }
    if (nl + 1 > kMaxCgiHead) {
      return fail(Errc::invalid_argument, "the CGI's header block is larger than 16 KiB");
    }
    std::string_view line = out.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = nl + 1;
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return fail(Errc::invalid_argument,
                  "a CGI header line has no name: '" + std::string(line.substr(0, 80)) + "'");
    }
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (!std::all_of(name.begin(), name.end(), token_char)) {
      return fail(Errc::invalid_argument,
                  "a CGI header name is not a token: '" + std::string(name.substr(0, 80)) + "'");
    }
    if (std::any_of(value.begin(), value.end(), [](char c) {
          return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
        })) {
      return fail(Errc::invalid_argument,
                  "the CGI header " + std::string(name) + " has control characters");
    }
    if (iequals(name, "Status")) {
      int status = 0;
      std::size_t i = 0;
      while (i < value.size() && i < 3 && value[i] >= '0' && value[i] <= '9') {
        status = status * 10 + (value[i] - '0');
        ++i;
      }
      if (i != 3 || (i < value.size() && value[i] != ' ') || status < 100 || status > 599) {
        return fail(Errc::invalid_argument, "the CGI's Status is not a status code: '" +
                                                std::string(value.substr(0, 80)) + "'");
      }
      parsed.head.status = status;
    } else if (iequals(name, "Content-Type")) {
      parsed.head.content_type = std::string(value);
      have_type = true;
    } else if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
               iequals(name, "Connection") || iequals(name, "Keep-Alive")) {
      continue;  // framing is the gateway's
    } else {
      parsed.head.headers.emplace_back(std::string(name), std::string(value));
    }
  }
  if (!have_type) parsed.head.content_type = "text/plain; charset=utf-8";
  parsed.body_offset = pos;
  return std::optional<CgiHeadParse>(std::move(parsed));
}

std::optional<std::string> token_of_authorization(std::string_view authorization) {
  if (authorization.size() > 4096) return std::nullopt;
  authorization = trim(authorization);
  auto space = authorization.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view scheme = authorization.substr(0, space);
  std::string_view rest = trim(authorization.substr(space + 1));
  if (rest.empty()) return std::nullopt;
  if (iequals(scheme, "Bearer")) return std::string(rest);
  if (!iequals(scheme, "Basic")) return std::nullopt;
  auto decoded = base64_decode(rest);
  if (!decoded) return std::nullopt;
  auto colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  std::string password = decoded->substr(colon + 1);
  if (password.empty()) return std::nullopt;
  return password;
}

std::optional<GitPath> classify_git_path(std::string_view method, std::string_view path,
                                         std::string_view query) {
  if (!path.starts_with('/')) return std::nullopt;
  path.remove_prefix(1);
  auto slash = path.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view repo = path.substr(0, slash);
  std::string_view rest = path.substr(slash + 1);
  if (!repo.ends_with(".git") || repo.size() == 4) return std::nullopt;
  GitPath out;
  out.name = std::string(repo.substr(0, repo.size() - 4));
  if (rest == "info/refs") {
    if (method != "GET" && method != "HEAD") return std::nullopt;
    // The service is the only parameter git sends; anything else is not a smart request.
    if (query == "service=git-upload-pack") {
      out.service = GitService::upload_pack;
    } else if (query == "service=git-receive-pack") {
      out.service = GitService::receive_pack;
    } else {
      return std::nullopt;
    }
    out.advertisement = true;
    return out;
  }
  if (method != "POST" || !query.empty()) return std::nullopt;
  if (rest == "git-upload-pack") {
    out.service = GitService::upload_pack;
  } else if (rest == "git-receive-pack") {
    out.service = GitService::receive_pack;
  } else {
    return std::nullopt;
  }
  return out;
}

namespace {

using Fd = UniqueFd;

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

CgiOutcome run_cgi(CgiRun run, const CgiSink& sink) {
  CgiOutcome outcome;
  Fd pass(run.pass_fd);
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) {
    outcome.error = fmt::format("cannot make a pipe: {}", std::strerror(errno));
    return outcome;
  }
  Fd in_r(in_pipe[0]), in_w(in_pipe[1]);
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    outcome.error = fmt::format("cannot make a pipe: {}", std::strerror(errno));
    return outcome;
  }
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    outcome.error = fmt::format("cannot make a pipe: {}", std::strerror(errno));
    return outcome;
  }
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

  // Everything the child needs is built before fork(): after it, only async-signal-safe calls.
  std::vector<char*> argv, envp;
  for (auto& a : run.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : run.env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string cwd = run.cwd.string();
  const int pass_fd = pass.get();

  pid_t pid = ::fork();
  if (pid < 0) {
    outcome.error = fmt::format("cannot start {}: {}", run.argv.empty() ? "" : run.argv[0],
                                std::strerror(errno));
    return outcome;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(in_r.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(err_w.get(), 2) < 0) ::_exit(126);
    if (pass_fd >= 0) {
      if (pass_fd == 3) {
        ::fcntl(3, F_SETFD, 0);
      } else if (::dup2(pass_fd, 3) < 0) {
        ::_exit(126);
      }
    }
    ::syscall(SYS_close_range, pass_fd >= 0 ? 4u : 3u, ~0u, 0u);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: no race with a kill before the child ran setpgid
  pass.reset();
  in_r.reset();
  out_w.reset();
  err_w.reset();
  set_nonblocking(in_w.get());
  set_nonblocking(out_r.get());
  set_nonblocking(err_r.get());

  const auto deadline = std::chrono::steady_clock::now() + run.timeout;
  std::size_t written = 0;
  if (run.body.empty()) in_w.reset();
  std::string head_buf;  // the output until the header block is complete
  bool head_done = false;
  bool killed = false;
  auto kill_group = [&] {
    if (!killed) ::kill(-pid, SIGKILL);
    killed = true;
  };
  char buf[64 * 1024];
  while (out_r.get() >= 0 || err_r.get() >= 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      outcome.timed_out = true;
      kill_group();
      break;
    }
    if (sink.cancelled && sink.cancelled()) {
      outcome.cancelled = true;
      kill_group();
      break;
    }
    pollfd fds[3];
    int n = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    const bool hold = head_done && sink.ready && !sink.ready();
    if (out_r.get() >= 0 && !hold) {
      out_i = n;
      fds[n++] = {out_r.get(), POLLIN, 0};
    }
    if (err_r.get() >= 0) {
      err_i = n;
      fds[n++] = {err_r.get(), POLLIN, 0};
    }
    if (in_w.get() >= 0) {
      in_i = n;
      fds[n++] = {in_w.get(), POLLOUT, 0};
    }
    int r = ::poll(fds, static_cast<nfds_t>(n), hold ? 20 : 200);
    if (r < 0 && errno != EINTR) {
      outcome.error = fmt::format("poll: {}", std::strerror(errno));
      kill_group();
      break;
    }
    if (r <= 0) continue;
    if (in_i >= 0 && fds[in_i].revents) {
      if (fds[in_i].revents & (POLLERR | POLLHUP)) {
        in_w.reset();  // it stopped reading: what it did not take is its business
      } else {
        ssize_t w = ::write(in_w.get(), run.body.data() + written, run.body.size() - written);
        if (w > 0) written += static_cast<std::size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == run.body.size())
          in_w.reset();
      }
    }
    if (err_i >= 0 && fds[err_i].revents) {
      ssize_t got = ::read(err_r.get(), buf, sizeof buf);
      if (got > 0) {
        outcome.stderr_tail.append(buf, static_cast<std::size_t>(got));
        if (outcome.stderr_tail.size() > 8192)
          outcome.stderr_tail.erase(0, outcome.stderr_tail.size() - 8192);
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        err_r.reset();
      }
    }
    if (out_i >= 0 && fds[out_i].revents) {
      ssize_t got = ::read(out_r.get(), buf, sizeof buf);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        out_r.reset();
        continue;
      }
      if (got < 0) continue;
      std::string_view bytes(buf, static_cast<std::size_t>(got));
      if (!head_done) {
        head_buf.append(bytes);
        auto parsed = parse_cgi_head(head_buf);
        if (parsed.has_error()) {
          outcome.error = parsed.error().message;
          kill_group();
          break;
        }
        if (!parsed.value()) continue;
        head_done = true;
        outcome.head_sent = true;
        sink.head(std::move(parsed.value()->head));
        bytes = std::string_view(head_buf).substr(parsed.value()->body_offset);
      }
      if (!bytes.empty() && !sink.body(bytes)) {
        outcome.cancelled = true;
        kill_group();
        break;
      }
      head_buf.clear();
    }
  }
  if (!head_done && outcome.error.empty() && !outcome.timed_out && !outcome.cancelled) {
    outcome.error = head_buf.empty() ? "the CGI program wrote no answer"
                                     : "the CGI program's answer ended inside its header block";
  }
  // Reap it; a program that closed its output but lingers gets until the deadline.
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() > deadline) {
      outcome.timed_out = true;
      kill_group();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (WIFEXITED(status) && !killed) outcome.exit_code = WEXITSTATUS(status);
  return outcome;
}

}  // namespace ck::git
