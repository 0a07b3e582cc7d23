#pragma once
// Garbage collection on the Docker engine (issue 19): the dependency volumes
// (`ck-deps-<workspace>-<type>-<hash>`, label cloudyknight.deps) nobody used for a while or
// beyond a size cap, and the images this control plane built (Dockerfile and compose
// workspaces, label cloudyknight.instance) that no workspace uses any more. Used by the docker
// runtime (the daemon's cleanup jobs) and by `cloudyknight gc` without a server.
//
// Safety: only this control plane's volumes and images (label cloudyknight.instance); never one
// that any container (running, starting or stopped) refers to, nor a volume in `busy` (an
// install running now); removals go without force, so the engine refuses whatever became used
// meanwhile. The base images (`cloudyknight images build`, label cloudyknight.image-build) and
// pulled images carry no instance label and are never touched.

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "runtime/docker/engine.h"
#include "runtime/runtime.h"

namespace ck {

struct DockerGcOptions {
  std::filesystem::path data_dir;  // DATA: DATA/run/deps/<volume> records a volume's last use
  std::string instance;            // the control plane's cloudyknight.instance label
  GcPolicy policy;
  std::set<std::string> busy;  // volumes an install uses right now
};

/// When a dependency volume was last used: its record's mtime (written by the install,
/// touched by every start that uses it), else `fallback`.
std::filesystem::path deps_use_record(const std::filesystem::path& data_dir, const std::string& volume);

/// Finds and (unless dry_run) removes what the policy lets go; each item says what and how
/// many bytes (volume sizes from the engine's disk usage, 0 where it does not know). Fails only
/// when the engine cannot be listed.
net::awaitable<Result<std::vector<Reclaimed>>> docker_gc(DockerEngine& engine, DockerGcOptions opts);

}  // namespace ck
