/* glibc's bench-malloc-thread pattern: every thread keeps a working set and replaces random
 * entries with blocks of random size (4 B to 32 KiB, skewed small), all in parallel. */
#include <pthread.h>
#include "common.h"

#define WORKING_SET 1024

typedef struct {
  long iterations;
  uint64_t state, checksum;
} worker;

static void *run(void *argument) {
  worker *w = argument;
  void *set[WORKING_SET] = {0};
  for (long i = 0; i < w->iterations; i++) {
    size_t slot = next_random(&w->state) % WORKING_SET;
    free(set[slot]);
    uint64_t r = next_random(&w->state);
    size_t size = 4 + (r % 100 < 90 ? r % 512 : r % 32768);
    char *block = must(malloc(size));
    block[0] = (char)size;
    w->checksum += (unsigned char)block[0];
    set[slot] = block;
  }
  for (int i = 0; i < WORKING_SET; i++) free(set[i]);
  return NULL;
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  int threads = (int)argument(argc, argv, 2, 4);
  worker *workers = must(calloc((size_t)threads, sizeof *workers));
  for (int i = 0; i < threads; i++) {
    workers[i].iterations = scale * 150000;
    workers[i].state = (uint64_t)i * 104729 + 17;
  }
  run_threads(threads, run, workers, sizeof *workers);
  uint64_t checksum = 0;
  for (int i = 0; i < threads; i++) checksum += workers[i].checksum;
  free(workers);
  printf("glibc-thread %llu\n", (unsigned long long)checksum);
  return 0;
}
