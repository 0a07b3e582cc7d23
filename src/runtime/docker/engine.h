#pragma once
// A typed client for the Docker Engine API over its unix socket (no docker CLI): version
// negotiation, containers, logs (the multiplexed 8-byte frame stream), events, exec, archive
// upload, images (inspect, import, build, commit, pull) and volumes. Every error names the
// operation and carries the engine's own message. Coroutines; call on one io_context.

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "http/client.h"

namespace ck {

using json = nlohmann::json;

/// One line of container output, demultiplexed.
struct LogChunk {
  int stream = 1;  // 1 stdout, 2 stderr
  std::string_view text;
};

/// Splits the engine's multiplexed stream (8-byte header: stream, 0, 0, 0, big-endian size)
/// into chunks. Feed it bytes as they arrive, in any split.
class LogDemuxer {
 public:
  template <class F>
  void feed(std::string_view bytes, F&& on_chunk) {
    buf_.append(bytes);
    std::size_t pos = 0;
    while (buf_.size() - pos >= 8) {
      auto* h = reinterpret_cast<const unsigned char*>(buf_.data() + pos);
      std::size_t n = (std::size_t(h[4]) << 24) | (std::size_t(h[5]) << 16) |
                      (std::size_t(h[6]) << 8) | std::size_t(h[7]);
      if (buf_.size() - pos - 8 < n) break;
      on_chunk(LogChunk{h[0] == 2 ? 2 : 1, std::string_view(buf_).substr(pos + 8, n)});
      pos += 8 + n;
    }
    buf_.erase(0, pos);
  }

 private:
  std::string buf_;
};

struct ExecResult {
  std::string output;  // stdout and stderr interleaved as they came (when not streamed)
  int exit_code = -1;
  bool timed_out = false;  // killed when the timeout passed
  bool stopped = false;    // killed because the output sink asked to stop
};

/// Bounds for an image build: its RUN steps get memory/memswap (bytes) and cpu (cpus), and the
/// whole build is abandoned (the engine cancels it) after `timeout`.
struct BuildLimits {
  std::uint64_t memory = 0;  // 0: the engine's default (none)
  double cpus = 0;           // 0: none
  Duration timeout = std::chrono::minutes(30);
  // What to build (compose `build:`): the Dockerfile's path inside the context ("" →
  // Dockerfile), build arguments, and the stage to stop at ("" → the last).
  std::string dockerfile;
  std::map<std::string, std::string> args;
  std::string target;
};

class DockerEngine {
 public:
  /// The API version this client is written against; older engines are refused.
  static constexpr const char* kApiVersion = "1.41";

  /// DOCKER_HOST=unix://PATH if set, else /var/run/docker.sock. Empty with `why` set when
  /// DOCKER_HOST names something other than a unix socket.
  static std::string default_socket(std::string* why = nullptr);

  explicit DockerEngine(std::string socket_path) : http_(std::move(socket_path)) {}

  /// Pings the engine and negotiates the API version; call before anything else.
  net::awaitable<Result<void>> connect(Duration timeout = std::chrono::seconds(3));
  const std::string& engine_version() const { return engine_version_; }
  const std::string& api_version() const { return api_; }
  const std::string& socket_path() const { return http_.socket_path(); }

  /// A raw call: `path` without the version prefix ("/containers/json?all=1"). Answers the
  /// parsed JSON body (null when there is none). Engine errors become Errors with its message.
  net::awaitable<Result<json>> call(std::string method, std::string path, json body = nullptr,
                                    Duration timeout = std::chrono::seconds(30));

  // Containers.
  net::awaitable<Result<std::string>> create_container(std::string name, json config);
  net::awaitable<Result<void>> start_container(std::string id);
  net::awaitable<Result<void>> stop_container(std::string id, int grace_seconds);
  net::awaitable<Result<void>> kill_container(std::string id, std::string signal = "KILL");
  net::awaitable<Result<void>> remove_container(std::string id, bool force = true);
  net::awaitable<Result<json>> inspect_container(std::string id);
  /// Containers (running or not) carrying every label in `labels` ("k=v" or "k").
  net::awaitable<Result<json>> list_containers(std::vector<std::string> labels);
  /// Waits for the container to stop; answers its exit code.
  net::awaitable<Result<int>> wait_container(std::string id);
  net::awaitable<Result<void>> update_container(std::string id, json update);
  net::awaitable<Result<void>> pause_container(std::string id);
  net::awaitable<Result<void>> unpause_container(std::string id);
  /// Streams the container's output (demultiplexed) until it stops (follow) or ends.
  /// `since`: unix seconds, 0 for all. `tty`: the container has a terminal, so the engine
  /// sends its output raw (one stream, no frame headers).
  net::awaitable<Result<void>> logs(std::string id, bool follow, long since,
                                    std::function<void(const LogChunk&)> sink, bool tty = false);
  /// Streams engine events matching `filters` (e.g. {"label": ["cloudyknight.managed=true"]})
  /// until `sink` returns false or the engine goes away.
  net::awaitable<Result<void>> events(json filters, std::function<bool(const json&)> sink);
  /// Runs argv inside a running container and collects its output and exit code. With
  /// `output` the output goes there as it comes instead (false: stop). When the timeout passes
  /// or the sink stops it, the command is killed (SIGKILL to its host pid) and the result says
  /// so, with the exit code of the kill.
  net::awaitable<Result<ExecResult>> exec(std::string id, std::vector<std::string> argv,
                                          std::vector<std::string> env, std::string workdir,
                                          Duration timeout,
                                          std::function<bool(std::string_view)> output = {});
  /// Extracts a tar (in memory) into `dir` inside the container.
  net::awaitable<Result<void>> put_archive(std::string id, std::string dir, std::string tar);

  // Images.
  /// The image's inspect document; not_found when the engine does not have it.
  net::awaitable<Result<json>> inspect_image(std::string name);
  /// Pulls `name` from its registry; fails fast when no registry is reachable.
  net::awaitable<Result<void>> pull_image(std::string name, Duration timeout);
  /// Imports a root filesystem tar as image `name` ("repo:tag"), with Dockerfile-style
  /// `changes` ("ENV K=V", "WORKDIR /app", "CMD [...]").
  net::awaitable<Result<std::string>> import_image(std::filesystem::path tar, std::string name,
                                                   std::vector<std::string> changes);
  /// Builds `context_tar` (with its Dockerfile) as `tag`. Each output line goes to `progress`.
  /// Answers the image id.
  /// `limits` bounds the build (see BuildLimits).
  net::awaitable<Result<std::string>> build_image(std::filesystem::path context_tar,
                                                  std::string tag, json labels,
                                                  std::function<void(std::string_view)> progress,
                                                  BuildLimits limits = BuildLimits());
  /// Commits a container's filesystem as image `name` with `changes`.
  net::awaitable<Result<std::string>> commit(std::string id, std::string name,
                                             std::vector<std::string> changes);
  net::awaitable<Result<void>> remove_image(std::string name);

  // Volumes.
  net::awaitable<Result<void>> create_volume(std::string name, json labels);
  net::awaitable<Result<json>> list_volumes(std::vector<std::string> labels);
  net::awaitable<Result<void>> remove_volume(std::string name);

  // Networks.
  /// Creates a network from a POST /networks/create body; already_exists when the name is
  /// taken. Answers its id.
  net::awaitable<Result<std::string>> create_network(json body);
  /// The network's inspect document; not_found when there is none.
  net::awaitable<Result<json>> inspect_network(std::string name);
  /// Networks carrying every label in `labels`.
  net::awaitable<Result<json>> list_networks(std::vector<std::string> labels);
  /// Removes a network (not_found is success); fails while a container is attached.
  net::awaitable<Result<void>> remove_network(std::string name);
  /// Attaches a (created, not yet started) container to a network, reachable there by
  /// `aliases`.
  net::awaitable<Result<void>> connect_network(std::string network, std::string container,
                                               std::vector<std::string> aliases);

 private:
  std::string url(std::string_view path) const;
  UnixHttpClient http_;
  std::string api_ = kApiVersion;
  std::string engine_version_;
};

/// The 127.0.0.1 host port a container from list_containers() publishes, or 0.
int published_loopback_port(const json& container);

/// Splits "repo:tag" (the tag defaults to "latest"; a registry port is not a tag).
std::pair<std::string, std::string> split_image_name(const std::string& name);

}  // namespace ck
