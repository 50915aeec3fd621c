/* No misuse: allocations of every kind, all freed. */
#include <stdlib.h>
#include <string.h>
int main(void) {
  void *blocks[100];
  for (int i = 0; i < 100; i++) {
    blocks[i] = malloc((size_t)(i * 37 + 1));
    memset(blocks[i], i, (size_t)(i * 37 + 1));
  }
  for (int i = 0; i < 100; i += 2) blocks[i] = realloc(blocks[i], (size_t)(i * 91 + 8));
  void *aligned = aligned_alloc(256, 1024);
  void *zeroed = calloc(10, 100);
  for (int i = 0; i < 100; i++) free(blocks[i]);
  free(aligned);
  free(zeroed);
  return 0;
}
