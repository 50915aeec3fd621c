/* Three threads allocate and free without pause, a fourth reads the stats, and the background
 * purger runs, while the main thread forks (300 times, or as many as the first argument says).
 * Each child allocates and frees, frees blocks its parent allocated before the fork, takes the
 * locks of every part of the allocator it can reach (stats, domains, collection, debug mode's
 * check), and exits 0. A deadlock (a lock held across fork by a thread that does not exist in
 * the child, such as the stats sampler's or debug mode's) shows as a timeout. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 3

static atomic_int stop;

/* The library's functions beyond malloc's, found once in main whether the library is linked or
 * preloaded. */
static size_t (*stats_json)(char *, size_t);
static int (*domain_register)(const char *);
static void (*collect)(void);
static size_t (*debug_check)(void);

static int find_library_functions(void) {
  stats_json = (size_t(*)(char *, size_t))dlsym(RTLD_DEFAULT, "tm_stats_json");
  domain_register = (int (*)(const char *))dlsym(RTLD_DEFAULT, "tm_domain_register");
  collect = (void (*)(void))dlsym(RTLD_DEFAULT, "tm_collect");
  debug_check = (size_t(*)(void))dlsym(RTLD_DEFAULT, "tm_debug_check");
  return stats_json && domain_register && collect && debug_check;
}

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

/* Takes the locks that malloc and free do not, without pause (the stats, the domain registry,
 * collection, debug mode's whole-heap check), so that they are often held when the main thread
 * forks. */
static void *take_other_locks(void *unused) {
  (void)unused;
  for (unsigned round = 0; !atomic_load(&stop); round++) {
    stats_json(NULL, 0);
    domain_register("parent");
    if (round % 16 == 0) collect();
    if (round % 16 == 8) debug_check();
  }
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

/* What a child does: everything that takes one of the allocator's locks. */
static int child_work(char *from_parent, char *huge_from_parent) {
  void *blocks[200];
  for (int i = 0; i < 200; i++) blocks[i] = malloc((size_t)i * 37);
  for (int i = 0; i < 200; i++) free(blocks[i]);
  int ok = strcmp(from_parent, "parent block") == 0 && huge_from_parent[0] == 'h';
  free(from_parent);
  free(huge_from_parent);
  char *late = malloc(5000);
  ok = ok && late != NULL;
  late = realloc(late, 9u << 20);
  ok = ok && late != NULL;
  free(late);
  ok = ok && stats_json(NULL, 0) > 100;
  ok = ok && domain_register("forked") >= 0;
  collect();
  ok = ok && debug_check() == 0;
  return ok;
}

int main(int argc, char **argv) {
  int forks = argc > 1 ? atoi(argv[1]) : 300;
  if (!find_library_functions()) {
    fprintf(stderr, "fork: the tm_* functions are not found: is tallymalloc loaded?\n");
    return 4;
  }
  start_the_purger();
  pthread_t workers[WORKERS], reader;
  for (size_t i = 0; i < WORKERS; i++) pthread_create(&workers[i], NULL, churn, (void *)(i + 1));
  pthread_create(&reader, NULL, take_other_locks, NULL);
  int failed = 0;
  for (int round = 0; round < forks; round++) {
    char *from_parent = malloc(100 + round);
    strcpy(from_parent, "parent block");
    char *huge_from_parent = malloc(3u << 20);
    huge_from_parent[0] = 'h';
    pid_t child = fork();
    if (child == 0) _exit(child_work(from_parent, huge_from_parent) ? 0 : 3);
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
  printf("fork: %d of %d children exited cleanly\n", forks - failed, forks);
  return failed ? 1 : 0;
}
