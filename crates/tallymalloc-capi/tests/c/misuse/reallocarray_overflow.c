/* Misuse: reallocarray whose count times size overflows. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
int main(void) {
  void *block = malloc(16);
  volatile size_t count = SIZE_MAX / 8;
  void *grown = reallocarray(block, count, 16); /* the bug */
  free(block);
  return grown != 0;
}
