/* The sizing idiom of tm_stats_json and tm_stats_text, as the header documents it, while
 * other threads allocate and free: the first call's answer, plus one for the NUL, is always
 * enough for the second call's whole document, although the buffer's own malloc and the other
 * threads change the figures in between. Prints every JSON document between markers, for the
 * test to parse. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tallymalloc.h"

static atomic_int stop;

static void *churn(void *seed) {
  unsigned state = (unsigned)(size_t)seed;
  void *held[64] = {0};
  while (!atomic_load(&stop)) {
    state = state * 1103515245u + 12345u;
    unsigned slot = (state >> 8) % 64;
    free(held[slot]);
    /* Sizes over every kind of class, so the histogram's figures keep changing width. */
    held[slot] = malloc(1 + (state >> 12) % ((state & 1) ? 300 : 200000));
  }
  for (int i = 0; i < 64; i++) free(held[i]);
  return NULL;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 400;
  pthread_t threads[3];
  for (size_t i = 0; i < 3; i++) pthread_create(&threads[i], NULL, churn, (void *)(i + 1));
  int failures = 0;
  for (int round = 0; round < rounds; round++) {
    size_t needed = tm_stats_json(NULL, 0);
    char *json = malloc(needed + 1);
    size_t written = tm_stats_json(json, needed + 1);
    if (written > needed || strlen(json) != written) {
      printf("round %d: JSON of %zu bytes for a buffer sized %zu\n", round, written, needed);
      failures++;
    }
    printf("JSON-BEGIN\n%s\nJSON-END\n", json);
    free(json);

    needed = tm_stats_text(NULL, 0);
    char *text = malloc(needed + 1);
    written = tm_stats_text(text, needed + 1);
    if (written > needed || strlen(text) != written || strstr(text, " threads seen\n") == NULL) {
      printf("round %d: table of %zu bytes for a buffer sized %zu\n", round, written, needed);
      failures++;
    }
    free(text);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
  printf("%d rounds, %s\n", rounds, failures ? "checks FAILED" : "checks passed");
  return failures != 0;
}
