#pragma once
// Runtime images: which image runs a type, and `cloudyknight images build`, which makes the
// images a host without a reachable registry needs, offline from Debian packages:
// debootstrap --variant=minbase → import as cloudyknight/base:bookworm → one container per
// type that apt-get installs the toolchain → the host's CA bundle copied in (so npm and pip
// work behind a TLS-intercepting proxy) → committed as cloudyknight/<type>:bookworm.
// With a reachable registry it pulls the configured public images instead.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "runtime/docker/engine.h"

namespace ck {

/// The types with a runtime image, in build order.
const std::vector<std::string>& image_types();

/// cloudyknight/<type>:bookworm, the offline build of a type's image.
std::string offline_image(const std::string& type);

/// The image that runs workspaces of `type`: `configured` if the engine has it, else the
/// offline build. With `explicit_choice` (workspace.json "image") there is no fallback.
/// Fails with the command that fixes it.
net::awaitable<Result<std::string>> resolve_image(DockerEngine& engine, std::string type,
                                                  std::string configured, bool explicit_choice);

/// The first port `image` EXPOSEs, or `fallback` when it exposes none (or is not there).
net::awaitable<int> exposed_port(DockerEngine& engine, std::string image, int fallback);

struct ImageBuildOptions {
  std::vector<std::string> types;                  // empty: all of image_types()
  std::map<std::string, std::string> configured;   // type → public image to try pulling first
  std::filesystem::path work_dir;                  // scratch space for the root filesystem
  bool force = false;                              // rebuild even when the image exists
  bool pull = true;                                // try the registry first
  std::string mirror = "http://deb.debian.org/debian";
  std::string ca_bundle = "/etc/ssl/certs/ca-certificates.crt";
};

/// Builds (or pulls) the images; idempotent, and quick when they exist. `say` gets one line
/// per step for the terminal.
net::awaitable<Result<void>> build_images(DockerEngine& engine, ImageBuildOptions opts,
                                          std::function<void(const std::string&)> say);

}  // namespace ck
