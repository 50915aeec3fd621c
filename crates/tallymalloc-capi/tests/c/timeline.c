/* Grows a mem-domain working set for about 300 ms, then frees it, so the stats timeline
 * (TALLYMALLOC_STATS_INTERVAL) has a rise and a fall to record. */
#include "tallymalloc.h"
#include <time.h>

int main(void) {
  static void *blocks[300];
  struct timespec pause = {0, 1000 * 1000};
  for (int i = 0; i < 300; i++) {
    blocks[i] = tm_domain_malloc(TM_DOMAIN_MEM, 64 * 1024);
    nanosleep(&pause, NULL);
  }
  for (int i = 0; i < 300; i++) tm_domain_free(TM_DOMAIN_MEM, blocks[i]);
  nanosleep(&pause, NULL);
  return 0;
}
