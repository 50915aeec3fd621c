/* Misuse: the same block freed twice. */
#include <stdlib.h>
#include <string.h>
int main(void) {
  char *block = malloc(100);
  memset(block, 1, 100);
  free(block);
  free(block); /* the bug */
  return 0;
}
