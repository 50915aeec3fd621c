/* Misuse: a block of the mem domain freed with free (the raw family). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
int main(void) {
  void *(*domain_malloc)(int, size_t) = (void *(*)(int, size_t))dlsym(RTLD_DEFAULT, "tm_domain_malloc");
  if (!domain_malloc) return 2;
  void *block = domain_malloc(1 /* TM_DOMAIN_MEM */, 64);
  free(block); /* the bug */
  return 0;
}
