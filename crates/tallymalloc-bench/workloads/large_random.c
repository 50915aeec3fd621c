/* Large blocks at random (malloc-large style): 20 slots, each round frees one slot's block
 * and allocates another of a random size from 64 KiB to 32 MiB, then writes a byte in each of
 * its pages, as a program filling a buffer would. The cost is in what the allocator does
 * with freed large memory: keep it mapped and faulted in for the next block, or give it back
 * and fault it in again. */
#include "common.h"

enum { SLOTS = 20, PAGE = 4096 };
static const size_t SMALLEST = (size_t)64 << 10, LARGEST = (size_t)32 << 20;

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  uint64_t state = 7, checksum = 0;
  char *slots[SLOTS] = {0};
  for (long round = 0; round < scale * 20; round++) {
    int slot = (int)(next_random(&state) % SLOTS);
    free(slots[slot]);
    size_t size = SMALLEST + (size_t)(next_random(&state) % (LARGEST - SMALLEST + 1));
    char *block = must(malloc(size));
    for (size_t offset = 0; offset < size; offset += PAGE) block[offset] = (char)round;
    block[size - 1] = (char)slot;
    checksum += (unsigned char)block[size / 2 & ~(size_t)(PAGE - 1)] + size;
    slots[slot] = block;
  }
  for (int i = 0; i < SLOTS; i++) free(slots[i]);
  printf("large-random %llu\n", (unsigned long long)checksum);
  return 0;
}
