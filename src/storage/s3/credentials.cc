#include "storage/s3/credentials.h"

#include <fmt/format.h>
#include <tuple>

#include "core/files.h"

namespace ck::s3 {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool has_section(std::string_view text, std::string_view section) {
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto nl = text.find('\n', pos);
    auto line = trim(text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    if (line.size() >= 2 && line.front() == '[' && line.back() == ']' &&
        trim(line.substr(1, line.size() - 2)) == section) {
      return true;
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return false;
}

}  // namespace

std::optional<std::string> ini_value(std::string_view text, std::string_view section, std::string_view key) {
  bool in = false;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto nl = text.find('\n', pos);
    auto line = trim(text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      in = line.back() == ']' && trim(line.substr(1, line.size() - 2)) == section;
      continue;
    }
    if (!in) continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    if (trim(line.substr(0, eq)) == key) return std::string(trim(line.substr(eq + 1)));
  }
  return std::nullopt;
}

Result<ResolvedCredentials> resolve_credentials(const Credentials& explicit_creds,
                                                const std::string& explicit_region, const EnvFn& env) {
  auto get = [&](const char* name) { return env(name).value_or(""); };
  ResolvedCredentials out;
  out.region = explicit_region;
  if (out.region.empty()) out.region = get("AWS_REGION");
  if (out.region.empty()) out.region = get("AWS_DEFAULT_REGION");

  if (!explicit_creds.access_key.empty() && !explicit_creds.secret_key.empty()) {
    out.credentials = explicit_creds;
    out.source = "the command line or config";
  } else if (!get("AWS_ACCESS_KEY_ID").empty() && !get("AWS_SECRET_ACCESS_KEY").empty()) {
    out.credentials = {get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"), get("AWS_SESSION_TOKEN")};
    out.source = "the environment (AWS_ACCESS_KEY_ID)";
  }

  std::string profile = get("AWS_PROFILE");
  bool named = !profile.empty();
  if (!named) profile = "default";
  std::string home = get("HOME");
  std::string cred_file = get("AWS_SHARED_CREDENTIALS_FILE");
  if (cred_file.empty() && !home.empty()) cred_file = home + "/.aws/credentials";
  std::string config_file = get("AWS_CONFIG_FILE");
  if (config_file.empty() && !home.empty()) config_file = home + "/.aws/config";
  std::string creds_text = cred_file.empty() ? "" : read_file(cred_file).value_or("");
  std::string config_text = config_file.empty() ? "" : read_file(config_file).value_or("");
  std::string config_section = profile == "default" ? "default" : "profile " + profile;

  bool found_profile = has_section(creds_text, profile) || has_section(config_text, config_section);
  if (named && !found_profile && out.credentials.access_key.empty()) {
    return fail(Errc::invalid_argument,
                fmt::format("AWS_PROFILE is '{}', but neither {} nor {} has that profile: check the name, "
                            "or unset AWS_PROFILE",
                            profile, cred_file.empty() ? "~/.aws/credentials" : cred_file,
                            config_file.empty() ? "~/.aws/config" : config_file));
  }
  if (out.region.empty()) out.region = ini_value(config_text, config_section, "region").value_or("");
  if (out.credentials.access_key.empty()) {
    for (const auto& [text, section, file] :
         {std::tuple{&creds_text, profile, cred_file}, std::tuple{&config_text, config_section, config_file}}) {
      auto key = ini_value(*text, section, "aws_access_key_id");
      auto secret = ini_value(*text, section, "aws_secret_access_key");
      if (key && secret && !key->empty() && !secret->empty()) {
        out.credentials = {*key, *secret, ini_value(*text, section, "aws_session_token").value_or("")};
        out.source = fmt::format("profile {} in {}", profile, file);
        break;
      }
    }
  }
  if (out.credentials.access_key.empty()) {
    return fail(Errc::invalid_argument,
                fmt::format("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pass them in "
                            "the config, or add profile '{}' to {}",
                            profile, cred_file.empty() ? "~/.aws/credentials" : cred_file));
  }
  return out;
}

}  // namespace ck::s3
