/* Known allocations for `tallymalloc run`: 1000 blocks of 100 bytes kept to the end, 500 more
 * allocated and freed, then an exit status of 3. With an argument, the kept blocks are
 * allocated over that many milliseconds, so that the timeline has samples to show. */
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  static void *kept[1000];
  long spread_ms = argc > 1 ? atol(argv[1]) : 0;
  for (int i = 0; i < 1000; i++) {
    kept[i] = malloc(100);
    if (spread_ms > 0 && i % 100 == 99) usleep((useconds_t)(spread_ms * 100));
  }
  for (int i = 0; i < 500; i++) {
    void *volatile block = malloc(4000); /* volatile: the compiler may not elide the pair */
    free(block);
  }
  return kept[999] ? 3 : 1;
}
