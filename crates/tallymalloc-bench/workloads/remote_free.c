/* Cross-thread frees, for counting instructions with callgrind: the main thread allocates
 * blocks, another thread frees them all in remote_frees(). Usage: remote_free SIZE COUNT
 * [harness] (the harness loop walks the same array without freeing). */
#include <pthread.h>
#include <stdlib.h>

static void **blocks;
static size_t count;

__attribute__((noinline)) void remote_frees(void **list, size_t n) {
  for (size_t i = 0; i < n; i++) free(list[i]);
}

__attribute__((noinline)) void remote_harness(void **list, size_t n) {
  for (size_t i = 0; i < n; i++) {
    void *volatile block = list[i];
    (void)block;
  }
}

static void *freer(void *harness) {
  if (harness) remote_harness(blocks, count); else remote_frees(blocks, count);
  return NULL;
}

int main(int argc, char **argv) {
  size_t size = argc > 1 ? strtoul(argv[1], 0, 10) : 64;
  count = argc > 2 ? strtoul(argv[2], 0, 10) : 100000;
  blocks = malloc(count * sizeof *blocks);
  for (size_t i = 0; i < count; i++) blocks[i] = malloc(size);
  pthread_t thread;
  pthread_create(&thread, NULL, freer, argc > 3 ? (void *)1 : NULL);
  pthread_join(thread, NULL);
  if (argc > 3) for (size_t i = 0; i < count; i++) free(blocks[i]);
  free(blocks);
  return 0;
}
