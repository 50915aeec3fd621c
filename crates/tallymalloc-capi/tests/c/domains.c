/* Domains and stats through the C API: a known sequence in a domain of its own, mismatches in
 * every direction among raw, mem, obj and a user domain, the error cases, and the JSON
 * protocol (ask for the length, then fetch). Prints the JSON last, between markers, for the
 * Rust harness to check the figures. */
#include "tallymalloc.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(condition)                                                          \
  do {                                                                            \
    if (!(condition)) {                                                           \
      fprintf(stderr, "domains.c:%d: check failed: %s\n", __LINE__, #condition); \
      failures++;                                                                 \
    }                                                                             \
  } while (0)

int main(void) {
  /* Registration. */
  int known = tm_domain_register("c-known");
  CHECK(known >= 3);
  CHECK(tm_domain_register("c-known") == known);
  CHECK(strcmp(tm_domain_name(known), "c-known") == 0);
  CHECK(strcmp(tm_domain_name(TM_DOMAIN_OBJ), "obj") == 0);
  CHECK(tm_domain_register("mem") == TM_DOMAIN_MEM);
  errno = 0;
  CHECK(tm_domain_register("bad name") == -1 && errno == EINVAL);
  errno = 0;
  CHECK(tm_domain_register(NULL) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(tm_domain_register("") == -1 && errno == EINVAL);
  errno = 0;
  CHECK(tm_domain_name(TM_MAX_DOMAINS - 1) == NULL && errno == EINVAL);

  /* Bad ids. */
  errno = 0;
  void *none = tm_domain_malloc(TM_MAX_DOMAINS - 1, 10);
  CHECK(none == NULL && errno == EINVAL);
  errno = 0;
  none = tm_domain_calloc(-1, 1, 1);
  CHECK(none == NULL && errno == EINVAL);
  errno = 0;
  none = tm_domain_aligned_alloc(known, 3, 10);
  CHECK(none == NULL && errno == EINVAL);
  int stack_value = 0;
  errno = 0;
  CHECK(tm_domain_of(&stack_value) == -1 && errno == EINVAL);
  CHECK(tm_domain_of(NULL) == -1);

  /* The known sequence: 5 allocations of known sizes, 2 frees, a realloc that moves. */
  void *a = tm_domain_malloc(known, 100);
  void *b = tm_domain_calloc(known, 10, 30);
  void *c = tm_domain_aligned_alloc(known, 256, 1000);
  void *d = tm_domain_malloc(known, 5 << 20);
  void *e = tm_domain_malloc(known, 40);
  CHECK(a && b && c && d && e);
  CHECK(((uintptr_t)c & 255) == 0);
  CHECK(tm_domain_of(a) == known && tm_domain_of(d) == known);
  for (int i = 0; i < 300; i++) CHECK(((unsigned char *)b)[i] == 0);
  memset(a, 7, 100);
  void *a2 = tm_domain_realloc(known, a, 20000);
  CHECK(a2 != NULL && ((unsigned char *)a2)[99] == 7);
  tm_domain_free(known, b);
  tm_domain_free(known, e);
  CHECK(tm_domain_realloc(known, c, 0) == NULL); /* frees */
  /* Left live: a2 (20000 B) and d (5 MiB). */

  /* Mismatches: raw->mem, mem->raw, obj->user, user->obj, and realloc across. Each block is
   * still freed. */
  void *m = tm_domain_malloc(TM_DOMAIN_MEM, 64);
  free(m);
  void *r = malloc(64);
  tm_domain_free(TM_DOMAIN_MEM, r);
  void *o = tm_domain_malloc(TM_DOMAIN_OBJ, 64);
  tm_domain_free(known, o);
  void *u = tm_domain_malloc(known, 64);
  tm_domain_free(TM_DOMAIN_OBJ, u);
  void *o2 = tm_domain_malloc(TM_DOMAIN_OBJ, 32);
  memcpy(o2, "obj block", 10);
  void *moved = realloc(o2, 64); /* through raw: reported, moved into raw */
  CHECK(moved && strcmp(moved, "obj block") == 0 && tm_domain_of(moved) == TM_DOMAIN_RAW);
  free(moved);
  /* A second raw->mem mismatch: counted, not reported again. */
  m = tm_domain_malloc(TM_DOMAIN_MEM, 64);
  free(m);
  /* By pair: mem's blocks twice through raw (free), obj's once through raw (realloc). */
  uint64_t pair = 0;
  CHECK(tm_mismatches(TM_DOMAIN_MEM, TM_DOMAIN_RAW, &pair) == 0 && pair == 2);
  CHECK(tm_mismatches(TM_DOMAIN_OBJ, TM_DOMAIN_RAW, &pair) == 0 && pair == 1);
  CHECK(tm_mismatches(TM_DOMAIN_RAW, TM_DOMAIN_MEM, &pair) == 0 && pair == 1);
  CHECK(tm_mismatches(TM_DOMAIN_RAW, TM_DOMAIN_OBJ, &pair) == 0 && pair == 0);
  errno = 0;
  CHECK(tm_mismatches(TM_ALL_DOMAINS, TM_DOMAIN_RAW, &pair) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(tm_mismatches(TM_DOMAIN_MEM, TM_DOMAIN_RAW, NULL) == -1 && errno == EINVAL);
  /* An id that names no domain: reported, the block freed through its own family. */
  tm_domain_free(TM_MAX_DOMAINS + 5, malloc(8));

  /* Wrapping allocators: only the domain's own live blocks are freed; the rest stay alone. */
  void *wrapped = tm_domain_malloc(TM_DOMAIN_MEM, 48);
  void *huge_wrapped = tm_domain_malloc(TM_DOMAIN_MEM, 8 << 20);
  CHECK(tm_domain_free_if_owned(TM_DOMAIN_OBJ, wrapped) == 0);
  CHECK(tm_domain_free_if_owned(TM_DOMAIN_RAW, huge_wrapped) == 0);
  CHECK(tm_domain_free_if_owned(TM_DOMAIN_MEM, &stack_value) == 0);
  CHECK(tm_domain_free_if_owned(TM_DOMAIN_MEM, NULL) == 1);
  CHECK(tm_domain_free_if_owned(TM_MAX_DOMAINS - 1, wrapped) == 0);
  CHECK(tm_domain_of(wrapped) == TM_DOMAIN_MEM);
  CHECK(tm_domain_free_if_owned(TM_DOMAIN_MEM, wrapped) == 1);
  CHECK(tm_domain_free_if_owned(TM_DOMAIN_MEM, huge_wrapped) == 1);

  /* The JSON, sized first. */
  size_t needed = tm_stats_json(NULL, 0);
  CHECK(needed > 100);
  char small[16];
  /* Too small even without a timeline: cut, and the whole length (within the bound) said. */
  size_t whole = tm_stats_json(small, sizeof small);
  CHECK(whole >= sizeof small && whole <= needed && small[15] == '\0');
  char *json = malloc(needed + 4096);
  size_t written = tm_stats_json(json, needed + 4096);
  CHECK(written < needed + 4096 && json[written] == '\0');
  struct tm_domain_stats figures;
  CHECK(tm_domain_stats(known, &figures) == 0);
  CHECK(figures.live_blocks == 2 && figures.allocations == 7 && figures.frees == 5);
  CHECK(figures.live_bytes >= (5 << 20) + 20000 && figures.peak_bytes >= figures.live_bytes);
  errno = 0;
  CHECK(tm_domain_stats(TM_MAX_DOMAINS - 1, &figures) == -1 && errno == EINVAL);
  CHECK(tm_domain_stats(known, NULL) == -1);

  /* A watermark starts again from what is live; the peak stays. Huge blocks count at once. */
  int parts = tm_domain_register("c-watermark");
  void *first = tm_domain_malloc(parts, 4 << 20);
  tm_domain_free(parts, first);
  uint64_t mark = 0;
  CHECK(tm_watermark(parts, &mark) == 0 && mark >= (4 << 20));
  CHECK(tm_watermark_reset(parts) == 0);
  CHECK(tm_watermark(parts, &mark) == 0 && mark == 0);
  void *second = tm_domain_malloc(parts, 1 << 20);
  tm_domain_free(parts, second);
  CHECK(tm_watermark(parts, &mark) == 0 && mark >= (1 << 20) && mark < (2 << 20));
  CHECK(tm_domain_stats(parts, &figures) == 0 && figures.peak_bytes >= (4 << 20));
  errno = 0;
  CHECK(tm_watermark_reset(TM_MAX_DOMAINS - 1) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(tm_watermark(-2, &mark) == -1 && errno == EINVAL);
  /* Every domain together: two domains holding 4 MiB one after the other peak at 4 MiB. */
  int other = tm_domain_register("c-watermark-other");
  struct tm_domain_stats all_before, all_after;
  CHECK(tm_watermark_reset(TM_ALL_DOMAINS) == 0);
  CHECK(tm_domain_stats(TM_ALL_DOMAINS, &all_before) == 0);
  void *held = tm_domain_malloc(parts, 4 << 20);
  tm_domain_free(parts, held);
  held = tm_domain_malloc(other, 4 << 20);
  tm_domain_free(other, held);
  CHECK(tm_watermark(TM_ALL_DOMAINS, &mark) == 0);
  CHECK(mark >= all_before.live_bytes + (4 << 20) && mark < all_before.live_bytes + (6 << 20));
  CHECK(tm_domain_stats(TM_ALL_DOMAINS, &all_after) == 0);
  CHECK(all_after.allocations >= all_before.allocations + 2 && all_after.peak_bytes >= mark);
  errno = 0;
  CHECK(tm_domain_stats(-2, &all_after) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(tm_watermark(parts, NULL) == -1 && errno == EINVAL);
  char table[8192];
  size_t table_length = tm_stats_text(table, sizeof table);
  CHECK(table_length < sizeof table && strstr(table, "c-known") != NULL);
  tm_stats_print(stdout);
  printf("%s\n", failures ? "checks FAILED" : "checks passed");
  printf("JSON-BEGIN\n%s\nJSON-END\n", json);
  free(json);
  return failures != 0;
}
