#include "runtime/docker/images.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fstream>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include "core/files.h"
#include "runtime/docker/archive.h"
#include "runtime/runtime.h"

extern char** environ;

namespace ck {
namespace fs = std::filesystem;

namespace {

constexpr const char* kBaseImage = "cloudyknight/base:bookworm";
constexpr const char* kSuite = "bookworm";

// Debian packages that make each type's toolchain, as in the public images.
std::string packages(const std::string& type) {
  if (type == "node") return "nodejs npm ca-certificates";
  if (type == "python") return "python3 python3-pip python3-venv ca-certificates";
  if (type == "php") return "php-cli php-zip php-curl php-mbstring composer unzip ca-certificates";
  if (type == "go") return "golang-go git ca-certificates";
  if (type == "ruby") return "ruby bundler ca-certificates";
  return "";
}

// Runs argv with output into `log`; answers the exit code (-1 if it could not start).
int run_logged(const std::vector<std::string>& argv, const fs::path& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

net::awaitable<bool> has_image(DockerEngine& engine, std::string name) {
  auto r = co_await engine.inspect_image(name);
  co_return r.has_value();
}

net::awaitable<Result<void>> build_base(DockerEngine& engine, const ImageBuildOptions& opts,
                                        const std::function<void(const std::string&)>& say) {
  if (::access("/usr/sbin/debootstrap", X_OK) != 0 && ::access("/usr/bin/debootstrap", X_OK) != 0) {
    co_return fail(Errc::not_found,
                   "debootstrap is not installed, and it is needed to build images without a "
                   "registry: apt-get install debootstrap");
  }
  if (::geteuid() != 0) {
    co_return fail(Errc::forbidden, "building images offline needs root (debootstrap): run it with sudo");
  }
  fs::path rootfs = opts.work_dir / "rootfs";
  fs::path tar = opts.work_dir / "base.tar";
  fs::path log = opts.work_dir / "debootstrap.log";
  std::error_code ec;
  fs::remove_all(rootfs, ec);
  fs::create_directories(opts.work_dir, ec);
  if (ec) co_return fail(Errc::io, fmt::format("cannot create {}: {}", opts.work_dir.string(), ec.message()));
  say(fmt::format("base: debootstrap --variant=minbase {} from {} (about a minute)", kSuite, opts.mirror));
  int rc = run_logged({"debootstrap", "--variant=minbase", kSuite, rootfs.string(), opts.mirror}, log);
  if (rc != 0) {
    fs::remove_all(rootfs, ec);
    co_return fail(Errc::unavailable,
                   fmt::format("debootstrap failed (exit code {}); its log is {}:\n{}", rc, log.string(),
                               tail_file(log, 8)));
  }
  say("base: importing the root filesystem as " + std::string(kBaseImage));
  auto written = write_tar(rootfs, tar, {}, /*keep_owners=*/true);
  fs::remove_all(rootfs, ec);
  if (written.has_error()) co_return written.error();
  // Built outside the co_await: GCC 12 rejects braced lists inside one.
  std::vector<std::string> changes = {
      "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8",
      "CMD [\"/bin/bash\"]"};
  auto imported = co_await engine.import_image(tar, kBaseImage, std::move(changes));
  fs::remove(tar, ec);
  if (imported.has_error()) co_return imported.error();
  co_return outcome::success();
}

net::awaitable<void> save_logs(DockerEngine& engine, std::string id, std::shared_ptr<std::ofstream> out) {
  std::function<void(const LogChunk&)> sink = [out](const LogChunk& c) {
    out->write(c.text.data(), c.text.size());
    out->flush();
  };
  (void)co_await engine.logs(id, true, 0, std::move(sink));
}

net::awaitable<Result<void>> build_type(DockerEngine& engine, const std::string& type,
                                        const ImageBuildOptions& opts,
                                        const std::function<void(const std::string&)>& say) {
  std::string target = offline_image(type);
  std::string name = "ck-image-build-" + type;
  (void)co_await engine.remove_container(name);
  std::string script = fmt::format(
      "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
      "apt-get install -y -qq --no-install-recommends {}; apt-get clean; "
      "rm -rf /var/lib/apt/lists/*",
      packages(type));
  json body = {{"Image", kBaseImage},
               {"Cmd", {"/bin/sh", "-c", script}},
               {"Labels", {{"cloudyknight.image-build", type}}}};
  say(fmt::format("{}: apt-get install {}", type, packages(type)));
  BOOST_OUTCOME_CO_TRY(id, co_await engine.create_container(name, body));
  BOOST_OUTCOME_CO_TRYV(co_await engine.start_container(id));
  fs::path log = opts.work_dir / (type + "-build.log");
  auto out = std::make_shared<std::ofstream>(log, std::ios::trunc);
  spawn(net::any_io_executor(co_await net::this_coro::executor), save_logs(engine, id, out),
        "image build log");
  auto code = co_await engine.wait_container(id);
  if (code.has_error() || code.value() != 0) {
    (void)co_await engine.remove_container(id);
    out->flush();
    co_return fail(Errc::unavailable,
                   fmt::format("installing the {} toolchain failed ({}); the log is {}:\n{}", type,
                               code.has_error() ? code.error().message
                                                : fmt::format("exit code {}", code.value()),
                               log.string(), tail_file(log, 8)));
  }
  // The host's CA bundle, so package managers inside trust what the host trusts (a
  // TLS-intercepting proxy's CA included).
  std::vector<std::string> changes = {"WORKDIR /app", "CMD [\"/bin/sh\"]",
                                      "LABEL cloudyknight.image=" + type};
  if (fs::exists(opts.ca_bundle)) {
    std::vector<TarFile> files = {TarFile{"ca-certificates.crt", read_file(opts.ca_bundle).value_or(""), 0644}};
    auto tar = tar_of(files);
    if (tar.has_error()) co_return tar.error();
    BOOST_OUTCOME_CO_TRYV(co_await engine.put_archive(id, "/etc/ssl/certs", tar.value()));
    for (const char* var : {"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"}) {
      changes.push_back(fmt::format("ENV {}=/etc/ssl/certs/ca-certificates.crt", var));
    }
  }
  auto committed = co_await engine.commit(id, target, changes);
  (void)co_await engine.remove_container(id);
  if (committed.has_error()) co_return committed.error();
  co_return outcome::success();
}

}  // namespace

const std::vector<std::string>& image_types() {
  static const std::vector<std::string> types = {"node", "python", "php", "go", "ruby"};
  return types;
}

std::string offline_image(const std::string& type) {
  return fmt::format("cloudyknight/{}:{}", type, kSuite);
}

net::awaitable<Result<std::string>> resolve_image(DockerEngine& engine, std::string type,
                                                  std::string configured, bool explicit_choice) {
  auto img = co_await engine.inspect_image(configured);
  if (img.has_value()) co_return configured;
  if (img.error().code != Errc::not_found) co_return img.error();
  if (explicit_choice) {
    co_return fail(Errc::not_found,
                   fmt::format("image {} (\"image\" in workspace.json) is not on this host: build or "
                               "load it into the Docker engine, or remove \"image\"",
                               configured));
  }
  std::string offline = offline_image(type);
  if (offline != configured && (co_await has_image(engine, offline))) co_return offline;
  co_return fail(Errc::not_found,
                 fmt::format("image {} not found, and neither is {}: run `cloudyknight images build "
                             "{}` (it builds {} offline from Debian packages when no registry is "
                             "reachable)",
                             configured, offline, type, offline));
}

net::awaitable<int> exposed_port(DockerEngine& engine, std::string image, int fallback) {
  auto img = co_await engine.inspect_image(image);
  if (!img.has_value()) co_return fallback;
  const auto& config = img.value()["Config"];
  if (!config.is_object() || !config.contains("ExposedPorts")) co_return fallback;
  const auto& exposed = config["ExposedPorts"];
  if (!exposed.is_object() || exposed.empty()) co_return fallback;
  int port = std::atoi(exposed.begin().key().c_str());
  co_return port > 0 && port < 65536 ? port : fallback;
}

net::awaitable<Result<void>> build_images(DockerEngine& engine, ImageBuildOptions opts,
                                          std::function<void(const std::string&)> say) {
  std::vector<std::string> types = opts.types.empty() ? image_types() : opts.types;
  for (const auto& t : types) {
    if (packages(t).empty()) {
      co_return fail(Errc::invalid_argument,
                     fmt::format("there is no image for type '{}': choose from {}", t,
                                 fmt::join(image_types(), ", ")));
    }
  }
  bool base_ready = !opts.force && (co_await has_image(engine, kBaseImage));
  for (const auto& type : types) {
    std::string configured = opts.configured.count(type) ? opts.configured.at(type) : "";
    std::string offline = offline_image(type);
    if (!opts.force) {
      if (!configured.empty() && (co_await has_image(engine, configured))) {
        say(fmt::format("{}: {} is on this host", type, configured));
        continue;
      }
      if (co_await has_image(engine, offline)) {
        say(fmt::format("{}: {} is up to date", type, offline));
        continue;
      }
    }
    if (opts.pull && !configured.empty()) {
      auto pulled = co_await engine.pull_image(configured, std::chrono::minutes(10));
      if (pulled.has_value()) {
        say(fmt::format("{}: pulled {}", type, configured));
        continue;
      }
      say(fmt::format("{}: {}; building {} offline from Debian packages", type,
                      pulled.error().message, offline));
    }
    if (!base_ready) {
      BOOST_OUTCOME_CO_TRYV(co_await build_base(engine, opts, say));
      base_ready = true;
    }
    auto started = std::chrono::steady_clock::now();
    BOOST_OUTCOME_CO_TRYV(co_await build_type(engine, type, opts, say));
    say(fmt::format("{}: built {} in {}", type, offline,
                    format_duration(std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::steady_clock::now() - started))));
  }
  co_return outcome::success();
}

}  // namespace ck
