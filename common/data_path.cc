#include "common/data_path.h"

#include "common/file.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace fs = std::filesystem;

namespace tpp {
namespace {

const char* source_subdir(Catalog c) {
  switch (c) {
    case Catalog::kModels: return "model/examples";
    case Catalog::kGpus: return "hardware_profiles/gpus";
    case Catalog::kClusters: return "hardware_profiles/clusters";
    case Catalog::kWorkloads: return "workloads";
    case Catalog::kOperators: return "hardware_profiles/operators";
  }
  return "";
}

bool is_input(const fs::path& p, Catalog c) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return true;
  return c == Catalog::kModels && fs::is_regular_file(p / "config.json", ec);
}

// "model file", "GPU file", ...: what the user meant to give.
std::string input_role(Catalog c) {
  switch (c) {
    case Catalog::kModels: return "model file or a directory holding config.json";
    case Catalog::kGpus: return "GPU file";
    case Catalog::kClusters: return "cluster file";
    case Catalog::kWorkloads: return "workload file";
    case Catalog::kOperators: return "operator table";
  }
  return "file";
}

}  // namespace

const char* catalog_name(Catalog c) {
  switch (c) {
    case Catalog::kModels: return "models";
    case Catalog::kGpus: return "gpus";
    case Catalog::kClusters: return "clusters";
    case Catalog::kWorkloads: return "workloads";
    case Catalog::kOperators: return "operators";
  }
  return "";
}

std::vector<std::string> catalog_dirs(Catalog c) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("TPP_DATA_DIR"); env && *env)
    dirs.push_back((fs::path(env) / catalog_name(c)).string());
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back((exe.parent_path() / ".." / "share" / "tpp" / catalog_name(c))
                              .lexically_normal().string());
#ifdef TPP_SOURCE_DIR
  dirs.push_back((fs::path(TPP_SOURCE_DIR) / source_subdir(c)).string());
#endif
  return dirs;
}

std::vector<std::string> catalog_entries(Catalog c) {
  std::vector<std::string> names;
  for (const auto& d : catalog_dirs(c)) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec)) {
      auto ext = e.path().extension().string();
      if (e.is_regular_file(ec) && (ext == ".yaml" || ext == ".json"))
        names.push_back(e.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

Expected<std::string> resolve_input(const std::string& name, Catalog c) {
  if (is_input(name, c)) return name;
  const PathInfo info = inspect_path(name);
  if (info.kind == PathKind::kDirectory)
    return make_error(name, 0, 0,
                      c == Catalog::kModels
                          ? "is a directory without a config.json in it"
                          : "is a directory, expected a YAML file");
  // Something is there but it is no input file (a device, a FIFO, a link loop or a dangling
  // link): say what it is rather than look for a catalog entry of that name.
  if (info.kind == PathKind::kOther)
    return make_error(name, 0, 0, info.what + (info.names_a_kind ? ", not a " + input_role(c) : ""));
  bool bare = name.find('/') == std::string::npos;
  if (bare && !name.empty()) {
    for (const auto& d : catalog_dirs(c)) {
      for (const char* ext : {"", ".yaml", ".json"}) {
        fs::path p = fs::path(d) / (name + ext);
        if (is_input(p, c)) return p.string();
      }
    }
  }
  std::string avail;
  for (const auto& n : catalog_entries(c)) avail += (avail.empty() ? "" : ", ") + n;
  return make_error(name, 0, 0,
                    std::string("no such file, and no entry of that name in the ") +
                        catalog_name(c) + " catalog (available: " +
                        (avail.empty() ? "none found" : avail) + ")");
}

}  // namespace tpp
