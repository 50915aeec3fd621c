/* Run with TALLYMALLOC_FAULT set (see c_programs.rs): the OS layer refuses mapping calls on
 * purpose. Every allocation must then fail cleanly (NULL with errno ENOMEM), a failed realloc
 * must leave its block whole and still ours, and once the faults stop (mode "recover") every
 * allocation must succeed again. Prints one summary line; exits 1 at the first broken rule. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCKS 1200

static void fail(const char *what, long index) {
  char line[160];
  int n = snprintf(line, sizeof line, "FAILED: %s (operation %ld)\n", what, index);
  write(1, line, (size_t)n);
  _exit(1);
}

static size_t size_for(long i) {
  static const size_t sizes[] = {24, 1000, 20000, 300000, 1 << 20, 3 << 20};
  return sizes[i % 6];
}

int main(int argc, char **argv) {
  int recover = argc > 1 && strcmp(argv[1], "recover") == 0;
  static unsigned char *blocks[BLOCKS];
  static size_t sizes[BLOCKS];
  long failed = 0, succeeded = 0, realloc_failed = 0, realloc_moved = 0, last_failure = -1;
  for (long i = 0; i < BLOCKS; i++) {
    size_t size = size_for(i);
    errno = 0;
    unsigned char *block = malloc(size);
    if (!block) {
      if (errno != ENOMEM) fail("malloc returned NULL without ENOMEM", i);
      failed++;
      last_failure = i;
      continue;
    }
    succeeded++;
    memset(block, (int)(i & 0xff), size);
    blocks[i] = block;
    sizes[i] = size;
    /* Grow every fourth block: a failure must leave it untouched. */
    if (i % 4 == 0) {
      errno = 0;
      unsigned char *grown = realloc(block, size * 3);
      if (!grown) {
        if (errno != ENOMEM) fail("realloc returned NULL without ENOMEM", i);
        realloc_failed++;
        last_failure = i;
        for (size_t b = 0; b < size; b += 997)
          if (block[b] != (unsigned char)(i & 0xff)) fail("a failed realloc changed the block", i);
      } else {
        for (size_t b = 0; b < size; b += 997)
          if (grown[b] != (unsigned char)(i & 0xff)) fail("realloc lost the contents", i);
        memset(grown, (int)(i & 0xff), size * 3);
        blocks[i] = grown;
        sizes[i] = size * 3;
        realloc_moved++;
      }
    }
  }
  for (long i = 0; i < BLOCKS; i++) {
    if (!blocks[i]) continue;
    for (size_t b = 0; b < sizes[i]; b += 1009)
      if (blocks[i][b] != (unsigned char)(i & 0xff)) fail("a block changed while others failed", i);
    free(blocks[i]);
  }
  if (failed + realloc_failed == 0) fail("no fault was injected", 0);
  if (succeeded == 0) fail("nothing succeeded", 0);
  if (recover && last_failure > BLOCKS / 2) fail("still failing after the faults stopped", last_failure);
  printf("%ld allocations failed cleanly, %ld succeeded; %ld reallocs failed keeping their block, "
         "%ld grew\n", failed, succeeded, realloc_failed, realloc_moved);
  return 0;
}
