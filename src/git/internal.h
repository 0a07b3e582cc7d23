#pragma once
// Shared by the module's files, not part of its interface.

#include <git2.h>

#include <memory>

namespace ck::git {

/// Initialises libgit2 once per process with the module's settings (repo.cc): no owner
/// validation (the daemon runs nothing from a repository), no re-hashing of objects read.
void init_library();

/// A libgit2 object that frees itself.
template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const {
    if (p) Free(p);
  }
};
template <class T, void (*Free)(T*)>
using Ptr = std::unique_ptr<T, Deleter<T, Free>>;

using RepoPtr = Ptr<git_repository, git_repository_free>;
using ConfigPtr = Ptr<git_config, git_config_free>;
using RefPtr = Ptr<git_reference, git_reference_free>;

}  // namespace ck::git
