#pragma once
// Where S3 credentials and the region come from, in the order every AWS tool uses: explicit
// values (flags, config) > environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION) > the profile (AWS_PROFILE, else
// "default") in the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
// ~/.aws/credentials) and then the config file (AWS_CONFIG_FILE, else ~/.aws/config, where
// sections are "[profile NAME]" except "[default]"). Pure apart from reading those two files.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "storage/s3/sigv4.h"

namespace ck::s3 {

struct ResolvedCredentials {
  Credentials credentials;
  std::string region;  // may be empty: the caller's default applies
  std::string source;  // where the keys came from, for logs: "environment", "profile x in FILE"
};

using EnvFn = std::function<std::optional<std::string>(const std::string&)>;

/// `explicit_creds` wins when both keys are set. Fails with a message listing what was tried
/// when no keys are found anywhere, or when a named profile (AWS_PROFILE) does not exist.
Result<ResolvedCredentials> resolve_credentials(const Credentials& explicit_creds,
                                                const std::string& explicit_region,
                                                const EnvFn& env);

/// The keys of one section of an INI-style AWS file ("" if absent). Exposed for tests.
std::optional<std::string> ini_value(std::string_view text, std::string_view section,
                                     std::string_view key);

}  // namespace ck::s3
