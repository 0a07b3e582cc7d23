#include "metrics/text.h"

#include <fmt/format.h>

#include <cassert>
#include <cmath>

namespace ck::metrics {

std::string_view type_name(Type t) {
  switch (t) {
    case Type::counter:
      return "counter";
    case Type::gauge:
      return "gauge";
    case Type::histogram:
      return "histogram";
  }
  return "untyped";
}

namespace {

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

}  // namespace

bool valid_metric_name(std::string_view name) {
  if (name.empty() || !(name_start(name[0]) || name[0] == ':')) return false;
  for (char c : name) {
    if (!name_char(c) && c != ':') return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || !name_start(name[0]) || name.starts_with("__")) return false;
  for (char c : name) {
    if (!name_char(c)) return false;
  }
  return true;
}

namespace {

// Backslash and newline are escaped everywhere; a double quote only inside label values.
std::string escape(std::string_view v, bool quote) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string escape_label_value(std::string_view v) { return escape(v, true); }

std::string escape_help(std::string_view v) { return escape(v, false); }

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void TextWriter::family(std::string_view name, std::string_view help, Type type) {
  assert(valid_metric_name(name));
  [[maybe_unused]] bool added = families_.emplace(name).second;
  assert(added && "a metric family is declared twice in one exposition");
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escape_help(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type_name(type);
  out_ += '\n';
}

void TextWriter::head(std::string_view name, std::span<const Label> labels,
                      std::string_view extra_name, std::string_view extra_value) {
  assert(valid_metric_name(name));
  out_ += name;
  if (!labels.empty() || !extra_name.empty()) {
    out_ += '{';
    bool first = true;
    auto put = [&](std::string_view k, std::string_view v) {
      assert(valid_label_name(k));
      if (!first) out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      out_ += escape_label_value(v);
      out_ += '"';
    };
    for (const auto& [k, v] : labels) put(k, v);
    if (!extra_name.empty()) put(extra_name, extra_value);
    out_ += '}';
  }
  out_ += ' ';
}

void TextWriter::sample(std::string_view name, std::span<const Label> labels, double value) {
  head(name, labels);
  out_ += format_value(value);
  out_ += '\n';
}

void TextWriter::sample(std::string_view name, std::span<const Label> labels, std::uint64_t value) {
  head(name, labels);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void TextWriter::sample(std::string_view name, std::span<const Label> labels, std::int64_t value) {
  head(name, labels);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void TextWriter::histogram(std::string_view name, std::span<const Label> labels,
                           std::span<const double> bounds,
                           std::span<const std::uint64_t> cumulative, double sum) {
  assert(cumulative.size() == bounds.size() + 1);
  std::string series(name);
  series += "_bucket";
  for (std::size_t i = 0; i < cumulative.size(); ++i) {
    head(series, labels, "le", i < bounds.size() ? format_value(bounds[i]) : "+Inf");
    fmt::format_to(std::back_inserter(out_), "{}\n", cumulative[i]);
  }
  series.assign(name).append("_sum");
  sample(series, labels, sum);
  series.assign(name).append("_count");
  sample(series, labels, cumulative.empty() ? std::uint64_t{0} : cumulative.back());
}

}  // namespace ck::metrics
