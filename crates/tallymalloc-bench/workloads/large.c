/* Large blocks from 64 KiB to 16 MiB, grown with realloc and touched as they grow, several
 * alive at once. */
#include <string.h>
#include "common.h"

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  uint64_t state = 42, checksum = 0;
  char *live[8] = {0};
  size_t sizes[8] = {0};
  for (long round = 0; round < scale * 12; round++) {
    int slot = (int)(next_random(&state) % 8);
    free(live[slot]);
    size_t size = 64 * 1024;
    char *block = must(malloc(size));
    memset(block, 1, size);
    size_t limit = (size_t)1 << (17 + next_random(&state) % 8); /* 128 KiB .. 16 MiB */
    while (size < limit) {
      size_t grown = size + size / 2 + 4096;
      block = must(realloc(block, grown));
      memset(block + size, (int)(round & 0xff), grown - size);
      size = grown;
    }
    checksum += (unsigned char)block[size - 1] + size;
    live[slot] = block;
    sizes[slot] = size;
  }
  for (int i = 0; i < 8; i++) free(live[i]);
  (void)sizes;
  printf("large %llu\n", (unsigned long long)checksum);
  return 0;
}
