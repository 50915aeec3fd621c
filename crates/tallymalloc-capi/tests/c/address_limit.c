/* Under an address-space limit (RLIMIT_AS), allocation must end in NULL with errno ENOMEM,
 * never a crash, and succeed again once memory is freed. Small, large and huge blocks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_BLOCKS 200000

int main(void) {
  struct rlimit limit = {256UL << 20, 256UL << 20};
  if (setrlimit(RLIMIT_AS, &limit) != 0) { perror("setrlimit"); return 1; }
  static void *blocks[MAX_BLOCKS];
  const size_t sizes[] = {4000, 60000, 300000, 2 << 20};
  for (int round = 0; round < 2; round++) {
    for (int kind = 0; kind < 4; kind++) {
      long count = 0;
      for (; count < MAX_BLOCKS; count++) {
        errno = 0;
        blocks[count] = malloc(sizes[kind]);
        if (!blocks[count]) break;
        memset(blocks[count], 0x3C, sizes[kind]);
      }
      if (count == MAX_BLOCKS) { printf("FAILED: the limit was never reached\n"); return 1; }
      if (errno != ENOMEM) { printf("FAILED: NULL without ENOMEM (%d)\n", errno); return 1; }
      if (count == 0) { printf("FAILED: nothing fit under the limit\n"); return 1; }
      /* A failing realloc keeps its block. */
      unsigned char *first = blocks[0];
      if (realloc(first, 1UL << 30) != NULL) { printf("FAILED: 1 GiB fit under 256 MiB\n"); return 1; }
      if (first[0] != 0x3C || first[sizes[kind] - 1] != 0x3C) { printf("FAILED: realloc spoiled the block\n"); return 1; }
      for (long i = 0; i < count; i++) free(blocks[i]);
      if (round == 1) printf("%zu-byte blocks: %ld fit under the limit\n", sizes[kind], count);
    }
  }
  printf("the limit was reached 8 times, cleanly\n");
  return 0;
}
