#pragma once
// For the git module's tests: the git CLI plays the remote and the other developer.

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/files.h"
#include "core/shell.h"

namespace ck::git::testing {

/// Runs a shell command in `dir` as the developer "dev"; returns its output (trailing newlines
/// and spaces trimmed) and fails the test on a non-zero exit.
inline std::string run(const std::filesystem::path& dir, const std::string& cmd) {
  std::string full = "cd " + shell_quote(dir.string()) +
                     " && GIT_AUTHOR_NAME=dev GIT_AUTHOR_EMAIL=dev@test GIT_COMMITTER_NAME=dev "
                     "GIT_COMMITTER_EMAIL=dev@test " + cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  int rc = p ? pclose(p) : -1;
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

/// Writes `text` to `p`, making its folders.
inline void write(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

/// The content of `p` ("" when it cannot be read).
inline std::string read(const std::filesystem::path& p) { return read_file(p).value_or(""); }

}  // namespace ck::git::testing
