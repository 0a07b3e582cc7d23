#pragma once
// The S3 settings of the configuration (storage.kind: s3) turned into a client and a location,
// for the CLI and the daemon alike.

#include <string>

#include "core/config.h"
#include "core/error.h"
#include "storage/s3/client.h"
#include "storage/s3/credentials.h"

namespace ck::s3 {

struct Target {
  ClientOptions options;
  std::string bucket;
  std::string prefix;              // without leading or trailing '/'; may be empty
  std::string credentials_source;  // for logs: where the keys came from

  /// "s3://bucket/prefix" as the user wrote it.
  std::string url() const;
};

/// Validates bucket and prefix, resolves credentials and region (storage.profile, then
/// AWS_PROFILE; see credentials.h) and picks path-style or virtual-host addressing
/// (storage.addressing: auto = path-style when an endpoint is given, else virtual-host).
Result<Target> make_target(const StorageConfig& storage, const EnvFn& env);

/// "s3://BUCKET/PREFIX" → (bucket, prefix); fails with a clear message on anything else.
Result<std::pair<std::string, std::string>> parse_s3_url(std::string_view url);

}  // namespace ck::s3
