#include "common/names.h"

#include <algorithm>

namespace blockd::common {

namespace {

bool is_holder_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == ':' || c == '-';
}

}  // namespace

bool is_dns_label(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front()) || !alnum(name.back())) return false;
  for (char c : name)
    if (!alnum(c) && c != '-') return false;
  return true;
}

bool is_valid_holder(std::string_view holder) {
  return !holder.empty() && holder.size() <= kMaxHolderLength && std::all_of(holder.begin(), holder.end(), is_holder_char);
}

}  // namespace blockd::common
