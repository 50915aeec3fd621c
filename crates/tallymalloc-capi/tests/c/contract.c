/* Checks every point of the C contract in include/tallymalloc.h through the standard names.
 * Built twice by the test suite: linked against libtallymalloc.so, and plain (run with
 * LD_PRELOAD). Prints "contract: N checks passed" and exits 0, or lists failures and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int checks, failures;

#define CHECK(condition)                                                           \
  do {                                                                             \
    checks++;                                                                      \
    if (!(condition)) {                                                            \
      failures++;                                                                  \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #condition);         \
    }                                                                              \
  } while (0)

static int (*is_ours)(const void *);

static void fill(unsigned char *block, size_t size, unsigned char seed) {
  for (size_t i = 0; i < size; i++) block[i] = (unsigned char)(seed + i * 7);
}

static int intact(const unsigned char *block, size_t size, unsigned char seed) {
  for (size_t i = 0; i < size; i++)
    if (block[i] != (unsigned char)(seed + i * 7)) return 0;
  return 1;
}

static int all_zero(const unsigned char *block, size_t size) {
  for (size_t i = 0; i < size; i++)
    if (block[i] != 0) return 0;
  return 1;
}

static void served_by_tallymalloc(void) {
  is_ours = (int (*)(const void *))dlsym(RTLD_DEFAULT, "tm_is_ours");
  CHECK(is_ours != NULL);
  if (is_ours == NULL) {
    fprintf(stderr, "tallymalloc is not loaded\n");
    exit(1);
  }
  void *block = malloc(24);
  CHECK(is_ours(block));
  int local;
  CHECK(!is_ours(&local));
  free(block);
}

static void zero_size_and_null(void) {
  void *a = malloc(0), *b = malloc(0);
  CHECK(a != NULL && b != NULL && a != b);
  free(a);
  free(b);
  free(NULL);
  void *c = calloc(0, 10), *d = calloc(10, 0);
  CHECK(c != NULL && d != NULL && c != d);
  free(c);
  free(d);
  CHECK(malloc_usable_size(NULL) == 0);
}

static void free_keeps_errno(void) {
  size_t sizes[] = {16, 5000, 100000, 600000, 8u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    void *block = malloc(sizes[i]);
    errno = 4242;
    free(block);
    CHECK(errno == 4242);
  }
}

static void impossible_sizes_fail_with_enomem(void) {
  for (size_t k = 0; k < 64; k++) {
    errno = 0;
    CHECK(malloc(SIZE_MAX - k) == NULL && errno == ENOMEM);
  }
  errno = 0;
  CHECK(malloc(SIZE_MAX / 2) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(malloc((size_t)PTRDIFF_MAX) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(calloc((size_t)1 << 40, (size_t)1 << 40) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(calloc(1, SIZE_MAX) == NULL && errno == ENOMEM);
}

static void alignment_and_usable_size(void) {
  for (size_t size = 1; size < 70000; size = size * 3 / 2 + 1) {
    unsigned char *block = malloc(size);
    CHECK(block != NULL);
    CHECK(((uintptr_t)block % (size > 8 ? 16 : 8)) == 0);
    CHECK(malloc_usable_size(block) >= size);
    fill(block, malloc_usable_size(block), 3);
    free(block);
  }
}

static void calloc_zeroes_even_recycled_memory(void) {
  size_t sizes[] = {8, 40, 1000, 9000, 70000, 300000, 3u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    void *dirty[32];
    for (int j = 0; j < 32; j++) {
      dirty[j] = malloc(sizes[i]);
      memset(dirty[j], 0xAB, sizes[i]);
    }
    for (int j = 0; j < 32; j++) free(dirty[j]);
    for (int j = 0; j < 32; j++) {
      unsigned char *block = calloc(1, sizes[i]);
      CHECK(block != NULL && all_zero(block, sizes[i]));
      dirty[j] = block;
    }
    for (int j = 0; j < 32; j++) free(dirty[j]);
  }
}

static void realloc_keeps_contents_and_the_original_on_failure(void) {
  unsigned char *block = malloc(100);
  fill(block, 100, 9);
  errno = 0;
  CHECK(realloc(block, SIZE_MAX) == NULL && errno == ENOMEM);
  CHECK(intact(block, 100, 9));
  errno = 0;
  CHECK(realloc(block, SIZE_MAX - 4096) == NULL && errno == ENOMEM);
  CHECK(intact(block, 100, 9));
  size_t steps[] = {200, 5000, 80000, 700000, 9u << 20, 40u << 20, 1000, 50};
  size_t kept = 100;
  for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
    block = realloc(block, steps[i]);
    CHECK(block != NULL);
    size_t check = kept < steps[i] ? kept : steps[i];
    CHECK(intact(block, check, 9));
    fill(block, steps[i], 9);
    kept = steps[i];
  }
  /* realloc(p, 0) frees and returns NULL, as glibc's does. */
  CHECK(realloc(block, 0) == NULL);
  /* realloc(NULL, n) is malloc(n). */
  block = realloc(NULL, 64);
  CHECK(block != NULL && is_ours(block));
  /* Growing within the size class stays in place. */
  CHECK(realloc(block, malloc_usable_size(block)) == block);
  free(block);
  /* A huge block that fails to grow is intact too. */
  unsigned char *huge = malloc(4u << 20);
  fill(huge, 4u << 20, 5);
  CHECK(realloc(huge, SIZE_MAX / 4) == NULL && intact(huge, 4u << 20, 5));
  free(huge);
}

static void reallocarray_detects_overflow(void) {
  unsigned char *block = reallocarray(NULL, 10, 10);
  CHECK(block != NULL && malloc_usable_size(block) >= 100);
  fill(block, 100, 1);
  errno = 0;
  CHECK(reallocarray(block, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
  CHECK(intact(block, 100, 1));
  block = reallocarray(block, 1000, 8);
  CHECK(block != NULL && intact(block, 100, 1));
  free(block);
}

static void posix_memalign_rules(void) {
  void *sentinel = (void *)0x1234;
  void *result = sentinel;
  size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 100};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    result = sentinel;
    CHECK(posix_memalign(&result, bad[i], 64) == EINVAL && result == sentinel);
  }
  for (size_t alignment = sizeof(void *); alignment <= ((size_t)2 << 20); alignment *= 2) {
    errno = 777;
    result = sentinel;
    CHECK(posix_memalign(&result, alignment, 100) == 0);
    CHECK(result != sentinel && (uintptr_t)result % alignment == 0);
    CHECK(errno == 777);
    CHECK(malloc_usable_size(result) >= 100);
    free(result);
  }
  result = sentinel;
  CHECK(posix_memalign(&result, 64, SIZE_MAX - 100) == ENOMEM && result == sentinel);
  result = sentinel;
  CHECK(posix_memalign(&result, 64, 0) == 0 && result != sentinel);
  free(result);
}

static void aligned_alloc_and_older_forms(void) {
  errno = 0;
  CHECK(aligned_alloc(3, 10) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(aligned_alloc(0, 10) == NULL && errno == EINVAL);
  for (size_t alignment = 1; alignment <= ((size_t)1 << 20); alignment *= 4) {
    void *block = aligned_alloc(alignment, 3000);
    CHECK(block != NULL && (uintptr_t)block % alignment == 0);
    free(block);
  }
  errno = 0;
  CHECK(aligned_alloc(64, SIZE_MAX - 10) == NULL && errno == ENOMEM);
  void *odd = memalign(48, 10); /* rounded up to 64, as glibc does */
  CHECK(odd != NULL && (uintptr_t)odd % 64 == 0);
  free(odd);
  long page = sysconf(_SC_PAGESIZE);
  void *v = valloc(10);
  CHECK(v != NULL && (uintptr_t)v % page == 0);
  free(v);
  void *pv = pvalloc(1);
  CHECK(pv != NULL && (uintptr_t)pv % page == 0 && malloc_usable_size(pv) >= (size_t)page);
  free(pv);
  /* cfree is only a compatibility symbol in glibc: programs reach it dynamically. */
  void (*cfree_function)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
  CHECK(cfree_function != NULL);
  if (cfree_function) {
    void *old = malloc(10);
    cfree_function(old);
  }
}

static void invalid_pointers_are_refused(void) {
  int local = 5;
  free(&local); /* reported on stderr, ignored */
  errno = 0;
  CHECK(realloc(&local, 100) == NULL && errno == EINVAL);
  CHECK(malloc_usable_size(&local) == 0);
  CHECK(local == 5);
}

int main(void) {
  served_by_tallymalloc();
  zero_size_and_null();
  free_keeps_errno();
  impossible_sizes_fail_with_enomem();
  alignment_and_usable_size();
  calloc_zeroes_even_recycled_memory();
  realloc_keeps_contents_and_the_original_on_failure();
  reallocarray_detects_overflow();
  posix_memalign_rules();
  aligned_alloc_and_older_forms();
  invalid_pointers_are_refused();
  if (failures) {
    printf("contract: %d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("contract: %d checks passed\n", checks);
  return 0;
}
