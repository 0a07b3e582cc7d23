// restore_to_bucket(): a restore into S3 storage, through a temporary folder (backup.h).
#include <fmt/format.h>
#include <stdlib.h>

#include "backup/backup.h"

namespace ck::backup {

Result<RestoreReport> restore_to_bucket(const Destination& dest, const std::string& workspace,
                                        RestoreOptions opts, const sync::Location& where) {
  char tmpl[] = "/tmp/ck-restore-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return fail(Errc::io, "cannot create a temporary folder in /tmp");
  const std::filesystem::path tmp = tmpl;
  auto done = [&tmp](Result<RestoreReport> r) {
    std::error_code ec;
    std::filesystem::remove_all(tmp, ec);
    return r;
  };
  // The bucket's current source, the restore applied to it.
  sync::Options so;
  if (auto pulled = sync::pull(where, tmp, so); !pulled) {
    return done(fail(pulled.error().code,
                     "reading the workspace from the storage bucket failed: " + pulled.error().message));
  }
  opts.target = tmp;
  auto r = restore(dest, workspace, opts);
  if (!r || opts.dry_run) return done(std::move(r));
  // Upload what the restore wrote, then delete exactly the objects it removed (mirror mode).
  auto pushed = sync::push(where, tmp, so);
  std::vector<std::string> gone;
  for (const auto& c : r.value().changes) {
    if (c.op == RestoreChange::Op::remove) gone.push_back(where.key_prefix + c.path);
  }
  Result<void> deleted = outcome::success();
  if (pushed && !gone.empty()) deleted = where.client->delete_objects(where.bucket, gone);
  if (!pushed || !deleted) {
    return done(fail(Errc::unavailable, "writing the restored source to the storage bucket failed: " +
                                            (!pushed ? pushed.error().message : deleted.error().message) +
                                            " (run the restore again)"));
  }
  return done(std::move(r));
}

}  // namespace ck::backup
