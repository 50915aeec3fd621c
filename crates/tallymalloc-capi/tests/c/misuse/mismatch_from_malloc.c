/* Misuse: a malloc'd (raw) block freed through the obj family. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
int main(void) {
  void (*domain_free)(int, void *) = (void (*)(int, void *))dlsym(RTLD_DEFAULT, "tm_domain_free");
  if (!domain_free) return 2;
  void *block = malloc(64);
  domain_free(2 /* TM_DOMAIN_OBJ */, block); /* the bug */
  return 0;
}
