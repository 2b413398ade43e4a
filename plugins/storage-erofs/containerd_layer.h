// Layers that already are EROFS: containerd 2.1+'s erofs snapshotter keeps each
// committed snapshot as <root>/snapshots/<id>/layer.erofs (next to the marker file
// .erofslayer) and hands the shim an overlay whose lowerdirs are <id>/fs, where it
// mounted that file on the host (or, for a read-only view of one layer, a single
// mount of type "erofs" whose source is the file). Such a layer is used as it is: no
// conversion, no cache. The file is input: it is validated as a cache hit is (magic,
// block size, size) before a VM sees it.
#pragma once

#include <string>

#include "beaconbox/plugin/v1/storage.pb.h"
#include "common/base/result.h"

namespace beaconbox::storage {

inline constexpr char kContainerdErofsMarker[] = ".erofslayer";
inline constexpr char kContainerdErofsLayerFile[] = "layer.erofs";

// For an overlay lowerdir: "" when it is not a layer of containerd's erofs snapshotter
// (<dir>/fs without <dir>/.erofslayer), else the path of its <dir>/layer.erofs once
// checked to be a complete EROFS image. A missing, truncated or non-EROFS layer.erofs
// is an error naming it and what to do.
Result<std::string> ContainerdErofsLayer(const std::string& lowerdir);

// For a rootfs mount of type "erofs" (the erofs snapshotter's view of one layer):
// its source, an absolute clean path to a complete EROFS image file.
Result<std::string> ContainerdErofsMountImage(const beaconbox::plugin::v1::HostMount& mount);

}  // namespace beaconbox::storage
