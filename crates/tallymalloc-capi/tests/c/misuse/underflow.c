/* Misuse: a byte written just before the start of a block. */
#include <stdlib.h>
int main(void) {
  char *block = malloc(40);
  char *volatile before = block - 1;
  *before = 'x'; /* the bug */
  free(block); /* reported: guards are checked here */
  return 0;
}
