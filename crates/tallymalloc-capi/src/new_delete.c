/* The part of C++'s operator new that may throw std::bad_alloc. The exported operators are
 * Rust functions (cxx.rs); those that may throw jump here without a frame of their own, so the
 * exception unwinds from here straight to the caller, never through Rust code built with
 * panic=abort. This file is C, built with -fexceptions so unwinding passes through it: the
 * library does not link the C++ runtime (which would add 1.3 MB to every process's resident
 * memory), and finds std::get_new_handler and std::__throw_bad_alloc in the C++ program that
 * calls operator new, on the first failure. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "tallymalloc.h"

typedef void (*new_handler)(void);

static new_handler (*get_new_handler)(void);
static void (*throw_bad_alloc)(void);
static int resolved;

static void resolve(void) {
  if (!resolved) {
    get_new_handler = (new_handler(*)(void))dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv");
    throw_bad_alloc = (void (*)(void))dlsym(RTLD_DEFAULT, "_ZSt17__throw_bad_allocv");
    resolved = 1;
  }
}

/* The standard's step after a failed attempt: call the new_handler and try again, or, without
 * one, throw std::bad_alloc. */
static void after_failure(void) {
  resolve();
  new_handler handler = get_new_handler ? get_new_handler() : NULL;
  if (handler) {
    handler();
    return;
  }
  if (throw_bad_alloc) throw_bad_alloc(); /* does not return */
  static const char message[] =
      "tallymalloc: fatal: operator new is out of memory and no C++ runtime can throw std::bad_alloc\n";
  ssize_t ignored = write(2, message, sizeof message - 1);
  (void)ignored;
  abort();
}

__attribute__((visibility("hidden"))) void *tm_cxx_new(size_t size) {
  for (;;) {
    void *block = tm_malloc(size);
    if (block) return block;
    after_failure();
  }
}

__attribute__((visibility("hidden"))) void *tm_cxx_new_aligned(size_t size, size_t alignment) {
  for (;;) {
    void *block = tm_aligned_alloc(alignment, size);
    if (block) return block;
    after_failure();
  }
}
