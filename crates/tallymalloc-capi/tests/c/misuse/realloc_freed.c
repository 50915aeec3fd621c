/* Misuse: a freed block resized. */
#include <stdlib.h>
int main(void) {
  char *block = malloc(80);
  free(block);
  char *volatile again = realloc(block, 160); /* the bug */
  return again != 0;
}
