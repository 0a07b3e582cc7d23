#include "workspace/dev_server.h"

#include <vector>

namespace ck {
namespace {

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string_view unquote(std::string_view w) {
  if (w.size() >= 2 && (w.front() == '"' || w.front() == '\'') && w.back() == w.front()) {
    return w.substr(1, w.size() - 2);
  }
  return w;
}

bool is_assignment(std::string_view w) {
  auto eq = w.find('=');
  if (eq == std::string_view::npos || eq == 0) return false;
  for (char c : w.substr(0, eq)) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

// The last command of `a && b || c; d`, or nullopt-like empty for scripts whose shape is not
// a plain chain of commands.
bool last_command(std::string_view script, std::string_view& out) {
  constexpr std::size_t kMaxScript = 4096;
  if (script.size() > kMaxScript) return false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < script.size(); ++i) {
    char c = script[i];
    if (c == '&' || c == '|') {
      if (i + 1 < script.size() && script[i + 1] == c) {
        start = i + 2;
        ++i;
        continue;
      }
      return false;  // a pipe or a background job
    }
    if (c == ';') {
      start = i + 1;
      continue;
    }
    if (c == '#' || c == '`' || c == '(' || c == ')' || c == '<' || c == '>' || c == '\n' ||
        c == '\r' || c == '\\') {
      return false;
    }
  }
  out = script.substr(start);
  return true;
}

}  // namespace

DevServer recognise_dev_server(std::string_view script, bool has_sveltekit) {
  DevServer d;
  std::string_view cmd;
  if (!last_command(script, cmd)) return d;
  auto w = words(cmd);
  std::size_t i = 0;
  for (bool skipped = true; skipped && i < w.size();) {
    skipped = is_assignment(w[i]) || w[i] == "cross-env" || w[i] == "npx" || w[i] == "exec" ||
              w[i] == "env";
    if (skipped) ++i;
  }
  if (i == w.size()) return d;
  std::string_view program = unquote(w[i]);
  if (auto slash = program.rfind('/'); slash != std::string_view::npos) {
    program = program.substr(slash + 1);
  }
  // The first word after the program that is not a flag: vite's, astro's or next's command.
  std::string_view sub;
  for (std::size_t k = i + 1; k < w.size(); ++k) {
    if (!w[k].starts_with("-")) {
      sub = w[k];
      break;
    }
  }
  const bool only_flags = sub.empty();
  for (std::size_t k = i + 1; k < w.size(); ++k) {
    std::string_view a = unquote(w[k]);
    if (a == "--base" || a.starts_with("--base=")) d.has_base = true;
  }
  if (program == "vite") {
    // `vite` and `vite <flags>` start the dev server, whose first argument may also be a
    // root folder; build, preview (serves a build made with its own base) and optimize do not.
    if (sub == "build" || sub == "preview" || sub == "optimize") return DevServer{};
    if (has_sveltekit) {
      d.name = "sveltekit";  // the base is paths.base in svelte.config.js, no flag
      return d;
    }
    d.name = "vite";
    d.takes_base_flag = true;
  } else if (program == "astro" && sub == "dev") {
    d.name = "astro";
    d.takes_base_flag = true;
  } else if (program == "next" && (sub == "dev" || (only_flags && i + 1 == w.size()))) {
    d.name = "next";  // basePath lives in next.config.js only
  } else if (((program == "webpack" || program == "webpack-cli") && sub == "serve") ||
             program == "webpack-dev-server") {
    d.name = "webpack-dev-server";  // publicPath and the client URL come from webpack.config.js
  } else {
    return DevServer{};
  }
  return d;
}

std::string with_base_flag(std::string_view command) {
  std::string out(command);
  while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
  bool npm = out == "npm start" || out.starts_with("npm run ");
  out += npm ? " -- --base \"$CK_BASE_PATH\"" : " --base \"$CK_BASE_PATH\"";
  return out;
}

}  // namespace ck
