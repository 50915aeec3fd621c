/* The stack-capture micro benchmark: at a depth of 24 frames (a recursion of noinline
 * functions under main), times tm_backtrace, the allocator's unwinder (found with dlsym, so
 * the library may be preloaded), and glibc's backtrace(3), which walks with libgcc's unwinder.
 * The bench builds it twice, with and without frame pointers. Prints one line:
 * "capture FRAMES NS_TM NS_GLIBC" (nanoseconds per 24-frame capture, best of 5 rounds). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DEPTH 24

static int (*tm_backtrace)(void **, int);
static volatile long sink;

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static double best_ns(int (*capture)(void **, int), long rounds, int *frames) {
  void *stack[64];
  double best = 1e30;
  for (int attempt = 0; attempt < 5; attempt++) {
    double start = now_ns();
    for (long i = 0; i < rounds; i++) *frames = capture(stack, DEPTH);
    double each = (now_ns() - start) / (double)rounds;
    if (each < best) best = each;
  }
  return best;
}

/* Recurses until the stack (this frame, the chain, main and the C runtime's) is DEPTH deep. */
__attribute__((noinline)) static long descend(int levels, long rounds) {
  if (levels > 0) {
    long result = descend(levels - 1, rounds);
    sink += result; /* not a tail call: the frame stays */
    return result + 1;
  }
  int ours = 0, theirs = 0;
  double tm_ns = best_ns(tm_backtrace, rounds, &ours);
  double glibc_ns = best_ns(backtrace, rounds / 10 + 1, &theirs);
  if (ours != DEPTH || theirs != DEPTH) {
    fprintf(stderr, "capture: expected %d frames, tm_backtrace found %d, backtrace %d\n", DEPTH, ours,
            theirs);
    exit(1);
  }
  printf("capture %d %.1f %.1f\n", DEPTH, tm_ns, glibc_ns);
  return 0;
}

int main(int argc, char **argv) {
  long rounds = argc > 1 ? atol(argv[1]) : 200000;
  tm_backtrace = (int (*)(void **, int))dlsym(RTLD_DEFAULT, "tm_backtrace");
  if (!tm_backtrace) {
    fprintf(stderr, "capture: tm_backtrace not found (preload libtallymalloc.so)\n");
    return 2;
  }
  /* main, __libc_start_call_main, __libc_start_main and _start are four frames. */
  sink = descend(DEPTH - 4, rounds);
  return 0;
}
