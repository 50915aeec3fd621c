/* Memory returned while the program is idle: allocate 1 GiB (half in 1 KiB blocks, half in
 * 1 MiB blocks), touch it, free it all, then make no allocator call at all and watch the
 * resident set: it must fall below 50 MiB within a second. Prints the milliseconds it took.
 * Reads /proc/self/statm with read(2) into a stack buffer: no stdio, which may allocate. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SMALL_COUNT (512 * 1024)
#define SMALL_SIZE 1024
#define LARGE_COUNT 512
#define LARGE_SIZE (1024 * 1024)

static void *small[SMALL_COUNT];
static void *large[LARGE_COUNT];

static long resident_mib(void) {
  char text[128];
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return -1;
  ssize_t length = read(fd, text, sizeof text - 1);
  close(fd);
  if (length <= 0) return -1;
  text[length] = '\0';
  char *field = text;
  while (*field && *field != ' ') field++; /* skip the size: the second field is resident */
  long pages = strtol(field, NULL, 10);
  return pages * sysconf(_SC_PAGESIZE) / (1024 * 1024);
}

static long now_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int main(void) {
  for (int i = 0; i < SMALL_COUNT; i++) {
    small[i] = malloc(SMALL_SIZE);
    if (!small[i]) return 2;
    memset(small[i], i, SMALL_SIZE);
  }
  for (int i = 0; i < LARGE_COUNT; i++) {
    large[i] = malloc(LARGE_SIZE);
    if (!large[i]) return 2;
    memset(large[i], i, LARGE_SIZE);
  }
  long peak = resident_mib();
  for (int i = 0; i < SMALL_COUNT; i++) free(small[i]);
  for (int i = 0; i < LARGE_COUNT; i++) free(large[i]);
  long freed_at = now_ms();
  long resident = resident_mib();
  while (resident >= 50 && now_ms() - freed_at < 1000) {
    usleep(20 * 1000);
    resident = resident_mib();
  }
  long waited = now_ms() - freed_at;
  char line[160];
  int length = snprintf(line, sizeof line, "peak %ld MiB, then %ld MiB after %ld ms idle\n",
                        peak, resident, waited);
  write(1, line, (size_t)length);
  return resident < 50 && peak > 900 ? 0 : 1;
}
