/* Secure mode's defences, one per argument:
 *   attack: a freed block's link is overwritten with the address of a global, as a
 *           use-after-free exploit would; mallocs follow. Prints whether malloc ever returned
 *           the chosen address (normal mode) — secure mode must abort first.
 *   double: frees a block twice (secure mode must abort).
 *   remote-double: a thread frees another thread's block twice (secure mode must abort).
 *   shuffle: prints how many of 63 consecutive 32-byte mallocs came one block after the last.
 *   guard:  writes to the last 4 KiB of the segment holding a block (secure mode: SIGSEGV).
 *   huge-guard: grows an 8 MiB block with realloc, checks its contents, then writes one byte
 *           past its usable end, where a page of its own is mapped if the address is free
 *           (secure mode: SIGSEGV on the guard page there). */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

size_t malloc_usable_size(void *block);

static char target[4096] __attribute__((aligned(64)));

static void on_segv(int signal) {
  (void)signal;
  const char message[] = "guard page hit\n";
  write(1, message, sizeof message - 1);
  _exit(0);
}

static void *free_twice(void *block) {
  free(block);
  free(block);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  if (strcmp(argv[1], "attack") == 0) {
    void *victim = malloc(64);
    free(victim);
    *(void **)victim = target; /* the use after free: a forged link */
    for (int i = 0; i < 100000; i++) {
      void *block = malloc(64);
      if (block == (void *)target) {
        printf("malloc returned the chosen pointer after %d calls\n", i + 1);
        return 0;
      }
    }
    printf("the chosen pointer never came back\n");
    return 0;
  }
  if (strcmp(argv[1], "double") == 0) {
    void *keep = malloc(48);
    void *block = malloc(48);
    free(block);
    free(block);
    printf("the second free went unnoticed\n");
    free(keep);
    return 0;
  }
  if (strcmp(argv[1], "remote-double") == 0) {
    void *keep = malloc(48);
    void *block = malloc(48);
    pthread_t thread;
    if (pthread_create(&thread, NULL, free_twice, block) != 0) return 3;
    pthread_join(thread, NULL);
    printf("the second free went unnoticed\n");
    free(keep);
    return 0;
  }
  if (strcmp(argv[1], "shuffle") == 0) {
    char *last = malloc(32);
    int in_order = 0;
    for (int i = 0; i < 63; i++) {
      char *block = malloc(32);
      if (block == last + 32) in_order++;
      last = block;
    }
    printf("%d of 63 in address order\n", in_order);
    return 0;
  }
  if (strcmp(argv[1], "huge-guard") == 0) {
    unsigned char *block = malloc(8 << 20);
    if (!block) return 3;
    for (size_t i = 0; i < (8 << 20); i += 4096) block[i] = (unsigned char)(i >> 12);
    block = realloc(block, 12 << 20);
    if (!block) return 3;
    for (size_t i = 0; i < (8 << 20); i += 4096)
      if (block[i] != (unsigned char)(i >> 12)) {
        printf("realloc lost the contents at %zu\n", i);
        return 1;
      }
    size_t usable = malloc_usable_size(block);
    if (usable < (12 << 20)) return 4;
    /* Map a page of our own right after the block if that address is free, so that without
     * a guard the write below lands there instead of faulting on a hole. */
    void *after = block + usable;
    void *neighbour = mmap(after, 4096, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (neighbour != MAP_FAILED && neighbour != after) munmap(neighbour, 4096);
    signal(SIGSEGV, on_segv);
    volatile unsigned char *past = after;
    *past = 1;
    printf("no guard page\n");
    return 0;
  }
  if (strcmp(argv[1], "guard") == 0) {
    signal(SIGSEGV, on_segv);
    char *block = malloc(100);
    uintptr_t segment = (uintptr_t)block & ~(uintptr_t)((4 << 20) - 1);
    volatile char *guard = (volatile char *)(segment + (4 << 20) - 4096);
    *guard = 1;
    printf("no guard page\n");
    return 0;
  }
  return 2;
}
