/* Shared by the benchmark workloads: a fast deterministic random stream and argument parsing.
 * Every workload takes SCALE (work multiplier) and THREADS, and prints a checksum, so that a
 * run under one allocator can be compared with a run under another. */
#ifndef WORKLOAD_COMMON_H
#define WORKLOAD_COMMON_H
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
#endif
