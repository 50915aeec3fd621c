/* The profiling API: bad arguments refused with errno, a forked child that profiles, then
 * 256 MiB allocated from one site in blocks freed at once, 64 MiB from another, and the profile written with tm_profile_write and
 * read back here: the sites whose stacks pass through each function must hold about their
 * bytes (within 20%: about 640 samples at the default rate, so 20% is over four standard
 * errors). Prints "profile checks passed" and the two estimates. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tallymalloc.h"

static uintptr_t inside_big, inside_small;

__attribute__((noinline)) static uintptr_t here(void) {
  void *frame[2];
  return tm_backtrace(frame, 2) == 2 ? (uintptr_t)frame[1] : 0;
}

__attribute__((noinline)) static void big_site(void) {
  inside_big = here();
  for (int i = 0; i < (256 << 20) / 2048; i++) {
    char *volatile block = malloc(2048);
    block[0] = 1;
    free(block);
  }
}

__attribute__((noinline)) static void small_site(void) {
  inside_small = here();
  for (int i = 0; i < (64 << 20) / 64; i++) {
    char *volatile block = malloc(64);
    block[0] = 1;
    free(block);
  }
}

static uintptr_t distance(uintptr_t a, uintptr_t b) { return a > b ? a - b : b - a; }

/* 1 if `frame` lies in big_site, 2 if in small_site, 0 otherwise: the nearer of the two
 * addresses known inside them (the functions are small and may be neighbours). */
static int site_of(uintptr_t frame) {
  uintptr_t to_big = distance(frame, inside_big), to_small = distance(frame, inside_small);
  if (to_big < to_small && to_big < 256) return 1;
  if (to_small < to_big && to_small < 256) return 2;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  if (tm_profile_set_sample_bytes(0) != -1 || errno != EINVAL) { puts("FAILED: rate 0"); return 1; }
  errno = 0;
  if (tm_profile_write(NULL) != -1 || errno != EINVAL) { puts("FAILED: NULL path"); return 1; }
  if (tm_profile_write("/nonexistent/dir/p") != -1 || errno != ENOENT) { puts("FAILED: bad path"); return 1; }
  if (tm_profile_enable() != 0) { puts("FAILED: enable"); return 1; }
  /* Each thread draws its countdowns on a slow path: pass some. */
  for (int size = 16; size < 4096; size += 16) free(malloc(size));
  big_site();
  /* A child forked mid-profile allocates, samples and writes its own profile (the profile's
   * locks are held across fork, so none is left taken). */
  pid_t child = fork();
  if (child == 0) {
    small_site();
    char path[4096];
    snprintf(path, sizeof path, "%s.child", argv[1]);
    _exit(tm_profile_write(path) == 0 ? 0 : 3);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    puts("FAILED: the forked child");
    return 1;
  }
  small_site();
  tm_profile_disable();
  if (tm_profile_write(argv[1]) != 0) { perror("tm_profile_write"); return 1; }

  FILE *file = fopen(argv[1], "r");
  if (!file) return 1;
  static char line[1 << 16];
  double big = 0, small = 0;
  int header = 0;
  while (fgets(line, sizeof line, file)) {
    if (strcmp(line, "tallymalloc-profile 1\n") == 0) header = 1;
    if (strncmp(line, "maps", 4) == 0) break;
    if (strncmp(line, "site ", 5) != 0) continue;
    unsigned long long bytes = 0;
    char *at = strstr(line, " allocated_bytes ");
    if (!at || sscanf(at, " allocated_bytes %llu", &bytes) != 1) return 1;
    char *frames = strstr(line, " frames");
    int is_big = 0, is_small = 0;
    for (char *word = strtok(frames + 7, " \n"); word; word = strtok(NULL, " \n")) {
      uintptr_t frame = (uintptr_t)strtoull(word, NULL, 16);
      is_big |= site_of(frame) == 1;
      is_small |= site_of(frame) == 2;
    }
    if (is_big) big += bytes;
    if (is_small) small += bytes;
  }
  fclose(file);
  printf("estimates: %.0f from the big site, %.0f from the small one\n", big, small);
  double truth_big = 256 << 20, truth_small = 64 << 20;
  if (!header || big < 0.8 * truth_big || big > 1.2 * truth_big || small < 0.6 * truth_small ||
      small > 1.4 * truth_small) {
    puts("FAILED: estimates");
    return 1;
  }
  puts("profile checks passed");
  return 0;
}
