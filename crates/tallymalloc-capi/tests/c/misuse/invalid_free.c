/* Misuse: a pointer tallymalloc never handed out (a static buffer). */
#include <stdlib.h>
static char buffer[64];
int main(void) {
  free(buffer + 16); /* the bug */
  return 0;
}
