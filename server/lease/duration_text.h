// Durations for people: "3m12s", "45s", "2h0m5s", "1d3h0m0s". Whole seconds, rounded
// down; anything under a second is "0s". Used in refusal messages and logs.
#pragma once

#include <string>

#include "server/lease/clock.h"

namespace blockd::server::lease {

std::string duration_text(Duration duration);

}  // namespace blockd::server::lease
