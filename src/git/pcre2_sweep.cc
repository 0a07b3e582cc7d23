// A workaround for a memory leak in Debian 12's libgit2 1.5: its git_regexp_match() returns
// early when PCRE2 finds no match, without freeing the match block it made (about 20 KiB
// each, with PCRE2's frame vector). libgit2 calls it for every configuration entry a glob
// iterates (url.*.insteadOf on every remote it builds, remote.*.fetch, branch settings), so a
// daemon that fetches every minute leaked hundreds of KiB a minute per workspace. Upstream
// frees the block before returning; until Debian ships that, the daemon's own definitions of
// PCRE2's match-block functions (which take precedence over libpcre2's for libgit2, which
// calls them through its PLT) keep a per-thread list of the blocks that are alive, and
// sweep_regex_leaks() frees what a finished libgit2 call left behind: libgit2 never keeps a
// match block past the call that made it (git_regexp_match and git_regexp_search make and
// drop theirs), so one alive between calls is one it leaked.
#include "git/pcre2_sweep.h"

#include <dlfcn.h>

#include <cstdint>
#include <unordered_set>

struct pcre2_real_match_data_8;
struct pcre2_real_general_context_8;

namespace {

using CreateFn = pcre2_real_match_data_8* (*)(std::uint32_t, pcre2_real_general_context_8*);
using FreeFn = void (*)(pcre2_real_match_data_8*);

CreateFn real_create() {
  static auto fn = reinterpret_cast<CreateFn>(dlsym(RTLD_NEXT, "pcre2_match_data_create_8"));
  return fn;
}

FreeFn real_free() {
  static auto fn = reinterpret_cast<FreeFn>(dlsym(RTLD_NEXT, "pcre2_match_data_free_8"));
  return fn;
}

// Blocks made on this thread and not freed yet.
std::unordered_set<pcre2_real_match_data_8*>& alive() {
  thread_local std::unordered_set<pcre2_real_match_data_8*> set;
  return set;
}

std::uint64_t swept_total = 0;

}  // namespace

extern "C" {

pcre2_real_match_data_8* pcre2_match_data_create_8(std::uint32_t ovecsize, pcre2_real_general_context_8* ctx) {
  auto* data = real_create()(ovecsize, ctx);
  if (data) alive().insert(data);
  return data;
}

void pcre2_match_data_free_8(pcre2_real_match_data_8* data) {
  if (data) alive().erase(data);
  real_free()(data);
}

}  // extern "C"

namespace ck::git {

std::size_t sweep_regex_leaks() {
  auto& set = alive();
  std::size_t n = set.size();
  for (auto* data : set) real_free()(data);
  set.clear();
  __atomic_add_fetch(&swept_total, n, __ATOMIC_RELAXED);
  return n;
}

std::uint64_t regex_leaks_swept() { return __atomic_load_n(&swept_total, __ATOMIC_RELAXED); }

}  // namespace ck::git
