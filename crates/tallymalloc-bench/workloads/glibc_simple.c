/* glibc's bench-malloc-simple pattern: single-thread loops that allocate a batch of blocks of
 * one size and free them all, for several sizes and batch lengths. */
#include "common.h"

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  static void *blocks[1024];
  const size_t sizes[] = {16, 64, 256, 1024, 4096};
  const int batches[] = {25, 100, 400, 1024};
  uint64_t checksum = 0;
  for (long round = 0; round < scale * 40; round++) {
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
        for (int i = 0; i < batches[b]; i++) blocks[i] = must(malloc(sizes[s]));
        checksum += (uintptr_t)blocks[batches[b] - 1] & 0xf0;
        for (int i = 0; i < batches[b]; i++) free(blocks[i]);
      }
    }
  }
  printf("glibc-simple %llu\n", (unsigned long long)(checksum != 0));
  return 0;
}
