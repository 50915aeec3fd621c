/* Thread churn: threads are created and end constantly, each allocating a little, and
 * leaving some of it for the next thread to free. */
#include <pthread.h>
#include "common.h"

typedef struct {
  char *left[64];
  uint64_t state, checksum;
} baton;

static void *run(void *argument) {
  baton *b = argument;
  for (int i = 0; i < 64; i++) {
    if (b->left[i]) b->checksum += (unsigned char)b->left[i][0];
    free(b->left[i]);
  }
  char *scratch[200];
  for (int i = 0; i < 200; i++) scratch[i] = must(malloc(16 + next_random(&b->state) % 2000));
  for (int i = 0; i < 200; i++) free(scratch[i]);
  for (int i = 0; i < 64; i++) {
    size_t size = 8 + next_random(&b->state) % 500;
    b->left[i] = must(malloc(size));
    b->left[i][0] = (char)size;
  }
  return NULL;
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  int threads = (int)argument(argc, argv, 2, 4);
  baton *batons = must(calloc((size_t)threads, sizeof *batons));
  pthread_t *ids = must(malloc(sizeof *ids * (size_t)threads));
  for (int i = 0; i < threads; i++) batons[i].state = (uint64_t)i * 7919 + 1;
  for (long round = 0; round < scale * 50; round++) {
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, run, &batons[(i + round) % threads]);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
  }
  uint64_t checksum = 0;
  for (int i = 0; i < threads; i++) {
    for (int j = 0; j < 64; j++) free(batons[i].left[j]);
    checksum += batons[i].checksum;
  }
  free(batons);
  free(ids);
  printf("churn %llu\n", (unsigned long long)checksum);
  return 0;
}
