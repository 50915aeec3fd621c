/* Misuse: blocks never freed: 10 of 1000 bytes from one place, 3 of 5000 from another. */
#include <stdlib.h>
static void *kept[16];
static void leak_small(int i) { kept[i] = malloc(1000); } /* reported */
static void leak_large(int i) { kept[10 + i] = malloc(5000); }
int main(void) {
  for (int i = 0; i < 10; i++) leak_small(i);
  for (int i = 0; i < 3; i++) leak_large(i);
  return 0;
}
