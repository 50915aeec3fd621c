/* Three allocation sites with known shares of the bytes allocated (50%, 30%, 20% of 4 GiB,
 * in blocks freed at once), and a fourth that holds 64 MiB at the peak, then frees it: for
 * `tallymalloc run --profile`, whose estimates the tests check against these figures. Each
 * site is its own function, kept out of line, so that it is a frame of every stack it
 * allocates from. Prints the bytes each site allocated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOTAL (4UL << 30)

static void churn(size_t count, size_t size) {
    for (size_t i = 0; i < count; i++) {
        char *volatile block = malloc(size);
        if (!block) {
            exit(2);
        }
        block[0] = (char)i;
        free(block);
    }
}

__attribute__((noinline)) void allocate_half(void) { churn(TOTAL / 2 / 256, 256); }
__attribute__((noinline)) void allocate_three_tenths(void) { churn(TOTAL * 3 / 10 / 1024, 1024); }
__attribute__((noinline)) void allocate_fifth(void) { churn(TOTAL / 5 / 96, 96); }

__attribute__((noinline)) void hold_peak(void) {
    enum { BLOCKS = (64 << 20) / 4096 };
    static char *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(4096);
        if (!blocks[i]) {
            exit(2);
        }
        memset(blocks[i], i, 64);
    }
    for (int i = 0; i < BLOCKS; i++) {
        free(blocks[i]);
    }
}

int main(void) {
    allocate_half();
    allocate_three_tenths();
    allocate_fifth();
    hold_peak();
    printf("allocated %lu %lu %lu, held %lu\n", TOTAL / 2, TOTAL * 3 / 10, TOTAL / 5,
           64UL << 20);
    return 0;
}
