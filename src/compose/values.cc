// The small value syntaxes of a compose file, each from a string: whole numbers, port specs
// ("127.0.0.1:8080:80/udp", ranges), Go durations ("1m30s"), sizes ("512m"), CPU counts.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>

#include "compose/internal.h"

namespace ck::compose::detail {

namespace {
constexpr int kMaxPortRange = 1000;
}  // namespace

bool to_int(std::string_view s, long min, long max, long& out) {
  if (s.empty() || s.size() > 18) {
    return false;
  }
  bool neg = s[0] == '-';
  std::string_view digits = neg || s[0] == '+' ? s.substr(1) : s;
  if (digits.empty()) {
    return false;
  }
  long v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') {
      return false;
    }
    v = v * 10 + (c - '0');
  }
  out = neg ? -v : v;
  return out >= min && out <= max;
}

bool port_range(std::string_view s, long& lo, long& hi) {
  std::size_t dash = s.find('-');
  if (dash == std::string_view::npos) {
    if (!to_int(s, 1, 65535, lo)) {
      return false;
    }
    hi = lo;
    return true;
  }
  return to_int(s.substr(0, dash), 1, 65535, lo) && to_int(s.substr(dash + 1), 1, 65535, hi) &&
         lo <= hi && hi - lo < kMaxPortRange;
}

bool known_protocol(const std::string& p) { return p == "tcp" || p == "udp" || p == "sctp"; }

std::vector<std::string> split_colons(const std::string& spec) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) return parts;
    start = colon + 1;
  }
}

void parse_port_spec(std::string spec, const Location& where, std::vector<Port>& out) {
  static const char* kExpected =
      "expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], ports 1-65535, ranges as "
      "3000-3001";
  std::string protocol = "tcp";
  if (std::size_t slash = spec.rfind('/'); slash != std::string::npos) {
    protocol = spec.substr(slash + 1);
    spec.resize(slash);
    if (!known_protocol(protocol)) {
      throw Error(where, "unknown protocol '" + protocol + "'; expected tcp, udp or sctp");
    }
  }
  std::string host_ip;
  if (!spec.empty() && spec[0] == '[') {  // [::1]:8080:80
    std::size_t close = spec.find(']');
    if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':') {
      throw Error(where, kExpected);
    }
    host_ip = spec.substr(1, close - 1);
    spec = spec.substr(close + 2);
  }
  std::vector<std::string> parts = split_colons(spec);
  std::string host;
  std::string container;
  if (parts.size() == 1) {
    container = parts[0];
  } else if (parts.size() == 2) {
    host = parts[0];
    container = parts[1];
  } else if (parts.size() == 3 && host_ip.empty()) {
    host_ip = parts[0];
    host = parts[1];
    container = parts[2];
  } else {
    throw Error(where, kExpected);
  }
  if (!host_ip.empty() &&
      host_ip.find_first_not_of("0123456789abcdefABCDEF.:") != std::string::npos) {
    throw Error(where, "'" + host_ip + "' is not an IP address");
  }
  long clo = 0;
  long chi = 0;
  long hlo = 0;
  long hhi = 0;
  if (!port_range(container, clo, chi) || (!host.empty() && !port_range(host, hlo, hhi))) {
    throw Error(where, kExpected);
  }
  if (!host.empty() && hhi - hlo != chi - clo && chi != clo) {
    throw Error(where, "the host and container port ranges differ in size");
  }
  if (out.size() + static_cast<std::size_t>(chi - clo) >= kMaxPorts) {
    throw Error(where, "a service publishes at most 10000 ports");
  }
  for (long p = clo; p <= chi; ++p) {
    Port port;
    port.host_ip = host_ip;
    port.container_port = static_cast<int>(p);
    port.host_port = host.empty() ? 0 : static_cast<int>(hlo + (p - clo));
    port.protocol = protocol;
    out.push_back(port);
  }
}

std::chrono::milliseconds parse_duration(const std::string& s, const Location& where) {
  static const char* kExpected = "expected a duration such as 1m30s, 10s or 500ms";
  if (s == "0") {
    return std::chrono::milliseconds(0);
  }
  double total_ms = 0;
  std::size_t i = 0;
  if (s.empty()) {
    throw Error(where, kExpected);
  }
  while (i < s.size()) {
    std::size_t j = i;
    while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) != 0 || s[j] == '.')) {
      ++j;
    }
    if (j == i || j - i > 15) {
      throw Error(where, kExpected);
    }
    double value = 0;
    std::size_t used = 0;
    try {
      value = std::stod(s.substr(i, j - i), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != j - i) {
      throw Error(where, kExpected);
    }
    std::size_t k = j;
    while (k < s.size() && !(std::isdigit(static_cast<unsigned char>(s[k])) != 0 || s[k] == '.')) {
      ++k;
    }
    std::string unit = s.substr(j, k - j);
    double scale = 0;
    if (unit == "h") {
      scale = 3600e3;
    } else if (unit == "m") {
      scale = 60e3;
    } else if (unit == "s") {
      scale = 1e3;
    } else if (unit == "ms") {
      scale = 1;
    } else if (unit == "us" || unit == "\xc2\xb5s") {
      scale = 1e-3;
    } else if (unit == "ns") {
      scale = 1e-6;
    } else {
      throw Error(where, kExpected);
    }
    total_ms += value * scale;
    i = k;
  }
  if (!(total_ms < 1e12)) {
    throw Error(where, "the duration is too long");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(total_ms));
}

std::uint64_t parse_memory(const std::string& s, const Location& where) {
  static const char* kExpected = "expected a size such as 512m, 1g or a number of bytes";
  std::size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) != 0 || s[i] == '.')) {
    ++i;
  }
  if (i == 0 || i > 20) {
    throw Error(where, kExpected);
  }
  double value = 0;
  std::size_t used = 0;
  try {
    value = std::stod(s.substr(0, i), &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != i) {
    throw Error(where, kExpected);
  }
  std::string unit = s.substr(i);
  if (!unit.empty() && unit[0] == ' ') {
    unit.erase(0, 1);
  }
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  double scale = 0;
  if (unit.empty() || unit == "b") {
    scale = 1;
  } else {
    static const std::string kUnits = "kmgtp";
    std::size_t pos = kUnits.find(unit[0]);
    std::string rest = unit.substr(1);
    if (pos == std::string::npos || !(rest.empty() || rest == "b" || rest == "ib" || rest == "i")) {
      throw Error(where, kExpected);
    }
    scale = std::pow(1024.0, static_cast<double>(pos + 1));
  }
  double bytes = value * scale;
  if (!(bytes < 9.0e18)) {
    throw Error(where, "the size is too large");
  }
  return static_cast<std::uint64_t>(bytes);
}

double parse_cpus(const std::string& s, const Location& where) {
  double v = -1;
  std::size_t used = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !(v >= 0 && v <= 4096)) {
    throw Error(where, "expected a number of CPUs such as 0.5 or 2");
  }
  return v;
}

}  // namespace ck::compose::detail
