/* Larson: a server-like pattern. Each thread owns a table of blocks of random sizes and
 * replaces random entries; after a burst the threads exit and a new generation inherits their
 * tables, so blocks are freed by threads other than the one that allocated them. */
#include <pthread.h>
#include "common.h"

#define SLOTS 1000

typedef struct {
  char *slots[SLOTS];
  uint64_t state;
  long operations;
  uint64_t checksum;
} table;

static void *serve(void *argument) {
  table *t = argument;
  for (long i = 0; i < t->operations; i++) {
    size_t slot = next_random(&t->state) % SLOTS;
    if (t->slots[slot]) t->checksum += (unsigned char)t->slots[slot][0];
    free(t->slots[slot]);
    size_t size = 8 + next_random(&t->state) % 1000;
    t->slots[slot] = must(malloc(size));
    t->slots[slot][0] = (char)size;
  }
  return NULL;
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  int threads = (int)argument(argc, argv, 2, 4);
  table *tables = must(calloc((size_t)threads, sizeof *tables));
  for (int i = 0; i < threads; i++) {
    tables[i].state = 0x1234567ull * (uint64_t)(i + 1);
    tables[i].operations = 20000;
  }
  /* Each generation of threads inherits the tables of the one before. */
  for (long generation = 0; generation < scale; generation++) {
    run_threads(threads, serve, tables, sizeof *tables);
  }
  uint64_t checksum = 0;
  for (int i = 0; i < threads; i++) {
    for (int s = 0; s < SLOTS; s++) free(tables[i].slots[s]);
    checksum += tables[i].checksum;
  }
  free(tables);
  printf("larson %llu\n", (unsigned long long)checksum);
  return 0;
}
