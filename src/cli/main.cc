// `cloudyknight`: the daemon (`serve`) and the command-line interface in one binary.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "daemon/daemon.h"
#include "runtime/process/init.h"

#ifndef CK_VERSION
#define CK_VERSION "dev"
#endif

namespace {

std::string self_exe(const char* argv0) {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) return std::string(buf, static_cast<size_t>(n));
  return argv0;
}

// The configuration: --config FILE, then CK_* environment, then the flags given.
std::optional<ck::Config> load(const std::string& config_file, const std::vector<ck::Setting>& flags) {
  std::optional<std::filesystem::path> file;
  if (!config_file.empty()) file = config_file;
  auto env = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  auto config = ck::load_config(file, env, flags);
  if (config.has_error()) {
    std::cerr << "cloudyknight: " << config.error().message << "\n";
    return std::nullopt;
  }
  if (auto r = ck::log::setup(config.value().log_format, config.value().log_level); r.has_error()) {
    std::cerr << "cloudyknight: " << r.error().message << "\n";
    return std::nullopt;
  }
  return config.value();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "__init") == 0) return ck::run_init(argc, argv);

  CLI::App app{"CloudyKnight: self-hosted workspaces, each in its own container, behind one gateway"};
  app.require_subcommand(1);
  app.set_version_flag("--version", CK_VERSION);

  auto* serve = app.add_subcommand("serve", "Run the daemon: gateway, monitor and API");
  std::string config_file, listen, workspaces, storage, data, runtime, log_format, log_level;
  int threads = -1;
  serve->add_option("--config", config_file, "YAML configuration file");
  serve->add_option("--listen", listen, "Gateway address, ADDR:PORT (default 127.0.0.1:8080)");
  serve->add_option("--workspaces", workspaces, "Folder whose subfolders are workspaces (dir storage)");
  serve->add_option("--storage", storage, "Storage URL, e.g. s3://BUCKET/PREFIX");
  serve->add_option("--data", data, "Folder for state, logs and app copies (default ./data)");
  serve->add_option("--runtime", runtime, "auto, docker, process or swarm");
  serve->add_option("--threads", threads, "Gateway worker threads (0 = one per core)");
  serve->add_option("--log-format", log_format, "text or json");
  serve->add_option("--log-level", log_level, "debug, info, warn or error");

  auto* images = app.add_subcommand("images", "Runtime images for the docker runtime");
  images->require_subcommand(1);
  auto* images_build = images->add_subcommand(
      "build", "Build the runtime images (offline from Debian packages when no registry answers); "
               "quick when they exist");
  std::vector<std::string> image_types;
  bool force = false, no_pull = false;
  std::string images_config;
  images_build->add_option("types", image_types, "Types to build: node python php go ruby (default: all)");
  images_build->add_flag("--force", force, "Rebuild even if the images exist");
  images_build->add_flag("--no-pull", no_pull, "Do not try the registry; build offline");
  images_build->add_option("--config", images_config, "YAML configuration file (images, data)");
  images_build->add_option("--data", data, "Folder for scratch space (default ./data)");

  auto* ws = app.add_subcommand("workspace", "Work with workspaces");
  ws->alias("ws");
  ws->require_subcommand(1);
  auto* compose = ws->add_subcommand("compose", "Print the docker-compose.yml a workspace runs with");
  std::string ws_name, ws_config;
  compose->add_option("name", ws_name, "Workspace name")->required();
  compose->add_option("--config", ws_config, "YAML configuration file");
  compose->add_option("--workspaces", workspaces, "Folder whose subfolders are workspaces");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (serve->parsed()) {
    std::vector<ck::Setting> flags;
    auto flag = [&](const std::string& value, const char* key, const char* name) {
      if (!value.empty()) flags.push_back({key, value, name});
    };
    flag(listen, "gateway.listen", "--listen");
    if (!workspaces.empty()) {
      flags.push_back({"storage.kind", "dir", "--workspaces"});
      flags.push_back({"storage.path", workspaces, "--workspaces"});
    }
    if (!storage.empty()) {
      if (storage.starts_with("s3://")) {
        std::string rest = storage.substr(5);
        auto slash = rest.find('/');
        flags.push_back({"storage.kind", "s3", "--storage"});
        flags.push_back({"storage.bucket", rest.substr(0, slash), "--storage"});
        if (slash != std::string::npos) flags.push_back({"storage.prefix", rest.substr(slash + 1), "--storage"});
      } else {
        flags.push_back({"storage.kind", "dir", "--storage"});
        flags.push_back({"storage.path", storage, "--storage"});
      }
    }
    flag(data, "data", "--data");
    flag(runtime, "runtime.kind", "--runtime");
    if (threads >= 0) flags.push_back({"gateway.threads", std::to_string(threads), "--threads"});
    flag(log_format, "log.format", "--log-format");
    flag(log_level, "log.level", "--log-level");

    auto config = load(config_file, flags);
    if (!config) return 2;
    return ck::run_daemon(*config, self_exe(argv[0]));
  }
  if (images_build->parsed()) {
    std::vector<ck::Setting> flags;
    if (!data.empty()) flags.push_back({"data", data, "--data"});
    auto config = load(images_config, flags);
    if (!config) return 2;
    return ck::build_images_command(*config, image_types, force, !no_pull);
  }
  if (compose->parsed()) {
    std::vector<ck::Setting> flags;
    if (!workspaces.empty()) {
      flags.push_back({"storage.kind", "dir", "--workspaces"});
      flags.push_back({"storage.path", workspaces, "--workspaces"});
    }
    auto config = load(ws_config, flags);
    if (!config) return 2;
    return ck::compose_command(*config, ws_name);
  }
  return 0;
}
