/* One thread, mixed sizes with realloc (alloc-test style): 8192 slots; each step picks one and
 * allocates it if empty, else frees it (a quarter of the time) or reallocates it to a new
 * size, checking that its first byte (the slot's mark) came along. Sizes are mostly small, sometimes a few
 * kilobytes, rarely up to 128 KiB. */
#include "common.h"

enum { SLOTS = 8192 };

static size_t random_size(uint64_t *state) {
  uint64_t r = next_random(state);
  switch (r % 16) {
    case 0: return 1 + (r >> 8) % (128 << 10);
    case 1: case 2: return 1 + (r >> 8) % 8192;
    default: return 1 + (r >> 8) % 512;
  }
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  static unsigned char *slots[SLOTS];
  static size_t sizes[SLOTS];
  uint64_t state = 99, checksum = 0;
  for (long step = 0; step < scale * 100000; step++) {
    uint64_t r = next_random(&state);
    size_t slot = r % SLOTS;
    if (!slots[slot]) {
      size_t size = random_size(&state);
      slots[slot] = must(malloc(size));
      slots[slot][0] = (unsigned char)slot;
      if (size > 1) slots[slot][size - 1] = (unsigned char)size;
      sizes[slot] = size;
    } else if ((r >> 20) % 4 == 0) {
      checksum += slots[slot][sizes[slot] - 1];
      free(slots[slot]);
      slots[slot] = NULL;
    } else {
      size_t size = random_size(&state);
      unsigned char *moved = must(realloc(slots[slot], size));
      if (moved[0] != (unsigned char)slot) {
        fprintf(stderr, "realloc lost the contents of slot %zu\n", slot);
        return 1;
      }
      if (size > 1) moved[size - 1] = (unsigned char)size;
      slots[slot] = moved;
      sizes[slot] = size;
    }
  }
  for (size_t i = 0; i < SLOTS; i++) free(slots[i]);
  printf("alloc-test %llu\n", (unsigned long long)checksum);
  return 0;
}
