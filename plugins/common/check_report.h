// A plugin's `check` hook answers with a CheckReport: one line per prerequisite.
#pragma once

#include <string>

#include "beaconbox/plugin/v1/plugin.pb.h"

namespace beaconbox::plugins {

inline void AddCheckLine(beaconbox::plugin::v1::CheckReport& report,
                         beaconbox::plugin::v1::CheckLevel level, std::string what,
                         std::string detail) {
  auto* line = report.add_lines();
  line->set_level(level);
  line->set_what(std::move(what));
  line->set_detail(std::move(detail));
}

}  // namespace beaconbox::plugins
