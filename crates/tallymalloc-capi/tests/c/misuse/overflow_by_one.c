/* Misuse: one byte written past the end of a block. */
#include <stdlib.h>
int main(void) {
  char *block = malloc(40);
  char *volatile end = block + 40;
  *end = 'x'; /* the bug */
  free(block); /* reported: guards are checked here */
  return 0;
}
