/* Freed huge blocks serve a longer one together: their pages move into one mapping instead of
 * being faulted in again (alloc/huge.rs, assemble). Run with a purge delay long enough that
 * nothing leaves the cache meanwhile. Checks that calloc's block is zero, that it keeps what is
 * written through reallocs a page at a time, and that such growth does not leave a kernel
 * mapping per step. Prints "huge reuse: N faults, M mappings added" and exits 0, or lists
 * failures and exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int failures;

#define CHECK(condition)                                                    \
  do {                                                                      \
    if (!(condition)) {                                                     \
      failures++;                                                           \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #condition);  \
    }                                                                       \
  } while (0)

static long minor_faults(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

static int mapping_count(void) {
  FILE *maps = fopen("/proc/self/maps", "r");
  int lines = 0, c;
  while ((c = fgetc(maps)) != EOF) lines += c == '\n';
  fclose(maps);
  return lines;
}

static unsigned char pattern(size_t i) { return (unsigned char)(9 + i * 7); }

int main(void) {
  static const size_t sizes[] = {3u << 20, 5u << 20, 2u << 20, 7u << 20};
  unsigned char *blocks[4];
  for (int i = 0; i < 4; i++) {
    blocks[i] = malloc(sizes[i]);
    memset(blocks[i], 0xAB, sizes[i]);
  }
  for (int i = 0; i < 4; i++) free(blocks[i]);

  /* 17 MiB freed, no one block of 16: fresh memory would fault 4096 times. */
  const size_t first = 16u << 20;
  long faults = minor_faults();
  unsigned char *big = calloc(1, first);
  CHECK(big != NULL);
  if (big == NULL) return 1;
  int zero = 1;
  for (size_t i = 0; i < first; i++) zero &= big[i] == 0;
  CHECK(zero);
  for (size_t i = 0; i < first; i++) big[i] = pattern(i);
  faults = minor_faults() - faults;
  CHECK(faults < 1024);

  int mappings = mapping_count();
  size_t size = first;
  for (int step = 0; step < 300; step++) {
    unsigned char *grown = realloc(big, size + 4096);
    CHECK(grown != NULL);
    if (grown == NULL) return 1;
    big = grown;
    memset(big + size, step, 4096);
    size += 4096;
  }
  int intact = 1;
  for (size_t i = 0; i < first; i++) intact &= big[i] == pattern(i);
  for (int step = 0; step < 300; step++) intact &= big[first + (size_t)step * 4096] == (unsigned char)step;
  CHECK(intact);
  int added = mapping_count() - mappings;
  CHECK(added < 20);
  free(big);
  printf("huge reuse: %ld faults, %d mappings added\n", faults, added);
  return failures != 0;
}
