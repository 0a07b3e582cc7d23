#include "storage/file_index.h"

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/files.h"

namespace ck::sync {

namespace fs = std::filesystem;

FileIndex::FileIndex(fs::path file) : file_(std::move(file)) {
  if (file_.empty()) return;
  auto text = read_file(file_);
  if (!text) return;
  try {
    auto doc = nlohmann::json::parse(*text);
    if (doc.value("version", 0) != 1) return;
    for (const auto& [path, e] : doc.at("files").items()) {
      entries_[path] = IndexEntry{e.at(0).get<std::uint64_t>(), e.at(1).get<std::int64_t>(),
                                  e.at(2).get<std::string>(), e.at(3).get<std::string>()};
    }
    if (doc.contains("uploads")) {
      for (const auto& [id, u] : doc.at("uploads").items()) {
        uploads_[id] = UploadEntry{u.at(0).get<std::string>(), u.at(1).get<std::int64_t>()};
      }
    }
  } catch (const std::exception&) {
    entries_.clear();  // corrupt: start over; everything is compared by content again
    dirty_ = true;
  }
}

std::optional<IndexEntry> FileIndex::find(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(path);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void FileIndex::put(const std::string& path, IndexEntry e) {
  std::lock_guard lock(mu_);
  auto& slot = entries_[path];
  if (slot.size == e.size && slot.mtime_ns == e.mtime_ns && slot.md5 == e.md5 && slot.etag == e.etag) return;
  slot = std::move(e);
  dirty_ = true;
}

void FileIndex::erase(const std::string& path) {
  std::lock_guard lock(mu_);
  if (entries_.erase(path) > 0) dirty_ = true;
}

void FileIndex::add_upload(const std::string& key, const std::string& id) {
  {
    std::lock_guard lock(mu_);
    uploads_[id] = UploadEntry{key, std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count()};
    dirty_ = true;
  }
  save();
}

void FileIndex::remove_upload(const std::string& id) {
  std::lock_guard lock(mu_);
  if (uploads_.erase(id) > 0) dirty_ = true;
}

std::map<std::string, FileIndex::UploadEntry> FileIndex::uploads() const {
  std::lock_guard lock(mu_);
  return uploads_;
}

void FileIndex::save() const {
  if (file_.empty()) return;
  std::lock_guard one_writer(save_mu_);
  nlohmann::json files = nlohmann::json::object();
  nlohmann::json uploads = nlohmann::json::object();
  {
    std::lock_guard lock(mu_);
    if (!dirty_) return;
    for (const auto& [path, e] : entries_) files[path] = {e.size, e.mtime_ns, e.md5, e.etag};
    for (const auto& [id, u] : uploads_) uploads[id] = {u.key, u.started_ms};
  }
  nlohmann::json doc = {{"version", 1}, {"files", std::move(files)}, {"uploads", std::move(uploads)}};
  std::error_code ec;
  fs::create_directories(file_.parent_path(), ec);
  fs::path tmp = file_;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (!out) return;
  }
  fs::rename(tmp, file_, ec);
}

}  // namespace ck::sync
