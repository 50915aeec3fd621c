/* Leaks from a chain of four functions, built twice by the test: with frame pointers and
 * without (-fomit-frame-pointer, so rbp holds data and only the call frame information tells
 * where each caller's frame is). Debug mode's leak report must name every function of the
 * chain, innermost first, at each build.
 *
 * noinline keeps each function a frame of its own; the volatile sink keeps the calls from
 * becoming tail calls, which would leave their frames off the stack. */
#include <stdlib.h>

void *volatile sink;
static volatile unsigned long scratch_value = 7;

__attribute__((noinline)) static void *chain_innermost(unsigned long seed) {
  /* Some work with rbp as a plain register when frame pointers are off. */
  unsigned long a = seed, b = seed * 3, c = seed ^ 0x55, d = seed + 11, e = seed * seed;
  for (int i = 0; i < 4; i++) {
    a += b ^ c;
    b += c * d;
    c ^= d + e;
    d += e ^ a;
    e += a * 7;
  }
  scratch_value = a ^ b ^ c ^ d ^ e;
  void *block = malloc(4242); /* leaked here */
  sink = block;
  return block;
}

__attribute__((noinline)) static void *chain_middle(unsigned long seed) {
  void *block = chain_innermost(seed + 1);
  scratch_value += seed;
  return block;
}

__attribute__((noinline)) static void *chain_outer(unsigned long seed) {
  void *block = chain_middle(seed * 2);
  scratch_value ^= seed;
  return block;
}

__attribute__((noinline)) void *chain_entry(unsigned long seed) {
  void *block = chain_outer(seed + 5);
  scratch_value -= 1;
  return block;
}

int main(void) {
  chain_entry(scratch_value);
  return 0;
}
