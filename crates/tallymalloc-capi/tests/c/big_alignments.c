/* Every power-of-two alignment from 8 bytes to 1 GiB through posix_memalign, aligned_alloc and
 * memalign: each block aligned, written at both ends, sized, grown by realloc with its
 * contents, freed; afterwards resident memory is back near where it started. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      printf("FAILED line %d (alignment %zu): %s\n", __LINE__, align, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static long resident_kib(void) {
  long pages = 0, resident = 0;
  FILE *statm = fopen("/proc/self/statm", "r");
  if (statm == NULL || fscanf(statm, "%ld %ld", &pages, &resident) != 2) return -1;
  fclose(statm);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void exercise(char *block, size_t align, size_t size) {
  CHECK(block != NULL);
  if (block == NULL) return;
  CHECK((uintptr_t)block % align == 0);
  CHECK(malloc_usable_size(block) >= size);
  block[size - 1] = 'z';
  block[0] = 'a';
  char *grown = realloc(block, size * 2 + 4096);
  CHECK(grown != NULL);
  if (grown == NULL) {
    free(block);
    return;
  }
  CHECK(grown[0] == 'a' && (size == 1 || grown[size - 1] == 'z'));
  grown[size * 2 + 4095] = 'e';
  free(grown);
}

int main(void) {
  size_t align = 0;
  long before = resident_kib();
  for (align = 8; align <= (size_t)1 << 30; align *= 2) {
    size_t sizes[] = {1, 100, 70000, (size_t)3 << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      size_t size = sizes[s];
      void *block = NULL;
      CHECK(posix_memalign(&block, align, size) == 0);
      exercise(block, align, size);
      exercise(aligned_alloc(align, size), align, size);
      exercise(memalign(align, size), align, size);
    }
  }
  align = 0;
  /* Impossible requests keep failing. */
  void *none = (void *)1;
  CHECK(posix_memalign(&none, 3 << 20, 10) == EINVAL && none == (void *)1);
  errno = 0;
  CHECK(aligned_alloc(3 << 20, 10) == NULL && errno == EINVAL);
  CHECK(posix_memalign(&none, (size_t)1 << 30, SIZE_MAX - 4096) == ENOMEM);
  /* Huge-aligned blocks are unmapped, not kept: wait out the purge delay of a cached one. */
  usleep(100 * 1000);
  free(malloc(16));
  long after = resident_kib();
  printf("resident %ld KiB before, %ld KiB after\n", before, after);
  align = 0;
  CHECK(after - before < 16 * 1024);
  printf("%s\n", failures ? "checks FAILED" : "checks passed");
  return failures != 0;
}
