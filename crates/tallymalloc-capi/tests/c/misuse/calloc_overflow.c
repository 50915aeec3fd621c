/* Misuse: calloc whose count times size overflows. */
#include <stdint.h>
#include <stdlib.h>
int main(void) {
  volatile size_t count = SIZE_MAX / 16 + 2;
  void *block = calloc(count, 16); /* the bug */
  return block != 0;
}
