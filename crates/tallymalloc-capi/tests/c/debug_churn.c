/* Threads come and go (4 at a time, argv[1] in all, 2000 by default), each allocating and
 * freeing a few hundred blocks before it exits. In debug mode the freed blocks wait in the
 * quarantine after their thread has gone, so its segments are abandoned with blocks in use;
 * they must be taken up again once those blocks leave, or memory grows with every thread.
 * Prints the peak resident set (VmHWM, in KiB), read without stdio. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *work(void *seed_pointer) {
  unsigned seed = (unsigned)(size_t)seed_pointer;
  void *blocks[300];
  for (int i = 0; i < 300; i++) {
    size_t size = 16 + rand_r(&seed) % 2000;
    blocks[i] = malloc(size);
    memset(blocks[i], i, size);
  }
  for (int i = 0; i < 300; i++) free(blocks[i]);
  return NULL;
}

static long peak_kib(void) {
  char text[4096];
  int fd = open("/proc/self/status", O_RDONLY);
  if (fd < 0) return -1;
  ssize_t length = read(fd, text, sizeof text - 1);
  close(fd);
  if (length <= 0) return -1;
  text[length] = 0;
  char *line = strstr(text, "VmHWM:");
  return line ? strtol(line + 6, NULL, 10) : -1;
}

int main(int argc, char **argv) {
  int total = argc > 1 ? atoi(argv[1]) : 2000;
  for (int started = 0; started < total; started += 4) {
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, work, (void *)(size_t)(started + i + 1));
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
  }
  char line[64];
  long peak = peak_kib();
  int length = 0;
  const char prefix[] = "peak KiB ";
  memcpy(line, prefix, sizeof prefix - 1);
  length = sizeof prefix - 1;
  char digits[24];
  int count = 0;
  do {
    digits[count++] = (char)('0' + peak % 10);
    peak /= 10;
  } while (peak > 0);
  while (count > 0) line[length++] = digits[--count];
  line[length++] = '\n';
  return write(1, line, (size_t)length) == length ? 0 : 2;
}
