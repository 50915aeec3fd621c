/* Boolean-function minimisation style set operations (espresso style): cubes are bit sets
 * in lists; merging covers allocates and frees many small sets of mixed sizes. */
#include <string.h>
#include "common.h"

typedef struct cube {
  struct cube *next;
  int words;
  uint64_t bits[];
} cube;

static cube *cube_new(int words) {
  cube *c = must(malloc(sizeof(cube) + (size_t)words * sizeof(uint64_t)));
  c->next = NULL;
  c->words = words;
  return c;
}

static void free_list(cube *c) {
  while (c) {
    cube *next = c->next;
    free(c);
    c = next;
  }
}

static cube *random_cover(uint64_t *state, int count, int words) {
  cube *head = NULL;
  for (int i = 0; i < count; i++) {
    cube *c = cube_new(words);
    for (int w = 0; w < words; w++) c->bits[w] = next_random(state) | next_random(state);
    c->next = head;
    head = c;
  }
  return head;
}

/* All pairwise intersections that are not empty: a new cover. */
static cube *intersect(const cube *a, const cube *b, int *produced) {
  cube *head = NULL;
  for (const cube *x = a; x; x = x->next) {
    for (const cube *y = b; y; y = y->next) {
      cube *c = cube_new(x->words);
      uint64_t any = 0;
      for (int w = 0; w < x->words; w++) any |= c->bits[w] = x->bits[w] & y->bits[w];
      if (!any || (c->bits[0] & 7) == 0) { /* drop most: keeps the cover small */
        free(c);
        continue;
      }
      c->next = head;
      head = c;
      (*produced)++;
    }
  }
  return head;
}

/* Removes cubes contained in another (a quadratic pass that frees as it goes). */
static cube *absorb(cube *cover) {
  cube *kept = NULL;
  while (cover) {
    cube *c = cover;
    cover = cover->next;
    int contained = 0;
    for (cube *k = kept; k && !contained; k = k->next) {
      int all = 1;
      for (int w = 0; w < c->words && all; w++) all = (c->bits[w] & ~k->bits[w]) == 0;
      contained = all;
    }
    if (contained) {
      free(c);
    } else {
      c->next = kept;
      kept = c;
    }
  }
  return kept;
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  uint64_t state = 88172645463325252ull, checksum = 0;
  for (long round = 0; round < scale * 4; round++) {
    int words = 2 + (int)(round % 7);
    cube *a = random_cover(&state, 48, words);
    cube *b = random_cover(&state, 48, words);
    int produced = 0;
    cube *c = absorb(intersect(a, b, &produced));
    for (cube *x = c; x; x = x->next) checksum += x->bits[0] & 0xff;
    checksum += (uint64_t)produced;
    free_list(a);
    free_list(b);
    free_list(c);
  }
  printf("sets %llu\n", (unsigned long long)checksum);
  return 0;
}
