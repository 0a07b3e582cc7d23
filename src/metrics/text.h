#pragma once
// The Prometheus text exposition format, version 0.0.4: a writer for families (HELP and TYPE
// lines) and their samples, with the format's escaping and number spelling. Pure: no I/O, no
// threads; one writer builds one scrape's body.

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace ck::metrics {

/// What a scrape answers with as Content-Type.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

enum class Type { counter, gauge, histogram };
std::string_view type_name(Type t);

/// name="value"; the value is escaped by the writer.
using Label = std::pair<std::string_view, std::string_view>;

/// [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_metric_name(std::string_view name);
/// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved).
bool valid_label_name(std::string_view name);

/// A label value as written between quotes: \ -> \\, " -> \", newline -> \n.
std::string escape_label_value(std::string_view v);
/// HELP text: \ -> \\, newline -> \n.
std::string escape_help(std::string_view v);
/// Shortest text that reads back as the same double; "+Inf", "-Inf", "NaN".
std::string format_value(double v);

/// Builds one exposition. Each family is declared once (family()), then its samples follow.
/// Names and label names come from code, so an invalid or repeated one is a bug (asserted).
class TextWriter {
 public:
  /// "# HELP name help" and "# TYPE name type".
  void family(std::string_view name, std::string_view help, Type type);
  /// "name{labels} value". `name` is the family's name, plus _bucket/_sum/_count for a
  /// histogram.
  void sample(std::string_view name, std::span<const Label> labels, double value);
  void sample(std::string_view name, std::span<const Label> labels, std::uint64_t value);
  void sample(std::string_view name, std::span<const Label> labels, std::int64_t value);
  /// A histogram's series for one label set: cumulative _bucket{le} counts (the last one is
  /// le="+Inf" and equals _count), _sum and _count. `cumulative` has bounds.size() + 1 entries.
  void histogram(std::string_view name, std::span<const Label> labels,
                 std::span<const double> bounds, std::span<const std::uint64_t> cumulative,
                 double sum);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void head(std::string_view name, std::span<const Label> labels, std::string_view extra_name = {},
            std::string_view extra_value = {});
  std::string out_;
  std::set<std::string, std::less<>> families_;
};

}  // namespace ck::metrics
