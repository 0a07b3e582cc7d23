#pragma once
// The parser's own copy of a YAML document (internal to ck_compose): yaml-cpp's node graph
// copied into plain values with every alias expanded and `<<` merge keys applied, under a
// node, byte and depth budget, so a billion-laughs file or a deep nesting is refused before
// any walk over it can blow up. Keys are scalars; every node keeps its 1-based line.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compose/model.h"

namespace ck::compose::detail {

struct Entry;

struct Node {
  enum class Kind { null, scalar, sequence, mapping };
  Kind kind = Kind::null;
  std::string scalar;          // Kind::scalar
  std::vector<Node> items;     // Kind::sequence
  std::vector<Entry> entries;  // Kind::mapping, in file order
  std::vector<int> key_lines;  // line of each entry's key
  int line = 0;

  const Node* find(std::string_view key) const;
};

/// A mapping's key and value (a pair would need Node complete, which libc++/clang insist on).
struct Entry {
  std::string first;
  Node second;
};

struct TreeLimits {
  std::size_t max_nodes = 200000;  // after alias expansion
  std::size_t max_scalar_bytes = 16u << 20;
  int max_depth = 64;
  std::size_t max_items = 10000;  // per list or mapping
};

/// Parses `text` (one YAML document) into a Node tree. Throws Error on a syntax error or a
/// budget overrun, naming `file` and the line.
Node parse_tree(std::string_view text, const std::string& file, const TreeLimits& limits = {});

/// KEY=VALUE lines (.env and env_file): comments, blank lines, `export `, single and double
/// quotes. Throws Error naming `file` and the line of a malformed entry.
std::vector<std::pair<std::string, std::string>> parse_env_text(std::string_view text,
                                                                const std::string& file);

/// `command: "sh -c 'a b'"` as a POSIX shell would split it (quotes, backslashes; no
/// expansion). Throws Error at `where` on an unterminated quote.
std::vector<std::string> split_shell(std::string_view text, const Location& where);

}  // namespace ck::compose::detail
