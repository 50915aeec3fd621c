/* Frees, reallocs and sizes of pointers inside blocks (not their starts), in every kind of
 * block: each is reported and ignored, and no later allocation overlaps a live block.
 *   interior all   every case, printing "checks passed" (normal mode: reports, carries on)
 *   interior one   the three lines, then "survived" (secure modes abort before) */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      printf("FAILED line %d: %s\n", __LINE__, #cond);               \
      failures++;                                                    \
    }                                                                \
  } while (0)

static int intact(const unsigned char *block, size_t size, unsigned char seed) {
  for (size_t i = 0; i < size; i++)
    if (block[i] != (unsigned char)(seed + i)) return 0;
  return 1;
}

static void fill(unsigned char *block, size_t size, unsigned char seed) {
  for (size_t i = 0; i < size; i++) block[i] = (unsigned char)(seed + i);
}

/* Allocates neighbours of `size`, frees an interior pointer of one at `offset`, then checks
 * that the next allocations of the size never hand out memory of a live block. */
static void interior_free(size_t size, size_t offset) {
  enum { COUNT = 8 };
  unsigned char *live[COUNT];
  for (int i = 0; i < COUNT; i++) {
    live[i] = malloc(size);
    fill(live[i], size, (unsigned char)i);
  }
  unsigned char *inside = live[3] + offset;
  printf("interior %zu+%zu at %p\n", size, offset, (void *)inside);
  fflush(stdout);
  free(inside);
  errno = 0;
  CHECK(realloc(inside, size * 2) == NULL && errno == EINVAL);
  CHECK(malloc_usable_size(inside) == 0);
  unsigned char *fresh[COUNT];
  for (int i = 0; i < COUNT; i++) {
    fresh[i] = malloc(size);
    for (int j = 0; j < COUNT; j++) {
      int overlaps = fresh[i] < live[j] + size && live[j] < fresh[i] + size;
      CHECK(!overlaps);
    }
    memset(fresh[i], 0xEE, size);
  }
  for (int i = 0; i < COUNT; i++) {
    CHECK(intact(live[i], size, (unsigned char)i));
    free(live[i]);
    free(fresh[i]);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "one") == 0) {
    char *a = malloc(100), *b = malloc(100);
    memset(b, 'b', 100);
    printf("interior %p\n", (void *)(a + 16));
    fflush(stdout);
    free(a + 16);
    char *c = malloc(100);
    memset(c, 'c', 100);
    int b_intact = 1;
    for (int i = 0; i < 100; i++) b_intact &= b[i] == 'b';
    printf("%s\n", b_intact ? "b intact, survived" : "b OVERWRITTEN, survived");
    return 0;
  }
  /* Small, medium and large classes, and huge blocks; offsets from 8 bytes to the end. */
  size_t sizes[] = {16, 48, 100, 1000, 5000, 20000, 100000, 400000, 3 << 20};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    size_t size = sizes[s];
    size_t offsets[] = {8, 16, 48, size / 2 & ~(size_t)15, size - 16};
    for (size_t o = 0; o < sizeof offsets / sizeof *offsets; o++)
      if (offsets[o] > 0 && offsets[o] < size) interior_free(size, offsets[o]);
  }
  /* Blocks handed out at an offset for alignment still free by their own address. */
  for (size_t align = 32; align <= 4096; align *= 2) {
    void *aligned = aligned_alloc(align, 200);
    CHECK(aligned != NULL && (size_t)aligned % align == 0 && malloc_usable_size(aligned) >= 200);
    void *grown = realloc(aligned, 5000);
    CHECK(grown != NULL);
    free(grown);
    void *again = NULL;
    CHECK(posix_memalign(&again, align, 100) == 0);
    free(again);
  }
  printf("%s\n", failures ? "checks FAILED" : "checks passed");
  return failures != 0;
}
