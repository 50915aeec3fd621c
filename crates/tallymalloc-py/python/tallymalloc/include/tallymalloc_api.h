/*
 * tallymalloc's C API for CPython extensions, reached through the capsule
 * "tallymalloc._native._C_API" (the pattern NumPy's C API uses). Add tallymalloc.get_include()
 * to the include path; Cython code gets all of this with `cimport tallymalloc`.
 *
 *     if (tallymalloc_import() < 0) return NULL;          // once, e.g. in the module's init
 *     double *samples = tallymalloc_malloc(TALLYMALLOC_DOMAIN_MEM, 100 * sizeof(double));
 *     ...
 *     tallymalloc_free(TALLYMALLOC_DOMAIN_MEM, samples);
 *
 * The functions keep the C contract of tallymalloc.h: NULL (errno ENOMEM) when memory runs
 * out, a failed realloc leaves the block as it was, a block is freed through the domain it
 * was allocated in. They may be called without the GIL once the API is imported.
 */
#ifndef TALLYMALLOC_API_H
#define TALLYMALLOC_API_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>

#define TALLYMALLOC_API_VERSION 1
#define TALLYMALLOC_DOMAIN_RAW 0
#define TALLYMALLOC_DOMAIN_MEM 1
#define TALLYMALLOC_DOMAIN_OBJ 2

/* One domain's figures, as tm_domain_stats fills them. */
typedef struct {
  uint64_t live_bytes;
  uint64_t peak_bytes;
  uint64_t live_blocks;
  uint64_t allocations;
  uint64_t frees;
  uint64_t allocated_bytes;
  uint64_t mismatches;
} tallymalloc_domain_stats;

/* The capsule's table. Fields are only ever appended; version says how many there are. */
typedef struct {
  unsigned int version;
  void *(*malloc)(int domain, size_t size);
  void *(*calloc)(int domain, size_t count, size_t size);
  void *(*realloc)(int domain, void *block, size_t size);
  void (*free)(int domain, void *block);
  size_t (*usable_size)(const void *block);
  int (*domain_register)(const char *name);
  const char *(*domain_name)(int domain);
  int (*domain_stats)(int domain, tallymalloc_domain_stats *out);
  size_t (*stats_json)(char *buffer, size_t length);
} tallymalloc_api_table;

static const tallymalloc_api_table *tallymalloc_api = NULL;

/* Imports the API: 0, or -1 with a Python exception set. Needs the GIL; idempotent. */
static inline int tallymalloc_import(void) {
  if (tallymalloc_api != NULL) return 0;
  const tallymalloc_api_table *table =
      (const tallymalloc_api_table *)PyCapsule_Import("tallymalloc._native._C_API", 0);
  if (table == NULL) return -1;
  if (table->version < TALLYMALLOC_API_VERSION) {
    PyErr_Format(PyExc_ImportError, "tallymalloc's C API is version %u; this code needs %d",
                 table->version, TALLYMALLOC_API_VERSION);
    return -1;
  }
  tallymalloc_api = table;
  return 0;
}

static inline void *tallymalloc_malloc(int domain, size_t size) {
  return tallymalloc_api->malloc(domain, size);
}
static inline void *tallymalloc_calloc(int domain, size_t count, size_t size) {
  return tallymalloc_api->calloc(domain, count, size);
}
static inline void *tallymalloc_realloc(int domain, void *block, size_t size) {
  return tallymalloc_api->realloc(domain, block, size);
}
static inline void tallymalloc_free(int domain, void *block) {
  tallymalloc_api->free(domain, block);
}
static inline size_t tallymalloc_usable_size(const void *block) {
  return tallymalloc_api->usable_size(block);
}
/* Registers (or finds) a domain of your own: its id, or -1 for a bad name. */
static inline int tallymalloc_domain_register(const char *name) {
  return tallymalloc_api->domain_register(name);
}
static inline int tallymalloc_get_domain_stats(int domain, tallymalloc_domain_stats *out) {
  return tallymalloc_api->domain_stats(domain, out);
}

#endif
