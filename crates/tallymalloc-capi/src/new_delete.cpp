// The throwing half of C++'s operator new. The exported operators are Rust functions (see
// cxx.rs); those that may throw jump here without a frame of their own, so std::bad_alloc
// unwinds straight to the caller instead of through Rust code built with panic=abort.
#include <cstddef>
#include <new>

#include "tallymalloc.h"

namespace {

// The standard's loop: try, and while failing call the new_handler; without one, throw.
template <typename Allocate>
void *allocate_or_throw(Allocate allocate) {
  for (;;) {
    if (void *block = allocate()) {
      return block;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      throw std::bad_alloc();
    }
    handler();
  }
}

}  // namespace

extern "C" {

__attribute__((visibility("hidden"))) void *tm_cxx_new(std::size_t size) {
  return allocate_or_throw([=] { return tm_malloc(size); });
}

__attribute__((visibility("hidden"))) void *tm_cxx_new_aligned(std::size_t size,
                                                               std::size_t alignment) {
  return allocate_or_throw([=] { return tm_aligned_alloc(alignment, size); });
}

__attribute__((visibility("hidden"))) void *tm_cxx_new_nothrow(std::size_t size) noexcept {
  try {
    return tm_cxx_new(size);
  } catch (...) {
    return nullptr;
  }
}

__attribute__((visibility("hidden"))) void *tm_cxx_new_aligned_nothrow(
    std::size_t size, std::size_t alignment) noexcept {
  try {
    return tm_cxx_new_aligned(size, alignment);
  } catch (...) {
    return nullptr;
  }
}

}  // extern "C"
