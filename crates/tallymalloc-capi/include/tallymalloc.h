/*
 * tallymalloc: a fast, observable, strict memory allocator.
 *
 * libtallymalloc.so replaces malloc, free, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size, cfree and C++'s operator
 * new/delete in any program that links it or runs with LD_PRELOAD=libtallymalloc.so. This
 * header declares the tm_* functions, which call tallymalloc explicitly whichever malloc the
 * program otherwise uses.
 *
 * The contract, the same for the standard names and the tm_* ones:
 * - Allocation failure returns NULL with errno set to ENOMEM. Sizes that cannot be served
 *   (near SIZE_MAX, or count * size overflowing in calloc and reallocarray) fail that way too.
 * - malloc(0) returns a unique pointer that free accepts. free(NULL) does nothing, and free
 *   never changes errno.
 * - realloc(p, n) keeps the contents up to the smaller size, in place when the block's size
 *   class allows. On failure it returns NULL with errno ENOMEM and p is untouched and still
 *   valid. realloc(NULL, n) is malloc(n). realloc(p, 0) frees p and returns NULL, as glibc's
 *   does (errno is left alone).
 * - Every block of more than 8 bytes is 16-byte aligned. Aligned allocation takes any power of
 *   two up to TM_MAX_ALIGNMENT. An alignment that is not a power of two makes aligned_alloc
 *   return NULL with errno EINVAL, and posix_memalign return EINVAL (also for one that is not
 *   a multiple of sizeof(void *)) without touching *memptr. A larger power of two fails as
 *   out of memory. memalign rounds an alignment that is not a power of two up to one, as
 *   glibc's does.
 * - A pointer that tallymalloc did not hand out (free, realloc or malloc_usable_size of a
 *   stack address, of another allocator's block, of garbage) is not touched. One line goes to
 *   stderr: "tallymalloc: free(): invalid pointer 0x...". The call then does nothing (realloc
 *   returns NULL with errno EINVAL, malloc_usable_size returns 0), or the process aborts when
 *   TALLYMALLOC_ON_ERROR=abort.
 * - operator new calls the new_handler and throws std::bad_alloc when it cannot allocate; the
 *   nothrow forms return nullptr (without calling the new_handler). The library does not link
 *   the C++ runtime: it finds std::get_new_handler and std::__throw_bad_alloc in the program.
 *
 * Options come from the environment, read once without allocating: TALLYMALLOC_PURGE_DELAY
 * (milliseconds before freed pages go back to the OS, default 10), TALLYMALLOC_ON_ERROR
 * (report or abort, default report), TALLYMALLOC_VERBOSE (1 prints the options in force). An
 * unknown TALLYMALLOC_ variable or a bad value gets a one-line warning naming it.
 */
#ifndef TALLYMALLOC_H
#define TALLYMALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest alignment tm_aligned_alloc and friends accept: 2 MiB. */
#define TM_MAX_ALIGNMENT ((size_t)2 << 20)

/* Allocates size bytes; NULL and errno ENOMEM on failure. */
void *tm_malloc(size_t size);

/* Allocates count * size zeroed bytes; NULL and errno ENOMEM on failure or overflow. */
void *tm_calloc(size_t count, size_t size);

/* Resizes block to size bytes, as realloc (see above); NULL on failure, block untouched. */
void *tm_realloc(void *block, size_t size);

/* Frees block (NULL is ignored). */
void tm_free(void *block);

/* Allocates size bytes aligned to alignment (a power of two up to TM_MAX_ALIGNMENT). NULL
 * with errno EINVAL for a bad alignment, ENOMEM when out of memory. */
void *tm_aligned_alloc(size_t alignment, size_t size);

/* How many bytes block can hold (at least what was asked for); 0 for NULL or a pointer that
 * is not tallymalloc's. */
size_t tm_usable_size(const void *block);

/* Whether address lies in memory tallymalloc manages: 1 for every live block it handed out,
 * 0 for NULL, the stack, other allocators' blocks. Constant time, takes no lock. */
int tm_is_ours(const void *address);

/* Returns what the calling thread can give back to the OS now: empty pages, their memory,
 * and segments left by exited threads. */
void tm_collect(void);

#ifdef __cplusplus
}
#endif

#endif /* TALLYMALLOC_H */
