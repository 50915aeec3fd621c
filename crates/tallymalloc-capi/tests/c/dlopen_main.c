/* Loads plugin.so (path in argv[1]) 50 times; each time it allocates in its constructor,
 * hands the main program a block to free, and frees its own block when unloaded. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  for (int round = 0; round < 50; round++) {
    void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!plugin) {
      fprintf(stderr, "dlopen: %s\n", dlerror());
      return 1;
    }
    char *(*work)(int) = (char *(*)(int))dlsym(plugin, "plugin_work");
    char *answer = work(round);
    if (strcmp(answer, "allocated when loaded") != 0) return 1;
    free(answer);
    dlclose(plugin);
  }
  printf("dlopen: 50 load and unload rounds\n");
  return 0;
}
