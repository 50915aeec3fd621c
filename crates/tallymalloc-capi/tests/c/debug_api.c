/* tm_debug_enable before the first allocation, and tm_debug_check finding a guard overwritten
 * while the block is still live. Run with TALLYMALLOC_ON_ERROR=report. Also tm_backtrace
 * against glibc's backtrace. */
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include "tallymalloc.h"

/* tm_backtrace and backtrace from one function find the same frames but the first (each
 * call's own return address); bad arguments give 0. */
__attribute__((noinline)) static int backtraces_agree(void) {
  void *ours[64], *theirs[64];
  int found = tm_backtrace(ours, 64);
  int expected = backtrace(theirs, 64);
  if (found != expected || found < 3) return 0;
  for (int i = 1; i < found; i++)
    if (ours[i] != theirs[i]) return 0;
  void *two[2];
  return tm_backtrace(two, 2) == 2 && two[1] == ours[1] && tm_backtrace(NULL, 4) == 0 &&
         tm_backtrace(two, 0) == 0;
}

int main(void) {
  if (tm_debug_enable() != 0) { printf("FAILED: tm_debug_enable\n"); return 1; }
  char *volatile block = malloc(10);
  size_t clean = tm_debug_check();
  block[10] = 1; /* past the end */
  size_t dirty = tm_debug_check();
  size_t live = tm_leak_report();
  printf("check: %zu before, %zu after the overflow; %zu live\n", clean, dirty, live);
  int agree = backtraces_agree();
  printf("backtraces %s\n", agree ? "agree" : "DIFFER");
  return clean == 0 && dirty == 1 && live >= 1 && agree ? 0 : 1;
}
