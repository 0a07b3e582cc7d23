// backup: in the configuration -> Destinations with credentials resolved.
#include <fmt/format.h>

#include "backup/backup.h"
#include "storage/s3/target.h"

namespace ck::backup {

std::string_view mode_name(DestinationMode m) {
  return m == DestinationMode::mirror ? "mirror" : "incremental";
}

std::string Destination::url() const {
  return "s3://" + bucket + (prefix.empty() ? "" : "/" + prefix);
}

Result<BackupConfig> backup_config(const Config& config, const s3::EnvFn& env) {
  BackupConfig out;
  const auto& b = config.backup;
  out.schedule = b.schedule;
  out.keep = Keep{b.keep_last, b.keep_hourly, b.keep_daily, b.keep_weekly, b.keep_monthly};
  out.key = b.key;
  for (const auto& d : b.destinations) {
    auto where = s3::parse_s3_url(d.url);
    if (!where) {
      return fail(Errc::invalid_argument,
                  fmt::format("backup destination {}: {}", d.name, where.error().message));
    }
    StorageConfig sc;
    sc.kind = "s3";
    sc.bucket = where.value().first;
    sc.prefix = where.value().second;
    sc.endpoint = d.endpoint;
    sc.region = d.region;
    sc.profile = d.profile;
    sc.addressing = d.addressing;
    sc.access_key = d.access_key;
    sc.secret_key = d.secret_key;
    auto target = s3::make_target(sc, env);
    if (!target) {
      return fail(target.error().code,
                  fmt::format("backup destination {}: {}", d.name, target.error().message));
    }
    Destination dest;
    dest.name = d.name;
    dest.mode = d.mode == "mirror" ? DestinationMode::mirror : DestinationMode::incremental;
    dest.encrypt = d.encrypt;
    dest.client = target.value().options;
    dest.bucket = target.value().bucket;
    dest.prefix = target.value().prefix;
    if (dest.mode == DestinationMode::mirror && dest.encrypt) {
      return fail(Errc::invalid_argument,
                  fmt::format("backup destination {}: mode mirror is a plain copy and cannot be "
                              "encrypted; use mode incremental with encrypt: true",
                              d.name));
    }
    out.destinations.push_back(std::move(dest));
  }
  return out;
}

Result<const Destination*> find_destination(const BackupConfig& config, std::string_view name) {
  std::string names;
  for (const auto& d : config.destinations) {
    if (d.name == name) return &d;
    names += (names.empty() ? "" : ", ") + d.name;
  }
  if (names.empty()) {
    return fail(Errc::not_found,
                fmt::format("no backup destination named '{}': none is configured (add "
                            "backup.destinations to the config)",
                            name));
  }
  return fail(Errc::not_found,
              fmt::format("no backup destination named '{}' (configured: {})", name, names));
}

}  // namespace ck::backup
