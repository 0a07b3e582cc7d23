#include "runtime/docker/gc.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "core/log.h"
#include "core/units.h"
#include "http/url.h"

namespace ck {
namespace fs = std::filesystem;

namespace {

auto logger() { return log::get("cleanup"); }

std::string filters(const std::vector<std::string>& labels) {
  json f = json::object();
  f["label"] = labels;
  return http::percent_encode(f.dump());
}

std::string label_of(const json& item, const std::string& key) {
  if (!item.is_object() || !item.contains("Labels") || !item["Labels"].is_object()) return "";
  auto it = item["Labels"].find(key);
  return it != item["Labels"].end() && it->is_string() ? it->get<std::string>() : "";
}

// The last use of a volume: its record's mtime, else the engine's CreatedAt, else now.
std::time_t last_use(const fs::path& record, const json& volume, std::time_t now) {
  struct stat st {};
  if (::stat(record.c_str(), &st) == 0) return st.st_mtim.tv_sec;
  if (auto t = parse_utc(volume.value("CreatedAt", ""))) return *t;
  return now;
}

std::string ago(std::time_t seconds) {
  return format_duration(std::chrono::seconds(std::max<std::time_t>(seconds, 0)));
}

// Outside the coroutine: GCC 12 miscompiles braced initialisers with string literals there.
Reclaimed item(std::string kind, std::string name, std::uint64_t bytes, std::string reason) {
  Reclaimed r;
  r.kind = std::move(kind);
  r.name = std::move(name);
  r.bytes = bytes;
  r.reason = std::move(reason);
  return r;
}

bool dangling(const json& image) {
  if (!image.contains("RepoTags") || !image["RepoTags"].is_array()) return true;
  for (const auto& t : image["RepoTags"]) {
    if (t.is_string() && t.get<std::string>() != "<none>:<none>") return false;
  }
  return true;
}

std::string image_name(const json& image) {
  if (!dangling(image)) return image["RepoTags"][0].get<std::string>();
  std::string id = image.value("Id", "");
  if (id.starts_with("sha256:")) id = id.substr(7);
  return id.substr(0, 12);
}

}  // namespace

fs::path deps_use_record(const fs::path& data_dir, const std::string& volume) {
  return data_dir / "run" / "deps" / volume;
}

net::awaitable<Result<std::vector<Reclaimed>>> docker_gc(DockerEngine& engine, DockerGcOptions opts) {
  const GcPolicy& p = opts.policy;
  std::vector<Reclaimed> out;
  const std::time_t now = std::time(nullptr);

  // What any container refers to (every container on the engine, ours or not, stopped too).
  std::set<std::string> used_volumes, used_images;
  {
    auto all = co_await engine.call("GET", "/containers/json?all=1");
    if (all.has_error()) co_return all.error();
    for (const auto& c : all.value()) {
      if (!c.is_object()) continue;
      used_images.insert(c.value("ImageID", ""));
      if (!c.contains("Mounts") || !c["Mounts"].is_array()) continue;
      for (const auto& m : c["Mounts"]) {
        if (m.is_object() && m.value("Type", "") == "volume") used_volumes.insert(m.value("Name", ""));
      }
    }
  }

  // Dependency volumes.
  std::vector<std::string> ours;
  ours.push_back("cloudyknight.deps");
  ours.push_back("cloudyknight.instance=" + opts.instance);
  auto vols = co_await engine.list_volumes(std::move(ours));
  if (vols.has_error()) co_return vols.error();
  std::map<std::string, std::uint64_t> sizes;
  {
    // Sizes from the engine's disk usage (it walks the volumes; no size is no reason to fail).
    auto df = co_await engine.call("GET", "/system/df?type=volume", nullptr, std::chrono::minutes(2));
    if (df.has_value() && df.value().is_object() && df.value().contains("Volumes") &&
        df.value()["Volumes"].is_array()) {
      for (const auto& v : df.value()["Volumes"]) {
        if (!v.is_object() || !v.contains("UsageData") || !v["UsageData"].is_object()) continue;
        auto size = v["UsageData"].value("Size", std::int64_t{-1});
        if (size > 0) sizes[v.value("Name", "")] = static_cast<std::uint64_t>(size);
      }
    } else if (df.has_error()) {
      logger()->debug("no volume sizes from the engine: {}", df.error().message);
    }
  }
  struct Candidate {
    std::string name;
    std::time_t used;
    std::uint64_t bytes;
  };
  std::vector<Candidate> candidates;
  std::uint64_t total = 0;
  for (const auto& v : vols.value()) {
    std::string name = v.value("Name", "");
    if (!name.starts_with("ck-deps-")) continue;
    std::uint64_t bytes = sizes.count(name) ? sizes[name] : 0;
    total += bytes;
    if (used_volumes.count(name) || opts.busy.count(name)) continue;
    candidates.push_back({name, last_use(deps_use_record(opts.data_dir, name), v, now), bytes});
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.used < b.used || (a.used == b.used && a.name < b.name); });
  const auto keep_s = std::chrono::duration_cast<std::chrono::seconds>(p.deps_keep).count();
  for (const auto& c : candidates) {
    std::string reason;
    if (now - c.used >= keep_s) {
      reason = fmt::format("unused for {} (runtime.deps_keep {})", ago(now - c.used), format_duration(p.deps_keep));
    } else if (p.deps_max_size > 0 && total > p.deps_max_size) {
      reason = fmt::format("dependency volumes hold {}, over runtime.deps_max_size {}; the least recently used goes",
                           format_bytes(total), format_bytes(p.deps_max_size));
    } else {
      continue;
    }
    Reclaimed r = item("volume", c.name, c.bytes, reason);
    if (!p.dry_run) {
      auto removed = co_await engine.call("DELETE", "/volumes/" + http::percent_encode(c.name));
      if (removed.has_error() && removed.error().code != Errc::not_found) {
        r.error = removed.error().message;
        r.bytes = 0;
      } else {
        std::error_code ec;
        fs::remove(deps_use_record(opts.data_dir, c.name), ec);
      }
    }
    if (r.error.empty()) total -= std::min(total, c.bytes);
    out.push_back(std::move(r));
  }

  // Images this control plane built (Dockerfile workspaces and compose services).
  if (!p.workspaces_known) co_return out;
  std::vector<std::string> image_labels;
  image_labels.push_back("cloudyknight.instance=" + opts.instance);
  std::string images_path = "/images/json?filters=" + filters(image_labels);
  auto images = co_await engine.call("GET", std::move(images_path));
  if (images.has_error()) co_return images.error();
  for (const auto& img : images.value()) {
    if (!img.is_object()) continue;
    std::string id = img.value("Id", "");
    std::string ws = label_of(img, "cloudyknight.workspace");
    if (id.empty() || ws.empty() || used_images.count(id)) continue;
    std::string reason;
    if (!p.workspaces.count(ws)) {
      reason = fmt::format("built for workspace {}, which is gone", ws);
    } else if (dangling(img)) {
      reason = fmt::format("an earlier build of workspace {} (replaced by a newer one)", ws);
    } else {
      continue;
    }
    std::uint64_t bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(img.value("Size", std::int64_t{0}), 0));
    Reclaimed r = item("image", image_name(img), bytes, reason);
    if (!p.dry_run) {
      // Without force: the engine refuses an image a container started using meanwhile. Every
      // tag goes with it (the id names the image whatever its tags).
      auto removed = co_await engine.call("DELETE", "/images/" + http::percent_encode(id, true));
      if (removed.has_error() && removed.error().code != Errc::not_found) {
        r.error = removed.error().message;
        r.bytes = 0;
      }
    }
    out.push_back(std::move(r));
  }
  co_return out;
}

}  // namespace ck
