/* Producer -> consumer (xmalloc style): producers allocate blocks and pass them through
 * single-producer single-consumer rings to consumers on other threads, which free them. Every
 * free is a cross-thread free. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include "common.h"

#define RING 1024

typedef struct {
  _Atomic size_t head, tail;
  void *items[RING];
  long count;
  uint64_t seed, checksum;
} ring;

static void *produce(void *argument) {
  ring *r = argument;
  uint64_t state = r->seed;
  for (long i = 0; i < r->count; i++) {
    size_t size = 16 + next_random(&state) % 240;
    unsigned char *block = must(malloc(size));
    block[0] = (unsigned char)size;
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (head - atomic_load_explicit(&r->tail, memory_order_acquire) == RING) sched_yield();
    r->items[head % RING] = block;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
  }
  return NULL;
}

static void *consume(void *argument) {
  ring *r = argument;
  for (long i = 0; i < r->count; i++) {
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    while (atomic_load_explicit(&r->head, memory_order_acquire) == tail) sched_yield();
    unsigned char *block = r->items[tail % RING];
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    r->checksum += block[0];
    free(block);
  }
  return NULL;
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  int pairs = (int)argument(argc, argv, 2, 4) / 2;
  if (pairs < 1) pairs = 1;
  ring *rings = must(calloc((size_t)pairs, sizeof *rings));
  pthread_t *ids = must(malloc(sizeof *ids * (size_t)pairs * 2));
  for (int i = 0; i < pairs; i++) {
    rings[i].count = scale * 100000;
    rings[i].seed = 0x5DEECE66Dull * (uint64_t)(i + 1);
    pthread_create(&ids[2 * i], NULL, produce, &rings[i]);
    pthread_create(&ids[2 * i + 1], NULL, consume, &rings[i]);
  }
  uint64_t checksum = 0;
  for (int i = 0; i < pairs * 2; i++) pthread_join(ids[i], NULL);
  for (int i = 0; i < pairs; i++) checksum += rings[i].checksum;
  free(rings);
  free(ids);
  printf("xmalloc %llu\n", (unsigned long long)checksum);
  return 0;
}
