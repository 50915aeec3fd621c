/* Misuse: a pointer into the middle of a live block freed. */
#include <stdlib.h>
int main(void) {
  char *block = malloc(200);
  free(block + 48); /* the bug */
  return 0;
}
