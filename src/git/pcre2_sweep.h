#pragma once
// Frees the PCRE2 match blocks Debian's libgit2 1.5 leaks (see pcre2_sweep.cc). Every public
// function of this module that calls libgit2 holds a RegexSweep, so nothing leaked outlives
// the call that leaked it.

#include <cstddef>
#include <cstdint>

namespace ck::git {

/// Frees the match blocks made on this thread and still alive (leaked by a finished libgit2
/// call); how many. Call only between libgit2 calls on this thread.
std::size_t sweep_regex_leaks();

/// How many blocks were swept in this process so far (tests).
std::uint64_t regex_leaks_swept();

/// Sweeps when it goes out of scope (at the end of a call into libgit2).
struct RegexSweep {
  RegexSweep() = default;
  RegexSweep(const RegexSweep&) = delete;
  RegexSweep& operator=(const RegexSweep&) = delete;
  ~RegexSweep() { sweep_regex_leaks(); }
};

}  // namespace ck::git
