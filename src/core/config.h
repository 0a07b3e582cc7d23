#pragma once
// The daemon's configuration: one YAML file, overridden by CK_* environment variables,
// overridden by command-line flags (DESIGN.md "Configuration"). Plain data once loaded.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/units.h"

namespace ck {

/// One certificate and its private key (PEM files) for the gateway's TLS listener.
struct TlsFiles {
  std::string cert;
  std::string key;
  bool operator==(const TlsFiles&) const = default;
};

struct GatewayConfig {
  std::string listen = "127.0.0.1:8080";
  Duration request_timeout = std::chrono::seconds(60);
  std::uint64_t max_body = 64ull << 20;
  std::uint64_t max_header = 32ull << 10;
  /// The largest file the files API writes (a PUT body) or reads (GET); past it, 413.
  std::uint64_t max_file_body = 10ull << 20;
  int threads = 0;  // 0: one per core
  bool live_reload = false;  // static HTML pages get a script that reloads them on change
  std::uint64_t event_buffer = 4ull << 20;  // a /monitor/ws client this far behind is dropped
  int max_connections = 10000;       // open client connections, all workers together
  int max_connections_per_ip = 256;  // open client connections from one address
  Duration header_timeout = std::chrono::seconds(10);  // to send a request's complete headers
  Duration ws_idle_timeout = std::chrono::hours(1);    // an Upgrade tunnel with no traffic
  /// Set: <name>.<domain> routes to workspace <name> at its root (lower case, no trailing dot).
  std::string domain;
  /// Set: the dashboard, API and login live on this host only (lower case, no port).
  std::string control_host;
  /// gateway.tls.cert / gateway.tls.key: the default certificate; set, the listener speaks
  /// TLS only. gateway.tls.certs: more pairs, picked by SNI (the default first when
  /// gateway.tls.cert is unset).
  TlsFiles tls;
  std::vector<TlsFiles> tls_certs;
  /// How often the certificate files are checked for a change (0: never reloaded).
  Duration tls_reload = std::chrono::seconds(2);
  /// Set (ADDR:PORT): a plain HTTP listener answering every request with 308 to https.
  std::string redirect_http;
  /// Strict-Transport-Security max-age on every answer over TLS; 0: none.
  Duration hsts = Duration::zero();

  /// Every certificate pair, the default first; empty without TLS.
  std::vector<TlsFiles> tls_pairs() const;
  bool tls_enabled() const { return !tls_pairs().empty(); }
  /// Set ("https://ck.example.com"): where the gateway is reached from outside, for the
  /// workspaces' BASE_URL and the API's `url` (core/public_url.h). Empty: http://<listen>.
  std::string public_url;
};

struct StorageConfig {
  std::string kind = "dir";
  std::string path = "./workspaces";
  Duration scan_interval = std::chrono::seconds(2);
  Duration debounce = std::chrono::milliseconds(300);  // file changes gathered before acting
  std::string bucket, prefix, endpoint, region;
  std::string addressing = "auto";  // s3: path, virtual or auto (path with an endpoint, else virtual)
  Duration list_interval = std::chrono::seconds(5);  // s3: how often the daemon lists the bucket
  std::string profile;  // s3: the AWS profile (else AWS_PROFILE, else "default")
  std::string access_key, secret_key;  // s3: explicit keys (else the environment, else the profile)
};

struct RuntimeConfig {
  std::string kind = "auto";
  int port_min = 8000;
  int port_max = 8100;
  Duration ready_timeout = std::chrono::seconds(60);
  int install_concurrency = 0;  // starts (installs) at once; 0: one per core
  // Process runtime sandbox: the host uids (= gids) handed to workspaces, one each.
  std::int64_t uid_min = 200000;
  std::int64_t uid_max = 265535;
  // Run workspaces with the layers the kernel allows instead of refusing them.
  bool allow_weak_sandbox = false;
  // Compose workspaces: services other than the routed one publish their file's ports (on
  // 127.0.0.1 only).
  bool compose_host_ports = false;
  // Cleanup jobs (issue 19): how often they run, and what happens to dependency volumes.
  Duration cleanup_interval = std::chrono::hours(1);
  Duration deps_keep = std::chrono::hours(24 * 7);  // a volume unused this long is removed
  std::uint64_t deps_max_size = 0;                   // dependency volumes together; 0: no cap
};

struct JobsConfig {
  int max_attempts = 5;  // then the job is dead (kept, visible in the API)
  Duration backoff = std::chrono::seconds(1);  // after the first failure; doubles each time
  Duration backoff_cap = std::chrono::minutes(5);
};

struct IdleConfig {
  Duration idle_after = std::chrono::minutes(2);
  Duration background_after = std::chrono::minutes(10);
  Duration stop_after = std::chrono::minutes(30);
  Duration grace = std::chrono::seconds(30);
  Duration wake_timeout = std::chrono::seconds(60);
};

struct LimitsConfig {
  std::uint64_t memory = 512ull << 20;
  double cpus = 1;
  int pids = 256;
  std::uint64_t install_memory = 1ull << 30;
  // Ceilings for workspace.json "resources"; 0: the same as memory / cpus / pids.
  std::uint64_t max_memory = 0;
  double max_cpus = 0;
  int max_pids = 0;
  // Docker: apps may open outbound connections (false: an internal network).
  bool egress = true;
  // Docker image builds (Dockerfile workspaces): memory (0: install_memory) and time.
  std::uint64_t build_memory = 0;
  Duration build_timeout = std::chrono::minutes(30);
};

/// git-backed workspaces (issue 16).
struct GitConfig {
  Duration poll = std::chrono::seconds(60);  // fetch and fast-forward every workspace; 0: never
  std::string autocommit = "on-save";        // off | on-save | interval
  Duration autocommit_interval = std::chrono::minutes(5);
  std::string webhook_secret;  // POST /git/hook: HMAC key (GitHub, Gitea) or token (GitLab)
  std::string username;        // https remotes: the user name sent with the token ("git")
  std::string token;           // https remotes: the password/token when a workspace has none
  bool allow_local_remotes = false;  // file:// and /path remotes (the operator's own)
};

/// One backup.destinations item (issue 17); src/backup resolves credentials and checks the URL.
struct BackupDestinationConfig {
  std::string name;
  std::string url;  // s3://BUCKET/PREFIX
  std::string endpoint, region, profile;
  std::string addressing = "auto";  // path, virtual or auto (as storage.addressing)
  std::string access_key, secret_key;  // explicit keys (else the environment, else the profile)
  bool encrypt = false;
  std::string mode = "incremental";  // incremental | mirror
  bool operator==(const BackupDestinationConfig&) const = default;
};

/// backup: destinations, schedule, keep (prune's policy) and the encryption passphrase.
struct BackupSettings {
  std::vector<BackupDestinationConfig> destinations;
  Duration schedule = std::chrono::hours(1);
  int keep_last = 0, keep_hourly = 24, keep_daily = 7, keep_weekly = 4, keep_monthly = 12;
  std::string key;  // backup.key / CK_BACKUP_KEY; never logged
};

struct Config {
  GatewayConfig gateway;
  StorageConfig storage;
  RuntimeConfig runtime;
  std::string data = "./data";
  IdleConfig idle;
  std::map<std::string, std::string> images = {{"node", "node:20-slim"},
                                                {"python", "python:3.12-slim"},
                                                {"php", "php:8.3-cli"},
                                                {"go", "golang:1.22"},
                                                {"ruby", "ruby:3.3-slim"}};
  LimitsConfig limits;
  JobsConfig jobs;
  GitConfig git;
  BackupSettings backup;
  std::string admin_token;
  std::string templates;  // the workspace templates folder; empty: next to the binary
  std::string log_format = "text";
  std::string log_level = "info";
  // Cleanup jobs (issue 19): DATA/trash entries, state.db history and workspace logs.
  Duration trash_keep = std::chrono::hours(24 * 7);     // data.trash_keep
  Duration keep_history = std::chrono::hours(24 * 30);  // state.keep_history
  std::uint64_t log_max_size = 10ull << 20;             // log.max_size: per workspace log
  int log_keep = 3;                                     // log.keep: rotated files kept
};

/// One setting given as text, with where it came from for error messages
/// ("config.yaml:3", "CK_GATEWAY_LISTEN", "--listen").
struct Setting {
  std::string key;  // dotted path, e.g. "gateway.listen"
  std::string value;
  std::string origin;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

/// Reads the settings of a YAML document. Unknown keys, lists where a value belongs, and
/// syntax errors are errors that name the file and line.
Result<std::vector<Setting>> read_yaml_settings(const std::string& text, const std::string& origin);

/// Builds the configuration: defaults < YAML file (if any) < environment < flags.
Result<Config> load_config(const std::optional<std::filesystem::path>& file, const EnvLookup& env,
                           const std::vector<Setting>& flags);

/// Applies one setting; fails with a message naming the origin, key and expected form.
Result<void> apply_setting(Config& config, const Setting& s);

/// The environment variable that overrides a key: "gateway.listen" -> "CK_GATEWAY_LISTEN".
std::string env_name_for(const std::string& key);

/// Every key the configuration knows, dotted.
std::vector<std::string> config_keys();

/// Parses gateway.tls.certs' text form: "CERT:KEY[,CERT:KEY...]" (what CK_GATEWAY_TLS_CERTS
/// holds; a YAML list of {cert, key} maps is turned into it). Empty: no pairs.
Result<std::vector<TlsFiles>> parse_tls_pairs(const std::string& text);

/// Parses backup.destinations' text form: a YAML or JSON flow list of maps
/// (`[{name: a, url: "s3://b/p", endpoint: "http://..."}]`, what CK_BACKUP_DESTINATIONS holds; a
/// YAML list in the file is turned into it). Empty: none. At most 64 KiB and 100 items.
Result<std::vector<BackupDestinationConfig>> parse_backup_destinations(const std::string& text);

/// Parses "ADDR:PORT" ("127.0.0.1:8080", "[::1]:80", ":8080" = all interfaces).
Result<std::pair<std::string, std::uint16_t>> parse_listen(const std::string& listen);

}  // namespace ck
