/* A shared library that allocates: loaded and unloaded repeatedly by dlopen_main.c. */
#include <stdlib.h>
#include <string.h>

static char *kept;

__attribute__((constructor)) static void loaded(void) { kept = strdup("allocated when loaded"); }
__attribute__((destructor)) static void unloaded(void) { free(kept); }

char *plugin_work(int round) {
  char **blocks = calloc(1000, sizeof *blocks);
  for (int i = 0; i < 1000; i++) blocks[i] = malloc((size_t)(i + round) % 700 + 1);
  for (int i = 0; i < 1000; i++) free(blocks[i]);
  free(blocks);
  char *answer = malloc(64);
  strcpy(answer, kept);
  return answer;
}
