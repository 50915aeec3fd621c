/* False sharing. cache-thrash: each thread allocates small objects and writes them hard (an
 * allocator that hands neighbouring bytes to different threads makes their caches fight).
 * cache-scratch: the main thread allocates the first object of every thread, which frees it
 * and then allocates and writes its own (passive false sharing). MODE is thrash or scratch. */
#include <pthread.h>
#include <string.h>
#include "common.h"

typedef struct {
  char *inherited;
  long rounds;
  uint64_t checksum;
} worker;

static void *run(void *argument) {
  worker *w = argument;
  free(w->inherited);
  for (long r = 0; r < w->rounds; r++) {
    volatile char *object = must(malloc(8));
    for (int i = 0; i < 8; i++) object[i] = 0;
    for (int i = 0; i < 500; i++) object[i & 7] += (char)i;
    w->checksum += (unsigned char)object[3];
    free((void *)object);
  }
  return NULL;
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  int threads = (int)argument(argc, argv, 2, 4);
  int scratch = argc > 3 && strcmp(argv[3], "scratch") == 0;
  worker *workers = must(calloc((size_t)threads, sizeof *workers));
  for (int i = 0; i < threads; i++) {
    workers[i].inherited = scratch ? must(malloc(8)) : NULL;
    workers[i].rounds = scale * 4000;
  }
  run_threads(threads, run, workers, sizeof *workers);
  uint64_t checksum = 0;
  for (int i = 0; i < threads; i++) checksum += workers[i].checksum;
  free(workers);
  printf("cache-%s %llu\n", scratch ? "scratch" : "thrash", (unsigned long long)checksum);
  return 0;
}
