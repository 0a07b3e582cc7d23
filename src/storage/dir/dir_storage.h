#pragma once
// dir storage: the workspace root is a folder and each top-level subfolder is a workspace.

#include "storage/storage.h"

namespace ck {

class DirStorage final : public Storage {
 public:
  explicit DirStorage(std::filesystem::path root);
  std::string kind() const override { return "dir"; }
  std::string location() const override { return root_.string(); }
  Result<std::vector<StorageEntry>> list() override;

 private:
  std::filesystem::path root_;
};

}  // namespace ck
