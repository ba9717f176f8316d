// LeaseMode and AllowedModes: what a client asks for and what a volume permits
// (DESIGN.md §4). Kept free of the protobuf schema so that blockd_lease links only
// blockd_common; the caller translates v1::AccessMode into AllowedModes.
#pragma once

#include <string_view>

namespace blockd::server::lease {

// What one session (or one control-API acquire) asks for.
enum class LeaseMode {
  kReadWrite,  // the write lease: one holder at a time (ReadWriteOnce)
  kReadOnly,   // a shared read lease: many holders, only while no writer holds the volume
};

// "rw" / "ro", as in the export-name grammar.
constexpr std::string_view to_string(LeaseMode mode) {
  return mode == LeaseMode::kReadWrite ? "rw" : "ro";
}

// The volume's access policy (v1::Volume.access_modes). An empty policy in the catalog
// means ReadWriteOnce only; the caller applies that default.
struct AllowedModes {
  bool read_write_once = true;
  bool read_only_many = false;

  bool allows(LeaseMode mode) const {
    return mode == LeaseMode::kReadWrite ? read_write_once : read_only_many;
  }
};

// "ReadWriteOnce", "ReadWriteOnce, ReadOnlyMany", "none": for refusal messages.
std::string_view describe(AllowedModes modes);

}  // namespace blockd::server::lease
