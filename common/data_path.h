// Finding input files. A name the user gives is used as is when it names an existing file
// (or, for models, a directory holding config.json). Otherwise it is looked up, with or without
// its extension, in the catalogs, in this order:
//   1. $TPP_DATA_DIR/<catalog>/
//   2. <dir of the running program>/../share/tpp/<catalog>/   (an installed prefix)
//   3. the source tree the program was built from (model/examples, hardware_profiles/...)
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace tpp {

enum class Catalog { kModels, kGpus, kClusters, kWorkloads, kOperators };

const char* catalog_name(Catalog c);  // "models", "gpus", "clusters", "workloads", "operators"
std::vector<std::string> catalog_dirs(Catalog c);
// Entry names (file stems) found in the catalogs, sorted, without duplicates.
std::vector<std::string> catalog_entries(Catalog c);
// The path to read for `name`; an Error listing what is available when nothing matches.
Expected<std::string> resolve_input(const std::string& name, Catalog c);

}  // namespace tpp
