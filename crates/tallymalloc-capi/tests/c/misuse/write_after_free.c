/* Misuse: a freed block written (found when the quarantine is checked). */
#include <stdlib.h>
int main(void) {
  char *volatile block = malloc(80);
  free(block); /* reported: the first free */
  block[10] = 'x'; /* the bug */
  return 0;
}
