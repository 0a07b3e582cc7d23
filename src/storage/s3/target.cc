#include "storage/s3/target.h"

#include <fmt/format.h>

namespace ck::s3 {

namespace {

std::string trim_slashes(std::string s) {
  while (!s.empty() && s.front() == '/') s.erase(0, 1);
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// S3's bucket naming rules: 3-63 characters of a-z, 0-9, '.', '-', starting and ending with a
// letter or digit.
bool valid_bucket(std::string_view b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) return false;
  }
  auto edge = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  return edge(b.front()) && edge(b.back());
}

}  // namespace

std::string Target::url() const { return "s3://" + bucket + (prefix.empty() ? "" : "/" + prefix); }

Result<std::pair<std::string, std::string>> parse_s3_url(std::string_view url) {
  if (!url.starts_with("s3://")) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not an S3 URL: write it as s3://BUCKET or s3://BUCKET/PREFIX", url));
  }
  std::string rest(url.substr(5));
  auto slash = rest.find('/');
  std::string bucket = rest.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : trim_slashes(rest.substr(slash + 1));
  if (bucket.empty()) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' names no bucket: write it as s3://BUCKET/PREFIX", url));
  }
  return std::pair{bucket, prefix};
}

Result<Target> make_target(const StorageConfig& storage, const EnvFn& env) {
  Target t;
  t.bucket = storage.bucket;
  t.prefix = trim_slashes(storage.prefix);
  if (t.bucket.empty()) {
    return fail(Errc::invalid_argument,
                "S3 storage needs a bucket: pass --storage s3://BUCKET/PREFIX or set storage.bucket");
  }
  if (!valid_bucket(t.bucket)) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a valid S3 bucket name (3-63 characters of a-z, 0-9, '.' "
                            "and '-', starting and ending with a letter or digit)",
                            t.bucket));
  }
  if (t.prefix.find("//") != std::string::npos) {
    return fail(Errc::invalid_argument,
                fmt::format("the S3 prefix '{}' has an empty segment ('//'): remove it", t.prefix));
  }
  EnvFn with_profile = env;
  if (!storage.profile.empty()) {
    with_profile = [&env, profile = storage.profile](const std::string& name) -> std::optional<std::string> {
      if (name == "AWS_PROFILE") return profile;
      return env(name);
    };
  }
  if (storage.access_key.empty() != storage.secret_key.empty()) {
    return fail(Errc::invalid_argument,
                "storage.access_key and storage.secret_key go together: set both, or neither to use "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile");
  }
  Credentials explicit_keys{storage.access_key, storage.secret_key, ""};
  BOOST_OUTCOME_TRY(resolved, resolve_credentials(explicit_keys, storage.region, with_profile));
  t.options.credentials = resolved.credentials;
  t.options.region = resolved.region.empty() ? "us-east-1" : resolved.region;
  t.options.endpoint = storage.endpoint;
  if (t.options.endpoint.empty()) {
    if (auto ep = env("AWS_ENDPOINT_URL_S3"); ep && !ep->empty()) t.options.endpoint = *ep;
    else if (auto ep2 = env("AWS_ENDPOINT_URL"); ep2 && !ep2->empty()) t.options.endpoint = *ep2;
  }
  if (storage.addressing == "path") {
    t.options.path_style = true;
  } else if (storage.addressing == "virtual") {
    t.options.path_style = false;
  } else {
    // Custom endpoints (MinIO, s3rver, R2 with an account host) take path-style; AWS itself
    // wants virtual-host, which also works for every bucket whose name has no dots.
    t.options.path_style = !t.options.endpoint.empty() || t.bucket.find('.') != std::string::npos;
  }
  if (auto ca = env("AWS_CA_BUNDLE"); ca && !ca->empty()) t.options.ca_bundle = *ca;
  t.credentials_source = resolved.source;
  return t;
}

}  // namespace ck::s3
