#pragma once
// Shared by the module's files, not part of its interface.

namespace ck::git {

/// Initialises libgit2 once per process with the module's settings (repo.cc): no owner
/// validation (the daemon runs nothing from a repository), no re-hashing of objects read.
void init_library();

}  // namespace ck::git
