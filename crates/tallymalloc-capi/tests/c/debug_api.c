/* tm_debug_enable before the first allocation, and tm_debug_check finding a guard overwritten
 * while the block is still live. Run with TALLYMALLOC_ON_ERROR=report. */
#include <stdio.h>
#include <stdlib.h>
#include "tallymalloc.h"

int main(void) {
  if (tm_debug_enable() != 0) { printf("FAILED: tm_debug_enable\n"); return 1; }
  char *volatile block = malloc(10);
  size_t clean = tm_debug_check();
  block[10] = 1; /* past the end */
  size_t dirty = tm_debug_check();
  size_t live = tm_leak_report();
  printf("check: %zu before, %zu after the overflow; %zu live\n", clean, dirty, live);
  return clean == 0 && dirty == 1 && live >= 1 ? 0 : 1;
}
