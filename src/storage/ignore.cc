#include "storage/ignore.h"

// Design: each pattern line is compiled once into a Glob, which is git's wildmatch read as a
// regular language: `?` and `[...]` are one byte other than '/', `*` is [^/]*, a `**` between
// slashes (or at an end) is .*, so `**/` is (.*/)? and `a/**/b` also matches a/b. git's
// backtracking with its ABORT shortcuts accepts exactly that language (the oracle tests compare
// against git itself). Here a literal prefix and suffix are compared first, and whatever is left
// in between is either one of a few common shapes (`*`, `**`, `**/`) or run through a
// bit-parallel NFA, which never backtracks and so has no slow inputs. The places where git's
// parsing is idiosyncratic are reproduced on purpose and marked "as git".

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

namespace ck {
namespace {

// ---------------------------------------------------------------------------------------------
// Glob: one compiled wildmatch pattern (always with WM_PATHNAME semantics, which is what git
// uses for patterns with a slash; for basename patterns the text has no '/', where both agree).

enum class TokKind : std::uint8_t { kLit, kAny, kClass, kStar, kStarStar };

struct Tok {
  TokKind kind = TokKind::kLit;
  bool zero_dir = false;  // kStarStar directly followed by a raw '/': "**/" may match nothing
  unsigned char ch = 0;   // kLit
  std::uint32_t cls = 0;  // kClass: index into the class table
};

using ByteSet = std::bitset<256>;

// The character classes of git's wildmatch, with git's own ctype (ASCII only, and isspace is
// only \t \n \r and space).
std::optional<ByteSet> named_class(std::string_view name) {
  ByteSet s;
  auto add_range = [&s](int lo, int hi) {
    for (int c = lo; c <= hi; ++c) {
      s.set(static_cast<std::size_t>(c));
    }
  };
  if (name == "alnum") {
    add_range('0', '9'), add_range('A', 'Z'), add_range('a', 'z');
  } else if (name == "alpha") {
    add_range('A', 'Z'), add_range('a', 'z');
  } else if (name == "blank") {
    s.set(' '), s.set('\t');
  } else if (name == "cntrl") {
    add_range(0, 0x1f), s.set(0x7f);
  } else if (name == "digit") {
    add_range('0', '9');
  } else if (name == "graph") {
    add_range(0x21, 0x7e);
  } else if (name == "lower") {
    add_range('a', 'z');
  } else if (name == "print") {
    add_range(0x20, 0x7e);
  } else if (name == "punct") {
    add_range(0x21, 0x2f), add_range(0x3a, 0x40), add_range(0x5b, 0x60), add_range(0x7b, 0x7e);
  } else if (name == "space") {
    s.set('\t'), s.set('\n'), s.set('\r'), s.set(' ');
  } else if (name == "upper") {
    add_range('A', 'Z');
  } else if (name == "xdigit") {
    add_range('0', '9'), add_range('A', 'F'), add_range('a', 'f');
  } else {
    return std::nullopt;
  }
  return s;
}

// Parses the bracket expression starting at w[i] == '[' exactly as git's dowild does (a ']'
// right after '[' or '[!' is a member, '^' negates like '!', `\x` escapes, `a-z` ranges,
// `[:alpha:]` classes, a `[:` without `:]` is a literal '['). Returns the bytes it matches
// ('/' never) and moves i past the closing ']', or nothing when git would abort the match.
std::optional<ByteSet> parse_bracket(std::string_view w, std::size_t& i) {
  auto at = [w](std::size_t k) -> unsigned char {
    return k < w.size() ? static_cast<unsigned char>(w[k]) : 0;
  };
  std::size_t p = i + 1;
  unsigned char p_ch = at(p);
  if (p_ch == '^') {
    p_ch = '!';
  }
  const bool negated = p_ch == '!';
  if (negated) {
    p_ch = at(++p);
  }
  ByteSet set;
  unsigned char prev_ch = 0;
  do {
    if (p_ch == 0) {
      return std::nullopt;
    }
    if (p_ch == '\\') {
      p_ch = at(++p);
      if (p_ch == 0) {
        return std::nullopt;
      }
      set.set(p_ch);
    } else if (p_ch == '-' && prev_ch != 0 && at(p + 1) != 0 && at(p + 1) != ']') {
      p_ch = at(++p);
      if (p_ch == '\\') {
        p_ch = at(++p);
        if (p_ch == 0) {
          return std::nullopt;
        }
      }
      for (int c = prev_ch; c <= p_ch; ++c) {
        set.set(static_cast<std::size_t>(c));
      }
      p_ch = 0;  // as git: a range end cannot start another range
    } else if (p_ch == '[' && at(p + 1) == ':') {
      const std::size_t s = p + 2;
      for (p = s; (p_ch = at(p)) != 0 && p_ch != ']'; ++p) {
      }
      if (p_ch == 0) {
        return std::nullopt;
      }
      if (p == s || at(p - 1) != ':') {
        // No ":]": the '[' is an ordinary member and scanning resumes after it.
        p = s - 2;
        p_ch = '[';
        set.set('[');
        continue;
      }
      auto named = named_class(w.substr(s, p - s - 1));
      if (!named) {
        return std::nullopt;  // as git: an unknown [:class:] makes the whole pattern fail
      }
      set |= *named;
      p_ch = 0;
    } else {
      set.set(p_ch);
    }
  } while (prev_ch = p_ch, (p_ch = at(++p)) != ']');
  i = p + 1;
  if (negated) {
    set.flip();
  }
  set.reset('/');
  set.reset(0);
  return set;
}

// Tokenizes the wildcard part `w` of a pattern. `**` counts as the recursive form only when it
// is preceded by '/' or by the start of `w` and followed by '/', `\/` or the end; otherwise it
// is a plain `*`. Returns false when git's wildmatch can never match (malformed bracket
// expression, trailing backslash).
bool tokenize(std::string_view w, std::vector<Tok>& out, std::vector<ByteSet>& classes) {
  std::size_t i = 0;
  while (i < w.size()) {
    const auto c = static_cast<unsigned char>(w[i]);
    Tok t;
    switch (c) {
      case '\\':
        if (i + 1 >= w.size()) {
          return false;
        }
        t.kind = TokKind::kLit;
        t.ch = static_cast<unsigned char>(w[i + 1]);
        i += 2;
        break;
      case '?':
        t.kind = TokKind::kAny;
        ++i;
        break;
      case '[': {
        auto set = parse_bracket(w, i);
        if (!set) {
          return false;
        }
        t.kind = TokKind::kClass;
        t.cls = static_cast<std::uint32_t>(classes.size());
        classes.push_back(*set);
        break;
      }
      case '*': {
        std::size_t j = i;
        while (j < w.size() && w[j] == '*') {
          ++j;
        }
        t.kind = TokKind::kStar;
        if (j - i >= 2) {
          const bool prev_ok = i == 0 || w[i - 1] == '/';
          const bool next_ok =
              j == w.size() || w[j] == '/' || (w[j] == '\\' && j + 1 < w.size() && w[j + 1] == '/');
          if (prev_ok && next_ok) {
            t.kind = TokKind::kStarStar;
            t.zero_dir = j < w.size() && w[j] == '/';
          }
        }
        i = j;
        break;
      }
      default:
        t.kind = TokKind::kLit;
        t.ch = c;
        ++i;
        break;
    }
    out.push_back(t);
  }
  return true;
}

// Bit-parallel NFA (Glushkov-style, one state per token plus the accepting one) for the part
// of a pattern between its literal prefix and suffix.
class Nfa {
 public:
  Nfa(const std::vector<Tok>& toks, const std::vector<ByteSet>& classes) {
    const std::size_t n = toks.size();
    states_ = n + 1;
    words_ = (states_ + 63) / 64;
    eps1_.assign(words_, 0);
    eps2_.assign(words_, 0);
    start_.assign(words_, 0);
    for (std::size_t i = 0; i < n; ++i) {
      if (toks[i].kind == TokKind::kStar || toks[i].kind == TokKind::kStarStar) {
        set_bit(eps1_, i);
      }
      if (toks[i].kind == TokKind::kStarStar && toks[i].zero_dir) {
        set_bit(eps2_, i);
      }
    }
    // Bytes that behave the same in every state share one column of the transition table.
    std::map<std::vector<std::uint64_t>, std::uint8_t> columns;
    std::vector<std::uint64_t> column(2 * words_);
    for (int b = 0; b < 256; ++b) {
      const auto c = static_cast<unsigned char>(b);
      std::fill(column.begin(), column.end(), 0);
      for (std::size_t i = 0; i < n; ++i) {
        const Tok& t = toks[i];
        bool adv = false;
        bool self = false;
        switch (t.kind) {
          case TokKind::kLit:
            adv = t.ch == c;
            break;
          case TokKind::kAny:
            adv = c != '/';
            break;
          case TokKind::kClass:
            adv = classes[t.cls].test(c);
            break;
          case TokKind::kStar:
            self = c != '/';
            break;
          case TokKind::kStarStar:
            self = true;
            break;
        }
        if (adv) {
          column[i / 64] |= std::uint64_t{1} << (i % 64);
        }
        if (self) {
          column[words_ + i / 64] |= std::uint64_t{1} << (i % 64);
        }
      }
      auto [it, inserted] = columns.emplace(column, static_cast<std::uint8_t>(columns.size()));
      if (inserted) {
        adv_.insert(adv_.end(), column.begin(), column.begin() + static_cast<long>(words_));
        self_.insert(self_.end(), column.begin() + static_cast<long>(words_), column.end());
      }
      byte_class_[c] = it->second;
    }
    set_bit(start_, 0);
    close(start_.data());
  }

  bool match(std::string_view text) const {
    if (words_ == 1) {
      std::uint64_t cur = start_[0];
      for (char ch : text) {
        const std::size_t k = byte_class_[static_cast<unsigned char>(ch)];
        const std::uint64_t loop = cur & self_[k];
        cur = loop | close1(((cur & adv_[k]) | (loop & eps1_[0])) << 1);
        if (cur == 0) {
          return false;
        }
      }
      return (cur >> (states_ - 1)) & 1;
    }
    std::vector<std::uint64_t> cur = start_;
    std::vector<std::uint64_t> next(words_);
    for (char ch : text) {
      const std::size_t k = byte_class_[static_cast<unsigned char>(ch)];
      const std::uint64_t* adv = &adv_[k * words_];
      const std::uint64_t* self = &self_[k * words_];
      std::uint64_t carry = 0;
      bool any = false;
      for (std::size_t w = 0; w < words_; ++w) {
        const std::uint64_t moved = (cur[w] & adv[w]) | (cur[w] & self[w] & eps1_[w]);
        next[w] = (moved << 1) | carry;
        carry = moved >> 63;
      }
      close(next.data());
      for (std::size_t w = 0; w < words_; ++w) {
        next[w] |= cur[w] & self[w];
        any = any || next[w] != 0;
      }
      if (!any) {
        return false;
      }
      cur.swap(next);
    }
    const std::size_t last = states_ - 1;
    return (cur[last / 64] >> (last % 64)) & 1;
  }

 private:
  static void set_bit(std::vector<std::uint64_t>& v, std::size_t i) {
    v[i / 64] |= std::uint64_t{1} << (i % 64);
  }
  // Epsilon closure of the states just entered: a star may match nothing (i -> i+1), and "**/"
  // may match nothing (i -> i+2). The latter only on entry: once `**` has consumed something it
  // must be followed by its '/' (git tries the empty match first, then never again). A star that
  // consumed the byte (a self-loop) may stop there, so its i+1 counts as entered too.
  std::uint64_t close1(std::uint64_t x) const {
    for (;;) {
      std::uint64_t y = x | ((x & eps1_[0]) << 1);
      y |= (y & eps2_[0]) << 2;
      if (y == x) {
        return x;
      }
      x = y;
    }
  }
  void close(std::uint64_t* x) const {
    // As close1. Epsilon edges only go forward, so one pass from low to high reaches the fixpoint.
    for (std::size_t i = 0; i + 1 < states_; ++i) {
      if (!((x[i / 64] >> (i % 64)) & 1)) {
        continue;
      }
      if ((eps1_[i / 64] >> (i % 64)) & 1) {
        x[(i + 1) / 64] |= std::uint64_t{1} << ((i + 1) % 64);
      }
      if ((eps2_[i / 64] >> (i % 64)) & 1) {
        x[(i + 2) / 64] |= std::uint64_t{1} << ((i + 2) % 64);
      }
    }
  }

  std::size_t states_ = 0;
  std::size_t words_ = 0;
  std::array<std::uint8_t, 256> byte_class_{};
  std::vector<std::uint64_t> adv_, self_;  // [column * words_ + word]
  std::vector<std::uint64_t> eps1_, eps2_, start_;
};

class Glob {
 public:
  // `literal` leading bytes of `pattern` have no wildcard (git's "nowildcardlen" prefix, after
  // which the `**` rule treats the rest as a pattern start, as git does).
  static Glob compile(std::string_view pattern, std::size_t literal) {
    Glob g;
    std::vector<Tok> toks;
    std::vector<ByteSet> classes;
    for (std::size_t i = 0; i < literal; ++i) {
      toks.push_back(Tok{TokKind::kLit, false, static_cast<unsigned char>(pattern[i]), 0});
    }
    if (!tokenize(pattern.substr(literal), toks, classes)) {
      g.mid_ = Mid::kNever;
      return g;
    }
    std::size_t lo = 0;
    while (lo < toks.size() && toks[lo].kind == TokKind::kLit) {
      g.prefix_.push_back(static_cast<char>(toks[lo].ch));
      ++lo;
    }
    std::size_t hi = toks.size();
    while (hi > lo && toks[hi - 1].kind == TokKind::kLit &&
           !(hi >= 2 && toks[hi - 2].kind == TokKind::kStarStar && toks[hi - 2].zero_dir)) {
      --hi;
    }
    for (std::size_t i = hi; i < toks.size(); ++i) {
      g.suffix_.push_back(static_cast<char>(toks[i].ch));
    }
    std::vector<Tok> mid(toks.begin() + static_cast<long>(lo),
                         toks.begin() + static_cast<long>(hi));
    if (mid.empty()) {
      g.mid_ = Mid::kEmpty;
    } else if (mid.size() == 1 && mid[0].kind == TokKind::kStar) {
      g.mid_ = Mid::kStar;
    } else if (mid.size() == 1 && mid[0].kind == TokKind::kStarStar) {
      g.mid_ = Mid::kStarStar;
    } else if (mid.size() == 2 && mid[0].kind == TokKind::kStarStar && mid[0].zero_dir &&
               mid[1].kind == TokKind::kLit && mid[1].ch == '/') {
      g.mid_ = Mid::kDirsOpt;
    } else {
      g.mid_ = Mid::kNfa;
      g.nfa_ = std::make_shared<const Nfa>(mid, classes);
    }
    return g;
  }

  bool match(std::string_view text) const {
    if (mid_ == Mid::kNever || text.size() < prefix_.size() + suffix_.size()) {
      return false;
    }
    if (text.compare(0, prefix_.size(), prefix_) != 0 ||
        text.compare(text.size() - suffix_.size(), suffix_.size(), suffix_) != 0) {
      return false;
    }
    const std::string_view m =
        text.substr(prefix_.size(), text.size() - prefix_.size() - suffix_.size());
    switch (mid_) {
      case Mid::kNever:
        return false;
      case Mid::kEmpty:
        return m.empty();
      case Mid::kStar:
        return m.find('/') == std::string_view::npos;
      case Mid::kStarStar:
        return true;
      case Mid::kDirsOpt:
        return m.empty() || m.back() == '/';
      case Mid::kNfa:
        return nfa_->match(m);
    }
    return false;
  }

 private:
  enum class Mid : std::uint8_t { kNever, kEmpty, kStar, kStarStar, kDirsOpt, kNfa };
  Mid mid_ = Mid::kNever;
  std::string prefix_;
  std::string suffix_;
  std::shared_ptr<const Nfa> nfa_;  // only for kNfa; immutable, so copies may share it
};

// ---------------------------------------------------------------------------------------------
// Rules

constexpr std::uint32_t kBuiltinSource = UINT32_MAX;
constexpr std::string_view kExtraSource = "extra_patterns";

struct Rule {
  Glob glob;
  bool negative = false;
  bool dir_only = false;
  bool basename = false;  // no '/' in the pattern: matched against the last path component
  std::uint32_t source = 0;
  std::uint32_t line = 0;
  std::string text;  // the line as written, minus trailing spaces
};

// git's trim_trailing_spaces: drops unescaped trailing spaces (not tabs).
std::string_view trim_trailing_spaces(std::string_view s) {
  std::size_t last_space = std::string_view::npos;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ' ') {
      if (last_space == std::string_view::npos) {
        last_space = i;
      }
    } else if (s[i] == '\\') {
      if (++i >= s.size()) {
        return s;
      }
      last_space = std::string_view::npos;
    } else {
      last_space = std::string_view::npos;
    }
  }
  return last_space == std::string_view::npos ? s : s.substr(0, last_space);
}

std::size_t simple_length(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] != '*' && s[i] != '?' && s[i] != '[' && s[i] != '\\') {
    ++i;
  }
  return i;
}

std::optional<Rule> compile_line(std::string_view line, std::uint32_t source, std::uint32_t no) {
  Rule r;
  r.source = source;
  r.line = no;
  r.text = std::string(line);
  std::string_view p = line;
  if (!p.empty() && p[0] == '!') {
    r.negative = true;
    p.remove_prefix(1);
  }
  if (!p.empty() && p.back() == '/') {
    r.dir_only = true;
    p.remove_suffix(1);
  }
  if (p.empty()) {
    return std::nullopt;  // "", "!", "/": git keeps them but they never match
  }
  r.basename = p.find('/') == std::string_view::npos;
  if (r.basename) {
    r.glob = Glob::compile(p, 0);
  } else {
    if (p[0] == '/') {
      p.remove_prefix(1);  // anchored either way; only one slash is dropped, as git
    }
    r.glob = Glob::compile(p, simple_length(p));
  }
  return r;
}

// git's add_patterns_from_buffer: BOM skipped, CRLF accepted, `#` comments, blank lines.
void compile_text(std::string_view text, std::uint32_t source, std::vector<Rule>& out) {
  if (text.starts_with("\xEF\xBB\xBF")) {
    text.remove_prefix(3);
  }
  std::uint32_t no = 1;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    const std::size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line[0] != '#') {
      if (line.back() == '\r') {
        line.remove_suffix(1);
      }
      line = line.substr(0, line.find('\0'));  // git reads each line as a C string
      if (auto r = compile_line(trim_trailing_spaces(line), source, no)) {
        out.push_back(std::move(*r));
      }
    }
    if (nl == std::string_view::npos) {
      break;
    }
    ++no;
    pos = nl + 1;
  }
}

const Rule* last_match(const std::vector<Rule>& rules, std::string_view text, std::string_view base,
                       bool is_dir) {
  for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
    if (it->dir_only && !is_dir) {
      continue;
    }
    if (it->glob.match(it->basename ? base : text)) {
      return &*it;
    }
  }
  return nullptr;
}

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

enum class Decider : std::uint8_t { kNone, kRule, kHardGit, kHardEnv, kLockfile };

struct Decision {
  Decider by = Decider::kNone;
  const Rule* rule = nullptr;
  bool ignored = false;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct IgnoreRules::Impl {
  IgnoreOptions opts;
  std::vector<std::string> sources;
  std::vector<Rule> builtin;
  std::vector<Rule> extra;
  using DirRules = std::unordered_map<std::string, std::vector<Rule>, StringHash, std::equal_to<>>;
  DirRules by_dir;
  // With few ignore files, scanning them (deepest first) beats hashing every parent of a path.
  static constexpr std::size_t kScanLimit = 16;
  std::vector<const DirRules::value_type*> scan;

  const Rule* match_dir(const DirRules::value_type& e, std::string_view rel, std::string_view base,
                        bool is_dir) const {
    const std::string_view text = e.first.empty() ? rel : rel.substr(e.first.size() + 1);
    return last_match(e.second, text, base, is_dir);
  }

  Decision decide(std::string_view rel, bool is_dir) const {
    const std::size_t slash = rel.rfind('/');
    const std::string_view base = slash == std::string_view::npos ? rel : rel.substr(slash + 1);
    if (is_dir && base == ".git") {
      return {Decider::kHardGit, nullptr, true};
    }
    if (!opts.allow_env && base.starts_with(".env")) {
      return {Decider::kHardEnv, nullptr, true};
    }
    if (opts.include_lock && !is_dir &&
        std::find(kLockfiles.begin(), kLockfiles.end(), base) != kLockfiles.end()) {
      return {Decider::kLockfile, nullptr, false};
    }
    if (const Rule* r = last_match(extra, rel, base, is_dir)) {
      return {Decider::kRule, r, !r->negative};
    }
    if (by_dir.size() <= kScanLimit) {
      for (const DirRules::value_type* e : scan) {  // longest first, so deepest first
        const std::string& dir = e->first;
        if (!dir.empty() &&
            !(rel.size() > dir.size() && rel[dir.size()] == '/' && rel.starts_with(dir))) {
          continue;
        }
        if (const Rule* r = match_dir(*e, rel, base, is_dir)) {
          return {Decider::kRule, r, !r->negative};
        }
      }
    } else {
      // The folders holding `rel`, deepest first: "a/b" for "a/b/c", then "a", then "".
      std::size_t end = slash;
      for (;;) {
        const std::string_view dir =
            end == std::string_view::npos ? std::string_view() : rel.substr(0, end);
        if (auto it = by_dir.find(dir); it != by_dir.end()) {
          if (const Rule* r = match_dir(*it, rel, base, is_dir)) {
            return {Decider::kRule, r, !r->negative};
          }
        }
        if (end == std::string_view::npos) {
          break;
        }
        end = end == 0 ? std::string_view::npos : rel.rfind('/', end - 1);
      }
    }
    if (const Rule* r = last_match(builtin, rel, base, is_dir)) {
      return {Decider::kRule, r, !r->negative};
    }
    return {};
  }

  // Parents first: the outermost excluded folder decides for everything below it.
  Decision decide_with_parents(std::string_view rel, bool is_dir) const {
    while (!rel.empty() && rel.back() == '/') {
      rel.remove_suffix(1);
      is_dir = true;
    }
    if (rel.empty()) {
      return {};
    }
    for (std::size_t i = rel.find('/'); i != std::string_view::npos; i = rel.find('/', i + 1)) {
      Decision d = decide(rel.substr(0, i), true);
      if (d.ignored) {
        return d;
      }
    }
    return decide(rel, is_dir);
  }

  std::string describe(const Decision& d) const {
    switch (d.by) {
      case Decider::kNone:
        return "";
      case Decider::kHardGit:
        return "built-in: .git/ (always excluded)";
      case Decider::kHardEnv:
        return "built-in: .env* (always excluded)";
      case Decider::kLockfile:
        return "built-in: lockfile (include_lock)";
      case Decider::kRule:
        break;
    }
    if (d.rule->source == kBuiltinSource) {
      return "built-in: " + d.rule->text;
    }
    return fmt::format("{}:{}: {}", sources[d.rule->source], d.rule->line, d.rule->text);
  }
};

IgnoreRules::IgnoreRules(IgnoreOptions opts) : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(opts);
  if (impl_->opts.builtins) {
    std::uint32_t no = 1;
    for (std::string_view p : kBuiltinPatterns) {
      if (auto r = compile_line(p, kBuiltinSource, no++)) {
        impl_->builtin.push_back(std::move(*r));
      }
    }
  }
  if (!impl_->opts.extra_patterns.empty()) {
    const auto source = static_cast<std::uint32_t>(impl_->sources.size());
    impl_->sources.emplace_back(kExtraSource);
    std::string text;
    for (const std::string& p : impl_->opts.extra_patterns) {
      text += p;
      text += '\n';
    }
    compile_text(text, source, impl_->extra);
  }
}

IgnoreRules::~IgnoreRules() = default;
IgnoreRules::IgnoreRules(IgnoreRules&&) noexcept = default;
IgnoreRules& IgnoreRules::operator=(IgnoreRules&&) noexcept = default;

void IgnoreRules::add_file(const std::string& dir, std::string_view text, std::string source_name) {
  std::string_view d = dir;
  while (!d.empty() && d.front() == '/') {
    d.remove_prefix(1);
  }
  while (!d.empty() && d.back() == '/') {
    d.remove_suffix(1);
  }
  if (d == ".") {
    d = {};
  }
  const auto source = static_cast<std::uint32_t>(impl_->sources.size());
  impl_->sources.push_back(std::move(source_name));
  std::vector<Rule> rules;
  compile_text(text, source, rules);
  if (rules.empty()) {
    return;
  }
  auto& list = impl_->by_dir[std::string(d)];
  std::move(rules.begin(), rules.end(), std::back_inserter(list));
  auto& scan = impl_->scan;
  scan.clear();
  if (impl_->by_dir.size() <= Impl::kScanLimit) {
    for (const auto& e : impl_->by_dir) {
      scan.push_back(&e);
    }
    std::sort(scan.begin(), scan.end(),
              [](const auto* a, const auto* b) { return a->first.size() > b->first.size(); });
  }
}

bool IgnoreRules::ignored(std::string_view rel_path, bool is_dir) const {
  return impl_->decide_with_parents(rel_path, is_dir).ignored;
}

bool IgnoreRules::ignored_entry(std::string_view rel_path, bool is_dir) const {
  return impl_->decide(rel_path, is_dir).ignored;
}

std::string IgnoreRules::why(std::string_view rel_path, bool is_dir) const {
  return impl_->describe(impl_->decide_with_parents(rel_path, is_dir));
}

// ---------------------------------------------------------------------------------------------
// Walker

namespace {

Errc errno_errc(int e) {
  switch (e) {
    case ENOENT:
      return Errc::not_found;
    case EACCES:
    case EPERM:
      return Errc::forbidden;
    case ENOTDIR:
      return Errc::invalid_argument;
    default:
      return Errc::io;
  }
}

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// The names in a folder, or the errno that stopped reading it.
int read_names(const std::string& path, std::vector<std::string>& names) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    return errno;
  }
  int err = 0;
  for (;;) {
    errno = 0;
    const dirent* e = ::readdir(d);
    if (e == nullptr) {
      err = errno;
      break;
    }
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") {
      names.emplace_back(name);
    }
  }
  ::closedir(d);
  return err;
}

// Reads an ignore file. Returns nothing when there is none to read (missing, a symlink, not a
// regular file), the text when it was read, or sets `err` when it exists but cannot be read.
std::optional<std::string> read_ignore_file(const std::string& path, int& err) {
  err = 0;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR) {
      err = errno;
    }
    return std::nullopt;
  }
  struct stat st {};
  std::optional<std::string> out;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    std::string text;
    char buf[16384];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0) {
        err = errno;
        break;
      }
      if (n == 0) {
        out = std::move(text);
        break;
      }
      text.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

std::string join(std::string_view a, std::string_view b) {
  std::string out;
  out.reserve(a.size() + 1 + b.size());
  out.append(a).append(1, '/').append(b);
  return out;
}

struct PendingLink {
  std::string rel;
  std::string path;
};

}  // namespace

Result<SourceTree> list_source_files(const std::filesystem::path& root, const IgnoreOptions& opts) {
  const std::string root_s = root.string();
  struct stat st {};
  if (::stat(root_s.c_str(), &st) != 0) {
    const int e = errno;
    return fail(errno_errc(e),
                fmt::format("cannot read source folder {}: {}", root_s, std::strerror(e)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return fail(Errc::invalid_argument, fmt::format("source folder {} is not a folder", root_s));
  }
  std::string real_root = root_s;
  if (char* real = ::realpath(root_s.c_str(), nullptr)) {
    real_root = real;
    std::free(real);
  }
  const std::string inside = real_root == "/" ? "/" : real_root + "/";

  IgnoreRules rules(opts);
  SourceTree out;
  std::vector<PendingLink> links;
  std::vector<std::string> stack{""};
  std::vector<std::string> names;
  while (!stack.empty()) {
    const std::string dir = std::move(stack.back());
    stack.pop_back();
    const std::string abs = dir.empty() ? root_s : join(root_s, dir);
    names.clear();
    if (const int e = read_names(abs, names); e != 0) {
      if (dir.empty()) {
        return fail(errno_errc(e),
                    fmt::format("cannot read source folder {}: {}", root_s, std::strerror(e)));
      }
      out.skipped.push_back(dir);
      continue;
    }
    // Both ignore files are read before either is added, so a folder whose rules are only
    // half known is skipped as a whole.
    std::optional<std::string> texts[2];
    static constexpr const char* kIgnoreFiles[2] = {".gitignore", ".ckignore"};
    bool readable = true;
    for (int k = 0; k < 2; ++k) {
      const std::string path = abs + "/" + kIgnoreFiles[k];
      int e = 0;
      texts[k] = read_ignore_file(path, e);
      if (e != 0) {
        if (dir.empty()) {
          return fail(errno_errc(e), fmt::format("cannot read {}: {}", path, std::strerror(e)));
        }
        readable = false;
        break;
      }
    }
    if (!readable) {
      out.skipped.push_back(dir);
      continue;
    }
    for (int k = 0; k < 2; ++k) {
      if (texts[k]) {
        rules.add_file(dir, *texts[k], dir.empty() ? kIgnoreFiles[k] : dir + "/" + kIgnoreFiles[k]);
      }
    }
    bool listed_all = true;
    for (const std::string& name : names) {
      std::string rel = dir.empty() ? name : join(dir, name);
      std::string path = join(abs, name);
      struct stat est {};
      if (::lstat(path.c_str(), &est) != 0) {
        if (errno != ENOENT) {
          listed_all = false;  // vanished entries are normal, unreadable ones are not
        }
        continue;
      }
      if (S_ISDIR(est.st_mode)) {
        if (!rules.ignored_entry(rel, true)) {
          stack.push_back(std::move(rel));
        }
      } else if (S_ISREG(est.st_mode)) {
        if (!rules.ignored_entry(rel, false)) {
          out.files.push_back(
              SourceFile{std::move(rel), static_cast<std::uint64_t>(est.st_size), mtime_ns(est),
                         static_cast<std::uint32_t>(est.st_mode & 07777)});
        }
      } else if (S_ISLNK(est.st_mode)) {
        if (!rules.ignored_entry(rel, false)) {
          links.push_back(PendingLink{std::move(rel), std::move(path)});
        }
      }
    }
    if (!listed_all) {
      out.skipped.push_back(dir);
    }
  }

  // Symlinked files, once every readable folder's rules are known: the target must be a regular
  // file inside root, not excluded and not in a folder that could not be read.
  for (const PendingLink& link : links) {
    char* real = ::realpath(link.path.c_str(), nullptr);
    if (real == nullptr) {
      continue;  // dangling, a loop, or unreadable
    }
    const std::string target = real;
    std::free(real);
    struct stat tst {};
    if (!target.starts_with(inside) || ::stat(target.c_str(), &tst) != 0 || !S_ISREG(tst.st_mode)) {
      continue;
    }
    const std::string_view trel = std::string_view(target).substr(inside.size());
    if (rules.ignored(trel, false)) {
      continue;
    }
    const bool in_skipped =
        std::any_of(out.skipped.begin(), out.skipped.end(), [trel](const std::string& s) {
          return s.empty() ||
                 (trel.starts_with(s) && trel.size() > s.size() && trel[s.size()] == '/');
        });
    if (in_skipped) {
      continue;
    }
    out.files.push_back(
        SourceFile{link.rel, static_cast<std::uint64_t>(tst.st_size), mtime_ns(tst),
                   static_cast<std::uint32_t>(tst.st_mode & 07777)});
  }

  std::sort(out.files.begin(), out.files.end(),
            [](const SourceFile& a, const SourceFile& b) { return a.path < b.path; });
  std::sort(out.skipped.begin(), out.skipped.end());
  return out;
}

}  // namespace ck
