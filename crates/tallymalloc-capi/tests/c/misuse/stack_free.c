/* Misuse: the address of a local variable freed. */
#include <stdlib.h>
int main(void) {
  char local[32] = {0};
  void *volatile pointer = local;
  free(pointer); /* the bug */
  return local[0];
}
