/* Mixed sizes with realloc across many threads (mstress / rptest style): each thread keeps a
 * working set, and on every step frees, allocates or resizes a random entry; some blocks are
 * swapped into a shared exchange, so another thread frees or resizes them. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "common.h"

#define WORKING_SET 2000
#define EXCHANGE 256

static _Atomic(char *) exchange[EXCHANGE];

static size_t pick_size(uint64_t *state) {
  uint64_t r = next_random(state) % 1000;
  if (r < 700) return 8 + r % 120;
  if (r < 950) return 128 + next_random(state) % 4000;
  if (r < 995) return 4096 + next_random(state) % 60000;
  return 65536 + next_random(state) % 400000;
}

typedef struct {
  long steps;
  uint64_t state, checksum;
} worker;

static void *run(void *argument) {
  worker *w = argument;
  char **set = must(calloc(WORKING_SET, sizeof *set));
  for (long i = 0; i < w->steps; i++) {
    /* Every random value is drawn whatever happens, so the sequence (and the checksum of
     * requested sizes) does not depend on what other threads swapped in. */
    size_t slot = next_random(&w->state) % WORKING_SET;
    uint64_t action = next_random(&w->state) % 10;
    size_t size = pick_size(&w->state);
    size_t partner = next_random(&w->state) % EXCHANGE;
    if (action < 4) {
      free(set[slot]);
      set[slot] = must(malloc(size));
      set[slot][0] = (char)size;
    } else if (action < 7 && set[slot]) {
      set[slot] = must(realloc(set[slot], size));
      set[slot][size - 1] = 1;
    } else if (action < 9) {
      free(set[slot]);
      set[slot] = NULL;
    } else if (set[slot]) {
      set[slot] = atomic_exchange(&exchange[partner], set[slot]);
    }
    w->checksum += size;
  }
  for (int i = 0; i < WORKING_SET; i++) free(set[i]);
  free(set);
  return NULL;
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  int threads = (int)argument(argc, argv, 2, 4);
  worker *workers = must(calloc((size_t)threads, sizeof *workers));
  for (int i = 0; i < threads; i++) {
    workers[i].steps = scale * 60000;
    workers[i].state = 0xABCDEFull * (uint64_t)(i + 3);
  }
  run_threads(threads, run, workers, sizeof *workers);
  uint64_t checksum = 0;
  for (int i = 0; i < threads; i++) checksum += workers[i].checksum;
  for (int i = 0; i < EXCHANGE; i++) free(atomic_load(&exchange[i]));
  free(workers);
  printf("mstress %llu\n", (unsigned long long)checksum);
  return 0;
}
