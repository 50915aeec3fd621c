/* malloc+free pairs of one size, for counting instructions with callgrind through the C ABI
 * (scripts/fastpath-count and tallymalloc-bench). Usage: fastpath SIZE PAIRS [harness] */
#include <stdlib.h>

__attribute__((noinline)) void pairs(size_t count, size_t size) {
  for (size_t i = 0; i < count; i++) {
    void *volatile block = malloc(size);
    free(block);
  }
}

__attribute__((noinline)) void harness(size_t count, size_t size) {
  for (size_t i = 0; i < count; i++) {
    void *volatile block = (void *)size;
    (void)block;
  }
}

int main(int argc, char **argv) {
  size_t size = argc > 1 ? strtoul(argv[1], 0, 10) : 16;
  size_t count = argc > 2 ? strtoul(argv[2], 0, 10) : 1000000;
  for (int i = 0; i < 1000; i++) free(malloc(size));
  if (argc > 3) harness(count, size); else pairs(count, size);
  return 0;
}
