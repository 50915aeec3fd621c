/* Threads come and go (4 at a time, argv[1] in all, 2000 by default), each allocating and
 * freeing a few hundred blocks before it exits. In debug mode the freed blocks wait in the
 * quarantine after their thread has gone, so its segments are abandoned with blocks in use;
 * they must be taken up again once those blocks leave, or memory grows with every thread.
 * Prints the peak resident set (ru_maxrss, in KiB), without stdio's buffer. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void *work(void *seed_pointer) {
  unsigned seed = (unsigned)(size_t)seed_pointer;
  void *blocks[300];
  for (int i = 0; i < 300; i++) {
    size_t size = 16 + rand_r(&seed) % 2000;
    blocks[i] = malloc(size);
    memset(blocks[i], i, size);
  }
  for (int i = 0; i < 300; i++) free(blocks[i]);
  return NULL;
}

int main(int argc, char **argv) {
  int total = argc > 1 ? atoi(argv[1]) : 2000;
  for (int started = 0; started < total; started += 4) {
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, work, (void *)(size_t)(started + i + 1));
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
  }
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  char line[64];
  int length = snprintf(line, sizeof line, "peak KiB %ld\n", usage.ru_maxrss);
  return write(1, line, (size_t)length) == length ? 0 : 2;
}
