/* Thousands of threads start, allocate, hand some blocks to the main thread, and exit. The
 * main thread checks and frees what it was handed. Exercises heap start, abandonment at exit
 * and adoption. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4000
#define BATCH 50
#define HANDED 16

struct work {
  int id;
  char *handed[HANDED];
};

static void *run(void *argument) {
  struct work *work = argument;
  void *scratch[100];
  for (int i = 0; i < 100; i++) scratch[i] = malloc((size_t)(i * 53 + work->id) % 2000);
  for (int i = 0; i < 100; i++) free(scratch[i]);
  for (int i = 0; i < HANDED; i++) {
    work->handed[i] = malloc(64 + (size_t)i * 100);
    snprintf(work->handed[i], 64, "thread %d block %d", work->id, i);
  }
  return NULL;
}

int main(void) {
  static struct work works[BATCH];
  pthread_t threads[BATCH];
  int bad = 0;
  for (int started = 0; started < THREADS; started += BATCH) {
    for (int i = 0; i < BATCH; i++) {
      works[i].id = started + i;
      if (pthread_create(&threads[i], NULL, run, &works[i]) != 0) return 2;
    }
    for (int i = 0; i < BATCH; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < BATCH; i++) {
      for (int j = 0; j < HANDED; j++) {
        char expected[64];
        snprintf(expected, sizeof expected, "thread %d block %d", works[i].id, j);
        bad += strcmp(expected, works[i].handed[j]) != 0;
        free(works[i].handed[j]);
      }
    }
  }
  printf("threads: %d threads ran, %d corrupt blocks\n", THREADS, bad);
  return bad ? 1 : 0;
}
