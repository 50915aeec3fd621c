/* Misuse: a request no memory can hold. */
#include <stdint.h>
#include <stdlib.h>
int main(void) {
  volatile size_t size = SIZE_MAX - 4096;
  void *block = malloc(size); /* the bug */
  return block != 0;
}
