#pragma once
// git's smart HTTP protocol through Debian's `git http-backend` (a CGI program), for git push to
// deploy (issue 16, part 3): the CGI's environment (built from nothing: the daemon's own
// environment, with its keys and tokens, never reaches git), the parser of the CGI's header
// block, and a runner that feeds the request body to the program and streams its answer out as
// it comes. The runner blocks the thread that calls it for the length of the request: the API
// calls it on a thread of its own. Also the pure helpers of the push endpoint (Basic
// credentials, which request a path is).

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"

namespace ck::git {

/// The largest CGI header block accepted (a bigger one is a broken program: 502).
inline constexpr std::size_t kMaxCgiHead = 16u << 10;

/// A smart-HTTP request as the CGI sees it.
struct CgiRequest {
  std::string method;            // "GET" or "POST"
  std::string path_info;         // "/blog.git/info/refs"
  std::string query;             // "service=git-upload-pack"
  std::string content_type;      // "application/x-git-receive-pack-request"
  std::string content_encoding;  // "gzip" (git compresses upload-pack requests) or ""
  std::size_t content_length = 0;
  std::string git_protocol;  // the Git-Protocol header ("version=2"), passed on when plain
  std::string remote_user;   // who is pushing (the audit label), never a credential
  std::string remote_addr;
};

using EnvPairs = std::vector<std::pair<std::string, std::string>>;

/// The complete environment of `git http-backend` for `req` ("KEY=value" strings): the CGI
/// variables, GIT_PROJECT_ROOT=`project_root`, GIT_HTTP_EXPORT_ALL, GIT_CONFIG_NOSYSTEM,
/// HOME=`home` (an empty folder, so no user's ~/.gitconfig applies), PATH=/usr/bin:/bin, and
/// `extra` (what the deploy hook needs). Nothing is inherited. Values with a NUL or a newline
/// are dropped. Pure.
std::vector<std::string> cgi_env(const CgiRequest& req, const std::filesystem::path& project_root,
                                 const std::filesystem::path& home, const EnvPairs& extra = {});

/// The head of a CGI's answer.
struct CgiHead {
  int status = 200;
  std::string content_type;
  EnvPairs headers;  // the other headers, minus framing ones (Content-Length, Transfer-Encoding,
                     // Connection), which the gateway sets itself
};

/// A parsed header block and where the body starts in the bytes given.
struct CgiHeadParse {
  CgiHead head;
  std::size_t body_offset = 0;
};

/// Parses the header block at the start of `out` (lines ended by CRLF or LF, up to an empty
/// line; "Status: 404 Not Found" sets the status). nullopt while the block is incomplete;
/// invalid_argument for a malformed one (a line without a colon, a bad header name or value, a
/// status outside 100-599) or one over kMaxCgiHead. Pure.
Result<std::optional<CgiHeadParse>> parse_cgi_head(std::string_view out);

/// The password of "Authorization: Basic base64(user:password)" (the API token git sends), or
/// the token of "Bearer <token>"; nullopt for anything else or a value over 4 KiB. Pure.
std::optional<std::string> token_of_authorization(std::string_view authorization);

/// Which smart-HTTP request a path under /monitor/git/ is.
enum class GitService { upload_pack, receive_pack };
struct GitPath {
  std::string name;            // "blog" (not yet validated as a workspace name)
  GitService service{};        // which program the request is for
  bool advertisement = false;  // GET .../info/refs?service=... (else POST .../git-*-pack)
};

/// Classifies `method` `path` (`path` without "/monitor/git", e.g. "/blog.git/info/refs") and
/// `query`: GET /<name>.git/info/refs?service=git-upload-pack|git-receive-pack, POST
/// /<name>.git/git-upload-pack|git-receive-pack. nullopt for anything else (the dumb protocol,
/// other files of the repository). Pure.
std::optional<GitPath> classify_git_path(std::string_view method, std::string_view path,
                                         std::string_view query);

/// How a CGI program is run.
struct CgiRun {
  std::vector<std::string> argv;  // {"/usr/bin/git", "http-backend"}
  std::vector<std::string> env;   // cgi_env()
  std::filesystem::path cwd;      // where it runs (an empty folder of ours)
  std::string body;               // its stdin
  /// An extra descriptor the program (and what it runs) inherits as descriptor 3, or -1. The
  /// runner closes it in this process once the program started (or failed to).
  int pass_fd = -1;
  std::chrono::milliseconds timeout{std::chrono::minutes(15)};
};

/// Where a CGI's answer goes (called on the runner's thread).
struct CgiSink {
  std::function<void(CgiHead)> head;           // once, before any body
  std::function<bool(std::string_view)> body;  // false: the client is gone, stop
  std::function<bool()> ready;                 // false: the client has not taken what was
                                               // sent yet (hold reading); may be empty
  std::function<bool()> cancelled;             // true: stop now; may be empty
};

/// What became of a run.
struct CgiOutcome {
  int exit_code = -1;  // -1 when killed
  bool timed_out = false;
  bool cancelled = false;   // the sink said stop
  bool head_sent = false;   // sink.head was called
  std::string error;        // a malformed header block, the program could not start...
  std::string stderr_tail;  // its last 8 KiB on stderr
};

/// Runs the program in a process group of its own, writes `run.body` to its stdin while
/// reading its stdout, parses the header block and streams the rest to `sink`. Kills the whole
/// group (SIGKILL) on timeout or when the sink says stop. Blocks until the program exited.
CgiOutcome run_cgi(CgiRun run, const CgiSink& sink);

}  // namespace ck::git
