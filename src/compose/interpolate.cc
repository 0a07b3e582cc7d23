// ${VAR} substitution as Compose does it, on one scalar value. Defaults and alternatives may
// nest (${A:-${B:-x}}); nesting depth and the result's size are bounded.
#include <cctype>
#include <string>

#include "compose/model.h"

namespace ck::compose {
namespace {

constexpr std::size_t kMaxValue = 1u << 20;
constexpr int kMaxNesting = 16;

bool name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_'; }
bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

void append(std::string& out, std::string_view s, const Location& where) {
  if (out.size() + s.size() > kMaxValue) {
    throw Error(where, "the value grows past 1 MiB after substituting variables");
  }
  out.append(s);
}

const std::string* lookup(const Vars& vars, const std::string& name) {
  auto it = vars.find(name);
  return it == vars.end() ? nullptr : &it->second;
}

std::string run(std::string_view text, const Vars& vars, const Location& where, int depth) {
  if (depth > kMaxNesting) {
    throw Error(where, "variable references nest deeper than 16 levels");
  }
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t dollar = text.find('$', i);
    if (dollar == std::string_view::npos) {
      append(out, text.substr(i), where);
      break;
    }
    append(out, text.substr(i, dollar - i), where);
    i = dollar;
    char next = i + 1 < text.size() ? text[i + 1] : '\0';
    if (next == '$') {
      append(out, "$", where);
      i += 2;
      continue;
    }
    if (name_start(next)) {
      std::size_t j = i + 1;
      while (j < text.size() && name_char(text[j])) {
        ++j;
      }
      if (const std::string* v = lookup(vars, std::string(text.substr(i + 1, j - i - 1)))) {
        append(out, *v, where);
      }
      i = j;
      continue;
    }
    if (next != '{') {
      throw Error(where,
                  "invalid interpolation: '$' must be followed by a NAME, {NAME} or '$' "
                  "(write $$ for a literal $)");
    }
    // Find the matching '}', skipping nested ${...} and $$.
    std::size_t j = i + 2;
    int open = 1;
    while (j < text.size()) {
      if (text[j] == '$' && j + 1 < text.size() && (text[j + 1] == '$' || text[j + 1] == '{')) {
        if (text[j + 1] == '{') {
          ++open;
        }
        j += 2;
        continue;
      }
      if (text[j] == '}' && --open == 0) {
        break;
      }
      ++j;
    }
    if (j >= text.size()) {
      throw Error(where, "unterminated ${ in a variable reference; close it with }");
    }
    std::string_view expr = text.substr(i + 2, j - i - 2);
    i = j + 1;
    std::size_t n = 0;
    if (expr.empty() || !name_start(expr[0])) {
      throw Error(where, "invalid variable reference ${" + std::string(expr) +
                             "}: expected ${NAME}, ${NAME:-default}, ${NAME-default}, "
                             "${NAME:?error}, ${NAME?error}, ${NAME:+alt} or ${NAME+alt}");
    }
    while (n < expr.size() && name_char(expr[n])) {
      ++n;
    }
    std::string name(expr.substr(0, n));
    std::string_view op = expr.substr(n);
    const std::string* value = lookup(vars, name);
    bool set = value != nullptr;
    bool full = set && !value->empty();
    auto arg_of = [&](std::size_t len) { return run(op.substr(len), vars, where, depth + 1); };
    if (op.empty()) {
      if (set) {
        append(out, *value, where);
      }
    } else if (op.substr(0, 2) == ":-" || op[0] == '-') {
      bool use = op[0] == ':' ? full : set;
      append(out, use ? *value : arg_of(op[0] == ':' ? 2 : 1), where);
    } else if (op.substr(0, 2) == ":?" || op[0] == '?') {
      bool ok = op[0] == ':' ? full : set;
      if (!ok) {
        std::string why = arg_of(op[0] == ':' ? 2 : 1);
        throw Error(where, "required variable " + name + " is " + (set ? "empty" : "not set") +
                               (why.empty() ? "" : ": " + why) +
                               "; set it in the workspace's .env");
      }
      append(out, *value, where);
    } else if (op.substr(0, 2) == ":+" || op[0] == '+') {
      bool use = op[0] == ':' ? full : set;
      if (use) {
        append(out, arg_of(op[0] == ':' ? 2 : 1), where);
      }
    } else {
      throw Error(where, "invalid variable reference ${" + std::string(expr) +
                             "}: after the name expected }, :-, -, :?, ?, :+ or +");
    }
  }
  return out;
}

}  // namespace

std::string interpolate(std::string_view text, const Vars& vars, const Location& where) {
  return run(text, vars, where, 0);
}

}  // namespace ck::compose
