#include "compose/tree.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <unordered_set>

namespace ck::compose::detail {
namespace {

int line_of(const YAML::Mark& mark) { return mark.line >= 0 ? mark.line + 1 : 0; }

class Builder {
 public:
  Builder(const std::string& file, const TreeLimits& limits) : file_(file), limits_(limits) {}

  Node convert(const YAML::Node& in, int depth) {
    int line = line_of(in.Mark());
    if (depth > limits_.max_depth) {
      throw Error({file_, line, ""}, "the document nests deeper than " +
                                         std::to_string(limits_.max_depth) + " levels; flatten it");
    }
    if (++nodes_ > limits_.max_nodes) {
      throw Error({file_, line, ""}, "the document expands to more than " +
                                         std::to_string(limits_.max_nodes) +
                                         " nodes (aliases included); it is refused as a YAML bomb");
    }
    Node out;
    out.line = line;
    switch (in.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        out.kind = Node::Kind::null;
        break;
      case YAML::NodeType::Scalar:
        out.kind = Node::Kind::scalar;
        out.scalar = in.Scalar();
        bytes_ += out.scalar.size();
        if (bytes_ > limits_.max_scalar_bytes) {
          throw Error({file_, line, ""}, "the document expands to more than " +
                                             std::to_string(limits_.max_scalar_bytes >> 20) +
                                             " MiB of text (aliases included); it is refused");
        }
        break;
      case YAML::NodeType::Sequence:
        out.kind = Node::Kind::sequence;
        if (in.size() > limits_.max_items) {
          throw Error({file_, line, ""},
                      "a list holds more than " + std::to_string(limits_.max_items) + " items");
        }
        for (const auto& item : in) {
          out.items.push_back(convert(item, depth + 1));
        }
        break;
      case YAML::NodeType::Map: {
        out.kind = Node::Kind::mapping;
        if (in.size() > limits_.max_items) {
          throw Error({file_, line, ""},
                      "a mapping holds more than " + std::to_string(limits_.max_items) + " keys");
        }
        std::vector<Node> merges;
        std::unordered_set<std::string> seen;
        for (const auto& kv : in) {
          const YAML::Node& key = kv.first;
          int key_line = line_of(key.Mark());
          if (!key.IsScalar()) {
            throw Error({file_, key_line, ""}, "a mapping key must be a plain string");
          }
          if (key.Scalar() == "<<" && key.Tag() != "!") {
            merges.push_back(convert(kv.second, depth + 1));
            continue;
          }
          if (!seen.insert(key.Scalar()).second) {
            throw Error({file_, key_line, key.Scalar()},
                        "duplicate key; each key may appear once in a mapping");
          }
          bytes_ += key.Scalar().size();
          out.entries.push_back(Entry{key.Scalar(), convert(kv.second, depth + 1)});
          out.key_lines.push_back(key_line);
        }
        // `<<: *base` or `<<: [*a, *b]`: keys written here win, then the first merged map.
        for (auto& m : merges) {
          std::vector<Node*> sources;
          if (m.kind == Node::Kind::mapping) {
            sources.push_back(&m);
          } else if (m.kind == Node::Kind::sequence) {
            for (auto& item : m.items) {
              sources.push_back(&item);
            }
          }
          for (Node* src : sources) {
            if (src->kind != Node::Kind::mapping) {
              throw Error({file_, src->line, "<<"},
                          "a merge key takes a mapping or a list of mappings");
            }
            for (std::size_t i = 0; i < src->entries.size(); ++i) {
              if (seen.insert(src->entries[i].first).second) {
                out.entries.push_back(src->entries[i]);
                out.key_lines.push_back(src->key_lines[i]);
              }
            }
          }
        }
        break;
      }
    }
    return out;
  }

 private:
  const std::string& file_;
  const TreeLimits& limits_;
  std::size_t nodes_ = 0;
  std::size_t bytes_ = 0;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool valid_env_key(std::string_view key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0])) != 0) {
    return false;
  }
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-';
  });
}

/// YAML text is UTF-8 without control characters (but tab, newline and carriage return), as
/// Compose's own reader insists; the emitter would otherwise turn different invalid bytes into
/// the same U+FFFD and print a file that reads back differently.
void check_text(std::string_view text, const std::string& file) {
  int line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      ++line;
    }
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
        throw Error({file, line, ""}, "the file holds a control character (byte " +
                                          std::to_string(c) + "); remove it");
      }
      ++i;
      continue;
    }
    std::size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    bool ok = len != 0 && i + len <= text.size();
    std::uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (std::size_t k = 1; ok && k < len; ++k) {
      auto cc = static_cast<unsigned char>(text[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3f);
    }
    ok = ok && !(len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) &&
         !(len == 4 && (cp < 0x10000 || cp > 0x10ffff));
    if (!ok) {
      throw Error({file, line, ""}, "the file is not valid UTF-8; save it as UTF-8");
    }
    i += len;
  }
}

}  // namespace

const Node* Node::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) {
      return &v;
    }
  }
  return nullptr;
}

Node parse_tree(std::string_view text, const std::string& file, const TreeLimits& limits) {
  check_text(text, file);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw Error({file, line_of(e.mark), ""}, "YAML syntax error: " + e.msg);
  }
  Builder builder(file, limits);
  try {
    return builder.convert(root, 0);
  } catch (const YAML::Exception& e) {
    throw Error({file, line_of(e.mark), ""}, "YAML error: " + e.msg);
  }
}

std::vector<std::pair<std::string, std::string>> parse_env_text(std::string_view text,
                                                                const std::string& file) {
  check_text(text, file);
  std::vector<std::pair<std::string, std::string>> out;
  int line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    ++line_no;
    std::string_view line = trim(text.substr(pos, end - pos));
    std::size_t next = end + 1;
    if (line.empty() || line.front() == '#') {
      pos = next;
      continue;
    }
    if (line.substr(0, 7) == "export ") {
      line = trim(line.substr(7));
    }
    std::size_t eq = line.find('=');
    std::string key(trim(line.substr(0, eq)));
    if (!valid_env_key(key)) {
      throw Error({file, line_no, key},
                  "expected KEY=VALUE with a name of letters, digits and '_' ");
    }
    if (eq == std::string_view::npos) {
      // A bare name: Compose reads it from the shell's environment, which we never pass on.
      pos = next;
      continue;
    }
    std::string_view raw = trim(line.substr(eq + 1));
    std::string value;
    if (!raw.empty() && (raw.front() == '"' || raw.front() == '\'')) {
      char quote = raw.front();
      // A quoted value may span lines, up to its closing quote.
      std::string_view rest = text.substr(static_cast<std::size_t>(raw.data() - text.data()) + 1);
      std::size_t i = 0;
      bool closed = false;
      for (; i < rest.size(); ++i) {
        char c = rest[i];
        if (c == quote) {
          closed = true;
          break;
        }
        if (c == '\n') {
          ++line_no;
        }
        if (quote == '"' && c == '\\' && i + 1 < rest.size()) {
          char n = rest[++i];
          switch (n) {
            case 'n':
              value += '\n';
              break;
            case 't':
              value += '\t';
              break;
            case 'r':
              value += '\r';
              break;
            default:
              value += n;
              break;
          }
          continue;
        }
        value += c;
      }
      if (!closed) {
        throw Error({file, line_no, key}, std::string("unterminated ") + quote + " quote");
      }
      std::size_t consumed = static_cast<std::size_t>(rest.data() - text.data()) + i + 1;
      std::size_t eol = text.find('\n', consumed);
      next = eol == std::string_view::npos ? text.size() + 1 : eol + 1;
    } else {
      std::size_t hash = raw.find(" #");
      value = std::string(trim(raw.substr(0, hash)));
    }
    out.emplace_back(std::move(key), std::move(value));
    pos = next;
  }
  return out;
}

std::vector<std::string> split_shell(std::string_view text, const Location& where) {
  std::vector<std::string> out;
  std::string word;
  bool in_word = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) {
        out.push_back(std::move(word));
        word.clear();
        in_word = false;
      }
      continue;
    }
    in_word = true;
    if (c == '\\') {
      if (i + 1 < text.size()) {
        if (text[i + 1] != '\n') {
          word += text[i + 1];
        }
        ++i;
      }
      continue;
    }
    if (c == '\'') {
      std::size_t close = text.find('\'', i + 1);
      if (close == std::string_view::npos) {
        throw Error(where, "unterminated ' quote in the command; close it or use the list form");
      }
      word.append(text.substr(i + 1, close - i - 1));
      i = close;
      continue;
    }
    if (c == '"') {
      std::size_t j = i + 1;
      for (; j < text.size() && text[j] != '"'; ++j) {
        if (text[j] == '\\' && j + 1 < text.size() &&
            (text[j + 1] == '"' || text[j + 1] == '\\' || text[j + 1] == '$' ||
             text[j + 1] == '`' || text[j + 1] == '\n')) {
          if (text[j + 1] != '\n') {
            word += text[j + 1];
          }
          ++j;
          continue;
        }
        word += text[j];
      }
      if (j >= text.size()) {
        throw Error(where, "unterminated \" quote in the command; close it or use the list form");
      }
      i = j;
      continue;
    }
    word += c;
  }
  if (in_word) {
    out.push_back(std::move(word));
  }
  return out;
}

}  // namespace ck::compose::detail
