/* Debug mode under threads: WORKERS threads allocate, resize and free blocks of mixed sizes
 * without pause, handing some to the next thread to free (cross-thread frees), and each
 * checks the bytes of every block it owns; threads come and go, so blocks outlive the threads
 * that allocated them and freed ones wait in the quarantine of threads that have exited.
 * Every block is freed by the end: debug mode must find nothing, and the quarantine must stay
 * within its budget (the test sets a small one and reads the summary at exit).
 *
 * argv[1]: rounds of thread generations (default 6). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKERS 8
#define SLOTS 256
#define HANDOFF 64

struct worker {
  unsigned seed;
  int index;
  unsigned char *handoff[HANDOFF]; /* blocks the previous worker hands to this one */
  size_t handoff_size[HANDOFF];
  pthread_mutex_t lock;
};

static struct worker workers[WORKERS];
static int failures;

static size_t pick_size(unsigned *seed) {
  unsigned r = rand_r(seed);
  if (r % 64 == 0) return 4096 + r % 200000; /* now and then a large block */
  return 1 + r % 700;
}

static void fill(unsigned char *block, size_t size, int mark) { memset(block, mark, size); }

static int holds(const unsigned char *block, size_t size, int mark) {
  for (size_t i = 0; i < size; i++)
    if (block[i] != (unsigned char)mark) return 0;
  return 1;
}

static void *work(void *argument) {
  struct worker *self = argument;
  struct worker *next = &workers[(self->index + 1) % WORKERS];
  unsigned char *blocks[SLOTS] = {0};
  size_t sizes[SLOTS] = {0};
  for (int op = 0; op < 4000; op++) {
    int slot = rand_r(&self->seed) % SLOTS;
    int mark = slot & 0xff;
    if (blocks[slot] && !holds(blocks[slot], sizes[slot], mark)) __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
    switch (rand_r(&self->seed) % 4) {
      case 0: { /* resize, keeping the contents */
        size_t size = pick_size(&self->seed);
        unsigned char *moved = realloc(blocks[slot], size);
        if (!moved) break;
        size_t kept = sizes[slot] < size ? sizes[slot] : size;
        if (blocks[slot] && !holds(moved, kept, mark)) __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
        fill(moved, size, mark);
        blocks[slot] = moved;
        sizes[slot] = size;
        break;
      }
      case 1: { /* hand the block to the next worker, which frees it */
        if (!blocks[slot]) break;
        pthread_mutex_lock(&next->lock);
        int place = rand_r(&self->seed) % HANDOFF;
        free(next->handoff[place]);
        next->handoff[place] = blocks[slot];
        next->handoff_size[place] = sizes[slot];
        pthread_mutex_unlock(&next->lock);
        blocks[slot] = NULL;
        sizes[slot] = 0;
        break;
      }
      default: { /* free and allocate anew */
        free(blocks[slot]);
        sizes[slot] = pick_size(&self->seed);
        blocks[slot] = rand_r(&self->seed) % 8 ? malloc(sizes[slot]) : calloc(1, sizes[slot]);
        if (blocks[slot]) fill(blocks[slot], sizes[slot], mark);
        else sizes[slot] = 0;
      }
    }
    if (op % 500 == 0) { /* free what the previous worker handed over */
      pthread_mutex_lock(&self->lock);
      for (int i = 0; i < HANDOFF; i++) {
        free(self->handoff[i]);
        self->handoff[i] = NULL;
      }
      pthread_mutex_unlock(&self->lock);
    }
  }
  for (int i = 0; i < SLOTS; i++) free(blocks[i]);
  return NULL;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 6;
  for (int i = 0; i < WORKERS; i++) {
    workers[i].index = i;
    pthread_mutex_init(&workers[i].lock, NULL);
  }
  for (int round = 0; round < rounds; round++) {
    pthread_t threads[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
      workers[i].seed = (unsigned)(round * WORKERS + i + 1);
      pthread_create(&threads[i], NULL, work, &workers[i]);
    }
    for (int i = 0; i < WORKERS; i++) pthread_join(threads[i], NULL);
    /* Blocks handed over by threads that have exited, freed by this one. */
    for (int i = 0; i < WORKERS; i++)
      for (int j = 0; j < HANDOFF; j++) {
        free(workers[i].handoff[j]);
        workers[i].handoff[j] = NULL;
      }
  }
  /* Many small frees, then large ones in a row: each large one must push enough of the small
   * ones out of this thread's quarantine to stay within the budget. */
  void *small[2000], *large[12];
  for (int i = 0; i < 2000; i++) small[i] = malloc(100);
  for (int i = 0; i < 12; i++) large[i] = malloc(300000);
  for (int i = 0; i < 2000; i++) free(small[i]);
  for (int i = 0; i < 12; i++) free(large[i]);
  /* Written without stdio, whose buffer glibc never frees (a leak the report would list). */
  char line[64];
  int length = snprintf(line, sizeof line, "debug-threads: %d rounds, %d failures\n", rounds, failures);
  if (write(1, line, (size_t)length) != length) return 2;
  return failures != 0;
}
