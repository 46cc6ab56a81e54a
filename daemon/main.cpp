// The channeld binary (skeleton).
#include <cstdio>

int main() {
  std::puts("channeld 0.1.0");
  return 0;
}
