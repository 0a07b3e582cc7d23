#pragma once
// The process runtime's sandbox, daemon side: which layers the kernel lets us apply (probed
// once at startup), the decision to run or refuse a workspace with what is available, the
// per-workspace uid (persisted in DATA/run/<name>/uid, never shared), the files of the
// sandbox's /etc, and chown/copy helpers that never follow a symlink the workspace controls.
// The layers themselves are applied by `cloudyknight __init` (confine.h). Pure functions here
// have no I/O and are unit-tested; the rest runs on the control-plane thread or the copy pool.

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace ck {

/// runtime.uid_range: the host uids (and gids, the same numbers) handed to workspaces.
struct UidRange {
  uid_t first = 200000;
  uid_t last = 265535;
};

/// Parses "200000-265535": both ends in 1000..2^31-2, first <= last.
Result<UidRange> parse_uid_range(const std::string& text);

/// The uid a workspace gets: `current` (from its uid file) if it is in the range and not in
/// `taken` (other workspaces' uids), else the lowest free uid of the range; none when full.
std::optional<uid_t> pick_uid(const UidRange& range, std::optional<uid_t> current,
                              const std::set<uid_t>& taken);

/// What the kernel and our privileges allow (probe_sandbox) or a test says.
struct SandboxProbe {
  bool root = false;        // can switch uid, chown, mount
  bool namespaces = false;  // clone(CLONE_NEWPID|NEWNS|NEWIPC|NEWUTS) works
  bool seccomp = false;     // seccomp filters can be loaded
  std::string why_no_namespaces;
  std::string why_no_seccomp;
};

/// The layers a workspace gets. Each flag is applied exactly when true.
struct SandboxPlan {
  bool own_uid = false;              // its own unprivileged uid/gid from runtime.uid_range
  bool namespaces = false;           // new pid, mount, ipc, uts namespaces + pivot_root
  bool drop_caps = false;            // every capability dropped (bounding, ambient, the rest)
  bool no_new_privs = true;          // always possible
  bool seccomp = false;              // the syscall filter of confine.cc
  bool rlimits = true;               // always possible
  bool clean_env = true;             // always: the environment is built from nothing
  std::vector<std::string> missing;  // what could not be applied, with the reason
  /// The applied layers as a list of short names ("uid", "pid-ns", ... "seccomp").
  std::vector<std::string> layers() const;
  /// One line for logs and /status.
  std::string describe(const UidRange& range) const;
};

/// What to apply given the probe; refuses (forbidden, the message names what is missing and
/// runtime.allow_weak_sandbox) when a layer is missing and `allow_weak` is false.
Result<SandboxPlan> decide_sandbox(const SandboxProbe& probe, bool allow_weak);

/// Looks at the running process and kernel (forks short-lived children to try namespaces).
SandboxProbe probe_sandbox();

/// The sandbox's /etc/passwd and /etc/group: root, nobody and the workspace's user "app".
std::string sandbox_passwd(uid_t uid, gid_t gid, const std::string& home);
std::string sandbox_group(gid_t gid);
/// The sandbox's hostname for a workspace: "ck-<name>", cut to 63 characters.
std::string sandbox_hostname(const std::string& workspace);

/// Reads DATA/run/<name>/uid, picks (pick_uid, against every other DATA/run/*/uid) and
/// writes it back. Called on the control-plane thread only, so two starts never race.
Result<uid_t> assign_workspace_uid(const std::filesystem::path& data_dir, const std::string& name,
                                   const UidRange& range);

/// Chowns `dir` and everything below it to uid:gid, walking by file descriptor and never
/// following a symlink (fchownat AT_SYMLINK_NOFOLLOW; folders opened with O_NOFOLLOW).
Result<void> chown_tree(const std::filesystem::path& dir, uid_t uid, gid_t gid);

/// Makes `to` (which must not exist) a copy of the folder `from` whose files are hard links to
/// from's: folders made anew, symlinks recreated as links, nothing followed (descriptors, as
/// chown_tree). Files owned by anyone but `owner` (when set), and what is neither a file, a
/// folder nor a symlink, are left out. For installed dependencies moving to a new app copy.
Result<void> link_tree(const std::filesystem::path& from, const std::filesystem::path& to,
                       std::optional<uid_t> owner);

/// Creates or replaces `rel` (a relative path without "..") below `dst_root` with the file
/// below `src_root`, resolving both with no symlink on the way (openat2 RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS): a symlink in the source is recreated as a symlink, never followed;
/// a missing source removes the destination. New entries are chowned to uid:gid when set.
Result<void> update_file_beneath(const std::filesystem::path& src_root,
                                 const std::filesystem::path& dst_root, const std::string& rel,
                                 std::optional<uid_t> uid, std::optional<gid_t> gid);

/// Writes `text` to `path` without following a symlink there: an existing entry is removed
/// first (it may be the workspace's), then created with O_EXCL|O_NOFOLLOW.
Result<void> write_file_nofollow(const std::filesystem::path& path, const std::string& text);

}  // namespace ck
