/* Threads allocate and free without pause, and the background purger runs, while the main
 * thread forks 100 times. Each child
 * allocates, frees a block its parent allocated before the fork, reads the stats, and exits 0.
 * A deadlock (a lock held across fork by a thread that does not exist in the child, such as
 * the stats sampler's) shows as a timeout. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 4
#define FORKS 100

static atomic_int stop;

static void *churn(void *seed_pointer) {
  unsigned seed = (unsigned)(size_t)seed_pointer;
  void *kept[64] = {0};
  while (!atomic_load(&stop)) {
    unsigned slot = rand_r(&seed) % 64;
    free(kept[slot]);
    size_t size = rand_r(&seed) % 4 == 0 ? rand_r(&seed) % 300000 : rand_r(&seed) % 512;
    kept[slot] = malloc(size);
    if (kept[slot]) memset(kept[slot], (int)slot, size);
  }
  for (int i = 0; i < 64; i++) free(kept[i]);
  return NULL;
}

/* Reads the stats without pause, so the stats lock is often held when the main thread forks. */
static void *read_stats(void *unused) {
  (void)unused;
  size_t (*stats_json)(char *, size_t) =
      (size_t(*)(char *, size_t))dlsym(RTLD_DEFAULT, "tm_stats_json");
  while (stats_json && !atomic_load(&stop)) stats_json(NULL, 0);
  return NULL;
}

/* Grows the process past the background purger's threshold (64 MiB committed), then frees it
 * all, so that the purger runs, and purges, while the forks below happen. */
static void start_the_purger(void) {
  enum { COUNT = 96 * 1024 };
  static void *blocks[COUNT];
  for (int i = 0; i < COUNT; i++) {
    blocks[i] = malloc(1024);
    memset(blocks[i], 1, 1024);
  }
  for (int i = 0; i < COUNT; i++) free(blocks[i]);
}

int main(void) {
  start_the_purger();
  pthread_t workers[WORKERS], reader;
  for (size_t i = 0; i < WORKERS; i++) pthread_create(&workers[i], NULL, churn, (void *)(i + 1));
  pthread_create(&reader, NULL, read_stats, NULL);
  int failed = 0;
  for (int round = 0; round < FORKS; round++) {
    char *from_parent = malloc(100 + round);
    strcpy(from_parent, "parent block");
    char *huge_from_parent = malloc(3u << 20);
    huge_from_parent[0] = 'h';
    pid_t child = fork();
    if (child == 0) {
      void *blocks[200];
      for (int i = 0; i < 200; i++) blocks[i] = malloc((size_t)i * 37);
      for (int i = 0; i < 200; i++) free(blocks[i]);
      int ok = strcmp(from_parent, "parent block") == 0 && huge_from_parent[0] == 'h';
      free(from_parent);
      free(huge_from_parent);
      char *late = malloc(5000);
      ok = ok && late != NULL;
      free(late);
      /* Found whether the library is linked or preloaded. */
      size_t (*stats_json)(char *, size_t) =
          (size_t(*)(char *, size_t))dlsym(RTLD_DEFAULT, "tm_stats_json");
      ok = ok && stats_json != NULL && stats_json(NULL, 0) > 100;
      _exit(ok ? 0 : 3);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
      fprintf(stderr, "fork round %d: child failed (status %d)\n", round, status);
      failed++;
    }
    free(from_parent);
    free(huge_from_parent);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < WORKERS; i++) pthread_join(workers[i], NULL);
  pthread_join(reader, NULL);
  printf("fork: %d of %d children exited cleanly\n", FORKS - failed, FORKS);
  return failed ? 1 : 0;
}
