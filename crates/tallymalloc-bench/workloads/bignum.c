/* Many small short-lived objects (cfrac style): arbitrary-precision arithmetic where every
 * operation allocates its result and frees its temporaries. */
#include <string.h>
#include "common.h"

typedef struct {
  size_t length;
  uint32_t *limbs;
} big;

static big *big_new(size_t length) {
  big *b = must(malloc(sizeof *b));
  b->length = length;
  b->limbs = must(calloc(length ? length : 1, sizeof(uint32_t)));
  return b;
}

static void big_free(big *b) {
  free(b->limbs);
  free(b);
}

static big *big_trim(big *b) {
  while (b->length > 1 && b->limbs[b->length - 1] == 0) b->length--;
  return b;
}

static big *big_add(const big *a, const big *b) {
  size_t n = (a->length > b->length ? a->length : b->length) + 1;
  big *r = big_new(n);
  uint64_t carry = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t sum = carry + (i < a->length ? a->limbs[i] : 0) + (i < b->length ? b->limbs[i] : 0);
    r->limbs[i] = (uint32_t)sum;
    carry = sum >> 32;
  }
  return big_trim(r);
}

static big *big_mul(const big *a, const big *b) {
  big *r = big_new(a->length + b->length);
  for (size_t i = 0; i < a->length; i++) {
    uint64_t carry = 0;
    for (size_t j = 0; j < b->length; j++) {
      uint64_t t = (uint64_t)a->limbs[i] * b->limbs[j] + r->limbs[i + j] + carry;
      r->limbs[i + j] = (uint32_t)t;
      carry = t >> 32;
    }
    r->limbs[i + b->length] += (uint32_t)carry;
  }
  return big_trim(r);
}

static big *big_small(uint32_t value) {
  big *b = big_new(1);
  b->limbs[0] = value;
  return b;
}

int main(int argc, char **argv) {
  long scale = argument(argc, argv, 1, 10);
  uint64_t checksum = 0;
  for (long round = 0; round < scale; round++) {
    /* Fibonacci: each step allocates a new number and frees the oldest. */
    big *a = big_small(0), *b = big_small(1);
    for (int i = 0; i < 3000; i++) {
      big *c = big_add(a, b);
      big_free(a);
      a = b;
      b = c;
    }
    checksum += b->limbs[0] + b->length;
    /* Factorial by repeated multiplication with short-lived small factors. */
    big *f = big_small(1);
    for (uint32_t k = 2; k < 400; k++) {
      big *factor = big_small(k + (uint32_t)round);
      big *product = big_mul(f, factor);
      big_free(factor);
      big_free(f);
      f = product;
    }
    checksum += f->limbs[f->length / 2] + f->length;
    /* A few full multiplications of the results. */
    big *square = big_mul(b, b);
    checksum += square->limbs[0];
    big_free(square);
    big_free(a);
    big_free(b);
    big_free(f);
  }
  printf("bignum %llu\n", (unsigned long long)checksum);
  return 0;
}
