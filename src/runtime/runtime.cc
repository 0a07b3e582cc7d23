#include "runtime/runtime.h"

#include <csignal>
#include <cstring>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <unistd.h>
#include <fstream>
#include <vector>

namespace ck {

std::string ExitInfo::describe() const {
  if (oom) return "killed: out of memory (raise resources.memory in workspace.json or limits.memory)";
  if (signal != 0) {
    const char* name = sigabbrev_np(signal);
    return fmt::format("killed by signal {} (SIG{})", signal, name ? name : "?");
  }
  return fmt::format("exited with code {}", code);
}

ExitInfo exit_from_code(int code) {
  ExitInfo e;
  if (code > 128 && code < 128 + 65) {
    e.signal = code - 128;
  } else {
    e.code = code;
  }
  return e;
}

std::filesystem::path workspace_log_path(const std::filesystem::path& data_dir,
                                         const std::string& name) {
  return data_dir / "logs" / (name + ".log");
}

void append_log_line(int fd, const std::string& line) {
  if (fd < 0) return;
  auto text = fmt::format("==> cloudyknight {:%Y-%m-%d %H:%M:%S}: {}\n",
                          fmt::localtime(std::time(nullptr)), line);
  (void)!::write(fd, text.data(), text.size());
}

std::string tail_file(const std::filesystem::path& path, int lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff start = std::max<std::streamoff>(0, size - 16 * 1024);
  in.seekg(start);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!text.empty() && text.back() == '\n') text.pop_back();
  size_t pos = text.size();
  for (int i = 0; i < lines && pos != std::string::npos && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
  }
  return pos == std::string::npos || pos == 0 ? text : text.substr(pos + 1);
}

}  // namespace ck
