/* Shared by the benchmark workloads: a fast deterministic random stream and argument parsing.
 * Every workload takes SCALE (work multiplier) and THREADS, and prints a checksum, so that a
 * run under one allocator can be compared with a run under another. */
#ifndef WORKLOAD_COMMON_H
#define WORKLOAD_COMMON_H
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline uint64_t next_random(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

static inline long argument(int argc, char **argv, int index, long fallback) {
  return argc > index ? strtol(argv[index], NULL, 10) : fallback;
}

static inline void *must(void *block) {
  if (!block) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return block;
}

/* Runs run(&items[i]) on `threads` new threads, one item each, and waits for them all. Items
 * are `item_size` bytes apart. */
static inline void run_threads(int threads, void *(*run)(void *), void *items, size_t item_size) {
  pthread_t *ids = must(malloc(sizeof *ids * (size_t)threads));
  for (int i = 0; i < threads; i++) {
    if (pthread_create(&ids[i], NULL, run, (char *)items + (size_t)i * item_size) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      exit(1);
    }
  }
  for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
  free(ids);
}
#endif
