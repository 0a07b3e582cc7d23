#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "compose/model.h"
#include "workspace/dev_server.h"
#include "workspace/workspace.h"

namespace ck {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct TypeName {
  WorkspaceType type;
  std::string_view name;
};
constexpr TypeName kTypes[] = {
    {WorkspaceType::node, "node"},          {WorkspaceType::python, "python"},
    {WorkspaceType::php, "php"},            {WorkspaceType::go, "go"},
    {WorkspaceType::ruby, "ruby"},          {WorkspaceType::static_site, "static"},
    {WorkspaceType::compose, "compose"},    {WorkspaceType::dockerfile, "dockerfile"},
    {WorkspaceType::unknown, "unknown"},
};

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

std::optional<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string json_message(const std::exception& e) {
  std::string what = e.what();
  if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
  return what;
}

// Parses a JSON manifest; on failure returns the message a user needs: file, line, what.
std::optional<json> parse_manifest(const fs::path& p, const std::string& file, std::string& error) {
  auto text = read_file(p);
  if (!text) {
    error = fmt::format("{}: cannot be read ({})", file, std::strerror(errno));
    return std::nullopt;
  }
  try {
    json j = json::parse(*text);
    if (!j.is_object()) {
      error = fmt::format("{}: line 1: must be a JSON object {{...}}", file);
      return std::nullopt;
    }
    return j;
  } catch (const json::out_of_range& e) {
    // A number no double can hold ("1e999999"): not a syntax error, but just as fatal.
    error = fmt::format("{}: {}", file, json_message(e));
    return std::nullopt;
  } catch (const json::parse_error& e) {
    // Count the line ourselves: nlohmann reports a byte offset.
    size_t upto = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, text->size());
    int line = 1 + static_cast<int>(std::count(text->begin(), text->begin() + upto, '\n'));
    std::string what = json_message(e);
    // nlohmann says "parse error at line 3, column 58: ..." itself when it knows the spot.
    error = what.starts_with("parse error at line")
                ? fmt::format("{}: {}", file, what)
                : fmt::format("{}: parse error at line {}: {}", file, line, what);
    return std::nullopt;
  } catch (const json::exception& e) {
    error = fmt::format("{}: cannot be read as JSON: {}", file, e.what());
    return std::nullopt;
  }
}

std::string string_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it != j.end() && it->is_string()) return it->get<std::string>();
  return {};
}

void detect_type(const fs::path& dir, WorkspaceSpec& spec) {
  struct Rule {
    const char* file;
    WorkspaceType type;
  };
  static constexpr Rule kRules[] = {
      {"docker-compose.yml", WorkspaceType::compose}, {"docker-compose.yaml", WorkspaceType::compose},
      {"compose.yaml", WorkspaceType::compose},       {"compose.yml", WorkspaceType::compose},
      {"Dockerfile", WorkspaceType::dockerfile},      {"package.json", WorkspaceType::node},
      {"requirements.txt", WorkspaceType::python},    {"pyproject.toml", WorkspaceType::python},
      {"app.py", WorkspaceType::python},              {"main.py", WorkspaceType::python},
      {"composer.json", WorkspaceType::php},          {"index.php", WorkspaceType::php},
      {"go.mod", WorkspaceType::go},                  {"main.go", WorkspaceType::go},
      {"Gemfile", WorkspaceType::ruby},               {"index.html", WorkspaceType::static_site},
      {"public/index.html", WorkspaceType::static_site},
  };
  for (const auto& r : kRules) {
    if (is_file(dir / r.file)) {
      spec.type = r.type;
      spec.matched = r.file;
      return;
    }
  }
}

// Fills in install and run commands from the type's conventions, unless workspace.json
// already gave them.
// A dev server in the start script detection runs: keep the prefix (unless workspace.json
// says "prefix") and pass the base on its command line where it takes one.
void detect_dev_server(const json& package, const std::string& script, bool prefix_given,
                       WorkspaceSpec& spec) {
  if (prefix_given && spec.prefix == PrefixMode::strip) return;  // the user's word
  bool kit = false;
  for (const char* deps : {"dependencies", "devDependencies"}) {
    auto it = package.find(deps);
    if (it != package.end() && it->is_object() && it->contains("@sveltejs/kit")) kit = true;
  }
  DevServer d = recognise_dev_server(script, kit);
  if (d.name.empty()) return;
  spec.prefix = PrefixMode::keep;
  std::string why = prefix_given ? "workspace.json \"prefix\": \"keep\"" : "prefix: keep";
  if (d.takes_base_flag && !d.has_base) {
    spec.command = with_base_flag(spec.command);
    spec.prefix_note = fmt::format("{} dev server: the gateway keeps the /{}/ prefix ({}); it "
                                   "runs with --base \"$CK_BASE_PATH\"",
                                   d.name, spec.name, why);
  } else if (d.name == "next") {
    spec.prefix_note = fmt::format(
        "next dev: the gateway keeps the /{}/ prefix ({}); set basePath in next.config.js from "
        "the environment: basePath: process.env.CK_BASE_PATH.replace(/\\/$/, \"\")",
        spec.name, why);
  } else if (d.name == "sveltekit") {
    spec.prefix_note = fmt::format(
        "SvelteKit dev server: the gateway keeps the /{}/ prefix ({}); set kit.paths.base in "
        "svelte.config.js from the environment: process.env.CK_BASE_PATH.replace(/\\/$/, \"\")",
        spec.name, why);
  } else if (d.name == "webpack-dev-server") {
    spec.prefix_note = fmt::format(
        "webpack-dev-server: the gateway keeps the /{}/ prefix ({}); set output.publicPath and "
        "devServer.client.webSocketURL in webpack.config.js from process.env.CK_BASE_PATH",
        spec.name, why);
  } else {
    spec.prefix_note = fmt::format("{} dev server: the gateway keeps the /{}/ prefix ({}); its "
                                   "script passes the base itself",
                                   d.name, spec.name, why);
  }
}

void default_commands(const fs::path& dir, const json* package, bool prefix_given,
                      WorkspaceSpec& spec) {
  switch (spec.type) {
    case WorkspaceType::node: {
      if (spec.install.empty() && is_file(dir / "package.json")) {
        spec.install = is_file(dir / "package-lock.json") || is_file(dir / "npm-shrinkwrap.json")
                           ? "npm ci --no-audit --no-fund || { echo 'cloudyknight: npm ci failed "
                             "(package-lock.json out of sync?); falling back to npm install'; "
                             "npm install --no-audit --no-fund; }"
                           : "npm install --no-audit --no-fund";
      }
      if (!spec.command.empty()) return;
      if (package) {
        auto scripts = package->find("scripts");
        if (scripts != package->end() && scripts->is_object() && scripts->contains("start")) {
          // The start script itself, with node_modules/.bin on PATH, saves npm's own start-up
          // (about half a second) and lets signals reach the app; npm runs it when there are
          // pre/post hooks to honour.
          const auto& start = (*scripts)["start"];
          bool hooks = scripts->contains("prestart") || scripts->contains("poststart");
          spec.command = start.is_string() && !hooks && !start.get<std::string>().empty()
                             ? start.get<std::string>()
                             : "npm start";
          if (start.is_string()) detect_dev_server(*package, start.get<std::string>(), prefix_given, spec);
          return;
        }
        std::string main = string_field(*package, "main");
        if (!main.empty() && is_file(dir / main)) {
          spec.command = "node " + main;
          return;
        }
      }
      for (const char* f : {"server.js", "index.js", "app.js", "main.js"}) {
        if (is_file(dir / f)) {
          spec.command = std::string("node ") + f;
          return;
        }
      }
      spec.error =
          "package.json has no \"scripts\": {\"start\": ...} and there is no server.js, index.js "
          "or app.js: add a start script, or set \"command\" in workspace.json";
      return;
    }
    case WorkspaceType::python: {
      if (spec.install.empty() && is_file(dir / "requirements.txt")) {
        spec.install =
            "python3 -m venv .venv && .venv/bin/pip install --disable-pip-version-check -r "
            "requirements.txt";
      }
      if (!spec.command.empty()) return;
      for (const char* f : {"app.py", "main.py", "server.py", "manage.py"}) {
        if (is_file(dir / f)) {
          std::string arg = std::string(f) == "manage.py" ? "manage.py runserver ${HOST:-127.0.0.1}:$PORT" : f;
          spec.command = "if [ -x .venv/bin/python ]; then exec .venv/bin/python " + arg +
                         "; else exec python3 " + arg + "; fi";
          return;
        }
      }
      spec.error = "no app.py or main.py found: add one, or set \"command\" in workspace.json";
      return;
    }
    case WorkspaceType::php:
      if (spec.install.empty() && is_file(dir / "composer.json")) {
        spec.install = "composer install --no-interaction --no-progress";
      }
      if (spec.command.empty()) {
        spec.command = is_file(dir / "public/index.php") ? "exec php -S ${HOST:-127.0.0.1}:$PORT -t public"
                                                         : "exec php -S ${HOST:-127.0.0.1}:$PORT";
      }
      return;
    case WorkspaceType::go:
      if (spec.install.empty() && is_file(dir / "go.mod")) spec.install = "go mod download";
      if (spec.command.empty()) spec.command = "go run .";
      return;
    case WorkspaceType::ruby:
      if (spec.install.empty() && is_file(dir / "Gemfile")) spec.install = "bundle install";
      if (spec.command.empty()) {
        if (is_file(dir / "config.ru")) spec.command = "exec bundle exec rackup -o ${HOST:-127.0.0.1} -p $PORT";
        else if (is_file(dir / "app.rb")) spec.command = "exec bundle exec ruby app.rb";
        else spec.error = "no config.ru or app.rb found: add one, or set \"command\" in workspace.json";
      }
      return;
    case WorkspaceType::static_site:
      if (spec.static_root.empty() && !is_file(dir / "index.html") &&
          is_file(dir / "public/index.html")) {
        spec.static_root = "public";
      }
      return;
    case WorkspaceType::compose:
    case WorkspaceType::dockerfile:
    case WorkspaceType::unknown:
      return;
  }
}

// What makes a compose workspace's file unrunnable, found when it is detected, as a
// package.json error is, so the workspace shows "invalid" with file, line and key and is not
// retried until its source changes; "" when it can run. The runtime reads it again at start
// with the operator's limits (they change caps, never whether the file is refused).
std::string compose_problem(const std::string& name, const fs::path& dir) {
  try {
    compose::LoadOptions lo;
    lo.dir = dir;
    auto loaded = compose::load(lo);
    (void)compose::pick_route(loaded);
    compose::Policy policy;
    policy.workspace = name;
    policy.source = dir;
    (void)compose::start_order(compose::harden(std::move(loaded), policy));
    return "";
  } catch (const compose::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return fmt::format("the compose file cannot be read: {}", e.what());
  }
}

}  // namespace

std::string_view type_name(WorkspaceType t) {
  for (const auto& e : kTypes) {
    if (e.type == t) return e.name;
  }
  return "unknown";
}

std::optional<WorkspaceType> parse_type(std::string_view s) {
  for (const auto& e : kTypes) {
    if (e.name == s) return e.type;
  }
  if (s == "html") return WorkspaceType::static_site;
  return std::nullopt;
}

std::string_view prefix_name(PrefixMode m) { return m == PrefixMode::keep ? "keep" : "strip"; }

std::string WorkspaceSpec::fingerprint() const {
  std::string env_text;
  for (const auto& [k, v] : env) env_text += k + "=" + v + ";";
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", type_name(type), install, command,
                     port ? *port : 0, env_text, image, static_root, memory ? *memory : 0, reload,
                     prefix_name(prefix), error);
}

namespace {

WorkspaceSpec detect_folder(const std::string& name, const fs::path& dir) {
  WorkspaceSpec spec;
  spec.name = name;

  bool prefix_given = false;      // workspace.json "prefix"
  std::optional<json> manifest;  // workspace.json
  if (is_file(dir / "workspace.json")) {
    manifest = parse_manifest(dir / "workspace.json", "workspace.json", spec.error);
    if (!manifest) return spec;
  }
  std::optional<json> package;
  if (is_file(dir / "package.json")) {
    package = parse_manifest(dir / "package.json", "package.json", spec.error);
    if (!package) {
      spec.type = WorkspaceType::node;
      spec.matched = "package.json";
      return spec;
    }
    spec.description = string_field(*package, "description");
    spec.icon = string_field(*package, "icon");
  }

  detect_type(dir, spec);

  if (manifest) {
    const json& m = *manifest;
    auto bad = [&](const char* key, const char* want) {
      spec.error = fmt::format("workspace.json: \"{}\" must be {}", key, want);
    };
    if (m.contains("type")) {
      auto t = m["type"].is_string() ? parse_type(m["type"].get<std::string>()) : std::nullopt;
      if (!t) {
        bad("type", "one of node, python, php, go, ruby, static, compose, dockerfile");
        return spec;
      }
      spec.type = *t;
      spec.matched = "workspace.json";
    }
    if (auto d = string_field(m, "description"); !d.empty()) spec.description = d;
    if (auto i = string_field(m, "icon"); !i.empty()) spec.icon = i;
    if (m.contains("public")) {
      if (!m["public"].is_boolean()) return bad("public", "true or false"), spec;
      spec.is_public = m["public"].get<bool>();
    }
    if (m.contains("command")) {
      if (!m["command"].is_string()) return bad("command", "a string (run with sh -c)"), spec;
      spec.command = m["command"].get<std::string>();
    }
    if (m.contains("install")) {
      if (!m["install"].is_string()) return bad("install", "a string (run with sh -c)"), spec;
      spec.install = m["install"].get<std::string>();
    }
    if (m.contains("port")) {
      if (!m["port"].is_number_integer() || m["port"].get<std::int64_t>() < 1 ||
          m["port"].get<std::int64_t>() > 65535) {
        return bad("port", "a port number from 1 to 65535"), spec;
      }
      spec.port = m["port"].get<int>();
    }
    if (m.contains("image")) {
      if (!m["image"].is_string()) return bad("image", "a string"), spec;
      spec.image = m["image"].get<std::string>();
    }
    if (m.contains("env")) {
      if (!m["env"].is_object()) return bad("env", "an object of strings"), spec;
      for (const auto& [k, v] : m["env"].items()) {
        if (!v.is_string() && !v.is_number() && !v.is_boolean()) return bad("env", "an object of strings"), spec;
        spec.env[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
    if (m.contains("idle")) {
      const json& idle = m["idle"];
      if (!idle.is_object()) return bad("idle", "an object like {\"stop_after\": \"10m\"}"), spec;
      const std::pair<const char*, std::optional<Duration>*> keys[] = {
          {"idle_after", &spec.idle_after},
          {"background_after", &spec.background_after},
          {"stop_after", &spec.stop_after},
          {"grace", &spec.grace}};
      for (const auto& [key, out] : keys) {
        if (!idle.contains(key)) continue;
        auto d = idle[key].is_string() ? parse_duration(idle[key].get<std::string>())
                                       : Result<Duration>(fail(Errc::invalid_argument, "x"));
        if (d.has_error()) {
          spec.error = fmt::format("workspace.json: \"idle.{}\" must be a duration like \"10m\"", key);
          return spec;
        }
        *out = d.value();
      }
      for (const auto& [k, v] : idle.items()) {
        if (k != "idle_after" && k != "background_after" && k != "stop_after" && k != "grace") {
          spec.error = fmt::format(
              "workspace.json: \"idle\" has an unknown key \"{}\" (known: idle_after, "
              "background_after, stop_after, grace)",
              k);
          return spec;
        }
      }
    }
    if (m.contains("reload")) {
      std::string r = m["reload"].is_string() ? m["reload"].get<std::string>() : "";
      if (r != "restart" && r != "hmr" && r != "none") return bad("reload", "\"restart\", \"hmr\" or \"none\""), spec;
      spec.reload = r;
    }
    if (m.contains("prefix")) {
      std::string p = m["prefix"].is_string() ? m["prefix"].get<std::string>() : "";
      if (p != "strip" && p != "keep") return bad("prefix", "\"strip\" or \"keep\""), spec;
      spec.prefix = p == "keep" ? PrefixMode::keep : PrefixMode::strip;
      prefix_given = true;
    }
    if (m.contains("resources")) {
      const json& r = m["resources"];
      if (!r.is_object()) return bad("resources", "an object like {\"memory\": \"512m\"}"), spec;
      if (r.contains("memory")) {
        auto s = r["memory"].is_string() ? parse_size(r["memory"].get<std::string>())
                                         : Result<std::uint64_t>(fail(Errc::invalid_argument, "x"));
        if (s.has_error()) return bad("resources.memory", "a size like \"512m\""), spec;
        spec.memory = s.value();
      }
      if (r.contains("cpus")) {
        if (!r["cpus"].is_number() || r["cpus"].get<double>() <= 0) return bad("resources.cpus", "a positive number"), spec;
        spec.cpus = r["cpus"].get<double>();
      }
    }
    if (spec.type == WorkspaceType::unknown && !spec.command.empty()) {
      spec.matched = "workspace.json";
    }
  }

  if (spec.type == WorkspaceType::unknown && spec.command.empty()) {
    spec.error =
        "no app found: add index.html (static), package.json, app.py, index.php, go.mod, "
        "Gemfile or a Dockerfile, or set \"type\" and \"command\" in workspace.json";
    return spec;
  }
  default_commands(dir, package ? &*package : nullptr, prefix_given, spec);
  if (spec.type == WorkspaceType::compose) spec.error = compose_problem(name, dir);
  return spec;
}

}  // namespace

std::optional<PreviewOf> preview_of(const fs::path& dir) {
  // A worktree's .git is a file "gitdir: <root>/<parent>/.git/worktrees/<folder>\n".
  std::error_code ec;
  fs::path marker = dir / ".git";
  if (fs::is_symlink(marker, ec) || !fs::is_regular_file(marker, ec) || fs::file_size(marker, ec) > 4096) {
    return std::nullopt;
  }
  std::ifstream in(marker);
  std::string line;
  std::getline(in, line);
  if (line.rfind("gitdir: ", 0) != 0) return std::nullopt;
  std::string target = line.substr(8);
  while (target.size() > 1 && (target.back() == '/' || target.back() == '\r')) target.pop_back();
  fs::path gitdir = target;
  fs::path worktrees = gitdir.parent_path();
  if (worktrees.filename() != "worktrees" || worktrees.parent_path().filename() != ".git") return std::nullopt;
  fs::path parent = worktrees.parent_path().parent_path();
  std::error_code canon;
  if (fs::weakly_canonical(parent.parent_path(), canon) != fs::weakly_canonical(dir.parent_path(), canon) ||
      parent.filename() == dir.filename() || gitdir.filename() != dir.filename()) {
    return std::nullopt;
  }
  // Its branch ck/preview/<folder> follows refs/heads/<branch> (.git/config of the workspace,
  // written before the worktree was made, so the first look at the folder finds it).
  std::ifstream config(parent / ".git" / "config");
  const std::string section = "[branch \"ck/preview/" + dir.filename().string() + "\"]";
  PreviewOf out;
  out.workspace = parent.filename().string();
  bool in_section = false;
  for (std::string l; std::getline(config, l);) {
    auto b = l.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    l = l.substr(b);
    if (l.front() == '[') {
      in_section = l == section;
      continue;
    }
    if (in_section && l.rfind("merge", 0) == 0) {
      auto ref = l.find("refs/heads/");
      if (ref != std::string::npos) out.branch = l.substr(ref + 11);
      while (!out.branch.empty() && (out.branch.back() == ' ' || out.branch.back() == '\r')) out.branch.pop_back();
    }
  }
  if (out.branch.empty()) return std::nullopt;
  return out;
}

WorkspaceSpec detect_workspace(const std::string& name, const fs::path& dir) {
  WorkspaceSpec spec = detect_folder(name, dir);
  if (auto p = preview_of(dir)) {
    spec.preview_of = p->workspace;
    spec.preview_branch = p->branch;
    // A preview is never more public than its workspace.
    fs::path parent_manifest = dir.parent_path() / p->workspace / "workspace.json";
    if (is_file(parent_manifest)) {
      std::string ignored;
      auto m = parse_manifest(parent_manifest, "workspace.json", ignored);
      if (m && m->is_object() && m->contains("public") && (*m)["public"] == false) spec.is_public = false;
    }
  }
  return spec;
}

}  // namespace ck
