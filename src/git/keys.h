#pragma once
// Deploy keys and host keys for ssh remotes (issue 16): each git workspace that follows an ssh
// remote gets a key pair of its own (ECDSA P-256, made with OpenSSL on first use), whose public
// half the API shows so it can be added to the repository as a deploy key; the server's host
// key is pinned on first contact (trust on first use) and a changed one is refused.

#include <filesystem>
#include <string>
#include <string_view>

#include "core/error.h"

namespace ck::git {

/// True for URLs libgit2 reaches over ssh: ssh://, ssh+git://, git+ssh:// and scp-like
/// user@host:path. Pure.
bool is_ssh_url(std::string_view url);

/// The key pair in `dir` (id_ecdsa, mode 0600, and id_ecdsa.pub), made when missing. Returns
/// the public key as an authorized_keys line ("ecdsa-sha2-nistp256 AAAA... <comment>").
Result<std::string> ensure_deploy_key(const std::filesystem::path& dir, const std::string& comment);

/// The public line of the key pair in `dir`, "" when there is none.
std::string deploy_key(const std::filesystem::path& dir);

/// The pinned host key fingerprint file of a workspace ("<host> SHA256:<base64>" lines).
/// check_host_key() answers whether `fingerprint` is the one pinned for `host` (pinning it
/// when none is), with a message saying what to do when it changed.
Result<void> check_host_key(const std::filesystem::path& file, const std::string& host,
                            const std::string& fingerprint);

}  // namespace ck::git
