#include "deliver/verdict.hpp"

namespace channeld::deliver {

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::sent: return "sent";
    case Verdict::retry: return "retry";
    case Verdict::failed: return "failed";
    case Verdict::hard_bounce: return "hard_bounce";
    case Verdict::unsent: return "unsent";
  }
  return "unknown";
}

}  // namespace channeld::deliver
