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
 *   two up to TM_MAX_ALIGNMENT (2^45; from 4 MiB on, each block gets a mapping placed for
 *   it, so whether one can be had is the kernel's answer). An alignment that is not a power of two makes aligned_alloc
 *   return NULL with errno EINVAL, and posix_memalign return EINVAL (also for one that is not
 *   a multiple of sizeof(void *)) without touching *memptr. A larger power of two fails as
 *   out of memory. memalign rounds an alignment that is not a power of two up to one, as
 *   glibc's does.
 * - A pointer that tallymalloc did not hand out (free, realloc or malloc_usable_size of a
 *   stack address, of another allocator's block, of garbage) is not touched. One line goes to
 *   stderr: "tallymalloc: free(): invalid pointer 0x...". The call then does nothing (realloc
 *   returns NULL with errno EINVAL, malloc_usable_size returns 0), or the process aborts when
 *   TALLYMALLOC_ON_ERROR=abort. The same holds for a pointer inside one of tallymalloc's blocks
 *   that is not its start ("... (inside tallymalloc's memory, not the start of a block)"),
 *   except that secure mode and the hardened build always abort on one.
 * - operator new calls the new_handler and throws std::bad_alloc when it cannot allocate; the
 *   nothrow forms return nullptr (without calling the new_handler). The library does not link
 *   the C++ runtime: it finds std::get_new_handler and std::__throw_bad_alloc in the program.
 *
 * Domains (allocator families). Every block belongs to one: the standard functions and the
 * tm_* ones above allocate in TM_DOMAIN_RAW; TM_DOMAIN_MEM and TM_DOMAIN_OBJ are CPython's
 * PyMem and PyObject families; tm_domain_register adds more (up to TM_MAX_DOMAINS in all).
 * Blocks of different domains never share a page, and a block knows its domain.
 * - A block must be freed (or reallocated) through its own family. Doing otherwise (free() of
 *   a TM_DOMAIN_MEM block, tm_domain_free(TM_DOMAIN_OBJ, p) of a malloc block) is a mismatch:
 *   it is always detected, counted in the stats of the block's domain, and the block is still
 *   freed correctly (a mismatched realloc moves the block into the family it was called
 *   through). TALLYMALLOC_ON_MISMATCH says what else happens: warn (default: one stderr line
 *   naming the address and both domains, the first time each pair of domains is mixed up),
 *   abort (the line, then abort()), or ignore.
 * - An id that names no registered domain makes tm_domain_malloc and friends return NULL with
 *   errno EINVAL; tm_domain_free then prints one line and frees the block through its own
 *   family.
 *
 * Stats. Counters live in each thread's heap and are merged when read, so reading never
 * blocks an allocating thread and never shows a torn value; a snapshot is not taken at one
 * instant. Every malloc and free is counted at once, so a read from any thread sees every
 * allocation and free made before it. Peak bytes are published in steps: they may be low, per
 * thread allocating in the domain, by 256 KiB plus one page of blocks per size class (64 KiB
 * for blocks up to 8 KiB, 512 KiB up to 64 KiB), and high by what other threads freed since
 * they last published their counts (every 512 slow paths or 262,144 frees, every 256 KiB of
 * emptied pages, and at exit). Outside debug mode a block does not record its requested size, so "live_bytes"
 * counts usable bytes there. The JSON schema is docs/stats-schema.json.
 *
 * Options come from the environment, read once without allocating: TALLYMALLOC_PURGE_DELAY
 * (milliseconds before freed pages go back to the OS, default 10; the delay in force grows
 * up to 64 times that while memory given back is soon wanted again), TALLYMALLOC_ON_ERROR
 * (report or abort, default report), TALLYMALLOC_ON_MISMATCH (warn, abort or ignore, default
 * warn), TALLYMALLOC_STATS (1: the stats table on stderr at exit; json:PATH: the JSON written
 * to PATH at exit, "%p" in PATH standing for the process id; a child forked without exec
 * writes only when PATH has "%p"; the library's _exit and _Exit write it too before they end
 * the process, and so does a one-shot handler for SIGTERM, SIGINT and SIGHUP, installed when
 * a report to a file is asked for and the signal's disposition is the default, which then
 * lets the signal end the process), TALLYMALLOC_STATS_INTERVAL (milliseconds between the
 * samples of the JSON's timeline, taken by a thread that never allocates; 0, the default,
 * takes none), TALLYMALLOC_VERBOSE (1 prints the options in force), TALLYMALLOC_SECURE (1:
 * encoded, checked free lists, double-free checks, shuffled blocks and guard pages, at the
 * cost of a slow path on every call; libtallymalloc-secure.so, the hardened build, has it
 * always on with the checks in its fast paths), TALLYMALLOC_HUGE_PAGES (1: huge blocks'
 * mappings of 8 MiB or more, and the segments of blocks over 8 KiB, ask for transparent huge
 * pages; 0, the default: they do not). An unknown TALLYMALLOC_ variable or a bad value gets a
 * one-line warning naming it.
 */
#ifndef TALLYMALLOC_H
#define TALLYMALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest alignment tm_aligned_alloc and friends accept: 2 MiB. */
#define TM_MAX_ALIGNMENT ((size_t)1 << 45)

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

/* The built-in domains, and how many domains a process can have. */
#define TM_DOMAIN_RAW 0
#define TM_DOMAIN_MEM 1
#define TM_DOMAIN_OBJ 2
#define TM_MAX_DOMAINS 128

/* Registers a domain called name (1 to 31 ASCII letters, digits, '_', '-' or '.'), or finds
 * the one already called that, and returns its id. -1 with errno EINVAL for a bad name (or
 * NULL), ENOSPC when all TM_MAX_DOMAINS ids are taken. */
int tm_domain_register(const char *name);

/* The name of domain id ("raw", "mem", ...), or NULL with errno EINVAL. The string lives as
 * long as the process. */
const char *tm_domain_name(int domain);

/* The domain of block, or -1 with errno EINVAL for NULL or a pointer that is not ours. */
int tm_domain_of(const void *block);

/* malloc, calloc, aligned_alloc and realloc through the domain's family: the same contract as
 * the standard functions, plus NULL with errno EINVAL for an id that is not registered. */
void *tm_domain_malloc(int domain, size_t size);
void *tm_domain_calloc(int domain, size_t count, size_t size);
void *tm_domain_aligned_alloc(int domain, size_t alignment, size_t size);
void *tm_domain_realloc(int domain, void *block, size_t size);

/* Frees block through the domain's family (NULL is ignored; a mismatch is handled as above). */
void tm_domain_free(int domain, void *block);

/* For allocators that wrap another one: frees block and returns 1 when it is a live block of
 * the domain (or NULL); returns 0 and leaves it alone when it is another domain's block or not
 * tallymalloc's at all, so the caller can hand it to the allocator that owns it. */
int tm_domain_free_if_owned(int domain, void *block);

/* CPython's allocator functions for its domain (0 raw, 1 mem, 2 obj), with the signatures of
 * PyMemAllocatorEx's and ignoring its ctx: what the Python package installs with
 * PyMem_SetAllocator. Zero sizes get one byte, as CPython requires. A block that is not
 * tallymalloc's in that domain goes to the fallbacks registered (once, before installing)
 * with tm_python_set_fallbacks. tm_python_functions returns 0, or -1 with errno EINVAL for
 * another domain or a NULL functions. */
struct tm_python_functions {
  void *(*malloc)(void *ctx, size_t size);
  void *(*calloc)(void *ctx, size_t count, size_t size);
  void *(*realloc)(void *ctx, void *block, size_t size);
  void (*free)(void *ctx, void *block);
};
int tm_python_functions(int domain, struct tm_python_functions *functions);
void tm_python_set_fallbacks(void (*free)(int domain, void *block),
                             void *(*realloc)(int domain, void *block, size_t size));

/* Writes the stats as JSON into buffer (at most length bytes, NUL included) and returns its
 * length without the NUL. Called with length 0 (buffer may then be NULL) it returns the size to
 * allocate: an upper bound that still holds when the figures change before the next call (the
 * caller's own malloc of the buffer, other threads' work), so this idiom always yields a
 * complete document:
 *     size_t n = tm_stats_json(NULL, 0);
 *     char *json = malloc(n + 1);
 *     tm_stats_json(json, n + 1);
 * A buffer too small for the whole document gets it without its oldest timeline samples; one
 * too small even for that gets it cut, as snprintf cuts, and the whole length is returned
 * (length or more). The bound does not cover domains registered between the two calls.
 * Does not allocate. */
size_t tm_stats_json(char *buffer, size_t length);

/* One domain's figures (see "Stats" above for how far a peak may be off). */
struct tm_domain_stats {
  uint64_t live_bytes;      /* bytes in live blocks */
  uint64_t peak_bytes;      /* the most live_bytes has been */
  uint64_t live_blocks;     /* blocks allocated and not freed */
  uint64_t allocations;     /* blocks allocated, in all */
  uint64_t frees;           /* blocks freed, in all */
  uint64_t allocated_bytes; /* bytes allocated, in all */
  uint64_t mismatches;      /* this domain's blocks freed through another family */
};

/* Every domain together, for the calls below that say they take it. */
#define TM_ALL_DOMAINS (-1)

/* Fills *out with the figures of domain, or with every domain's added up for TM_ALL_DOMAINS
 * (peak_bytes then being the most all of them held at once, not a sum of peaks): 0, or -1 with
 * errno EINVAL for an id that is not registered or a NULL out. */
int tm_domain_stats(int domain, struct tm_domain_stats *out);

/* Stores in *count how many blocks of domain allocated_in were freed or reallocated through
 * the family of domain freed_through (each also counted in allocated_in's mismatches): 0, or -1
 * with errno EINVAL for an id that is not registered or a NULL count. */
int tm_mismatches(int allocated_in, int freed_through, uint64_t *count);

/* A peak that can start again, for measuring a part of a run (a test) without resetting the
 * process's figures: tm_watermark_reset starts domain's watermark (or, for TM_ALL_DOMAINS, the
 * watermark of every domain together) from its live bytes now (0, or -1 with errno EINVAL for
 * an id that is not registered); tm_watermark stores in *bytes the most the domain, or every
 * domain together, held since (since the process started, if never reset), as precise as its
 * peak_bytes: 0, or -1 with errno EINVAL for a bad id or a NULL bytes. Bytes allocated during
 * the part are the difference of two tm_domain_stats' allocated_bytes. Each takes a snapshot
 * of the stats. */
int tm_watermark_reset(int domain);
int tm_watermark(int domain, uint64_t *bytes);

/* Writes the human stats table into buffer as snprintf would and returns its whole length;
 * with length 0 it returns an upper bound, as tm_stats_json does, so the same idiom works. */
size_t tm_stats_text(char *buffer, size_t length);

/* Prints the human stats table on stream (stderr if NULL). */
void tm_stats_print(FILE *stream);

/* Debug mode (also TALLYMALLOC_DEBUG=1): every block gets a header and guard bytes, fresh
 * bytes are 0xCD, freed blocks are poisoned with 0xDD and held in a quarantine
 * (TALLYMALLOC_QUARANTINE bytes, 16 MiB by default), and misuse is reported on stderr by kind
 * (double free, realloc of a freed block, invalid or interior pointer, domain mismatch, writes
 * past the end or before the start, writes after free, calloc overflow), then aborts unless
 * TALLYMALLOC_ON_ERROR=report. Reports show the offending call's stack, the allocation's, and
 * for a double free or a write after free the first free's (file:line through addr2line), each
 * TALLYMALLOC_DEBUG_DEPTH frames deep (24 by default, up to 64). At exit it checks every block
 * and lists what is still live by allocation site.
 *
 * tm_debug_enable turns it on before the first allocation: 0, or -1 with errno EBUSY if the
 * process has already allocated. tm_debug_check checks every block now and returns how many
 * had a problem (0 outside debug mode). */
int tm_debug_enable(void);
size_t tm_debug_check(void);

/* In debug mode, lists the blocks live now on stderr, by allocation site with their stacks,
 * as at exit; returns how many there are (0 outside debug mode). */
size_t tm_leak_report(void);

/* Writes up to size return addresses of the calling thread into frames, innermost first (the
 * caller's own first), and returns how many, as glibc's backtrace(3) does, with the unwinder
 * debug mode uses: unwinding rules read once from each object's .eh_frame and cached by code
 * address, so code without frame pointers is walked too. Allocates nothing; at most 64
 * frames; 0 if frames is NULL or size is below 1. */
int tm_backtrace(void **frames, int size);

/* Sampled heap profiles (TALLYMALLOC_PROFILE=1 at start-up): each allocation is sampled with
 * chance 1 - exp(-size / N), N the mean bytes between samples (TALLYMALLOC_PROFILE_SAMPLE_BYTES,
 * 512 KiB by default), its stack kept and its free seen, so that each call stack's bytes
 * allocated and live (now and at the peak) are estimated without bias.
 *
 * tm_profile_enable starts sampling (each thread from its next slow path): 0, or -1 with errno
 * EBUSY in debug mode. tm_profile_disable stops it; the profile so far stays.
 * tm_profile_set_sample_bytes sets N (1 to 2^40): 0, or -1 with errno EINVAL.
 * tm_profile_write writes the profile now to path, as raw return addresses and the process's
 * mappings, which `tallymalloc run` symbolises: 0, or -1 with errno set. */
int tm_profile_enable(void);
void tm_profile_disable(void);
int tm_profile_set_sample_bytes(size_t bytes);
int tm_profile_write(const char *path);

/* Python frames in the profile, for the Python package (any interpreter embedding the library
 * may do the same). tm_profile_set_python_frames registers a function that writes the calling
 * thread's Python frames, innermost first, as pairs of words (the code object's address, with
 * bit 0 set on a frame an evaluation loop's C frame entered first; the line) into out, at most
 * capacity frames, and returns how many; it is called on each sampled allocation, must return
 * 0 unless the thread holds the GIL, must not allocate, take the GIL or call back into the
 * allocator, and must keep each code object it reports alive. NULL unregisters it.
 * tm_profile_name_python_code records a code object's function and file names (UTF-8, copied;
 * the first names given for a code object stay) for the profile written at exit: 0, or -1 with
 * errno EINVAL (NULL or a zero code) or ENOMEM (the table is full). */
typedef size_t (*tm_python_frame_source)(uintptr_t *out, size_t capacity);
void tm_profile_set_python_frames(tm_python_frame_source source);
int tm_profile_name_python_code(uintptr_t code, const char *function, const char *file);

#ifdef __cplusplus
}
#endif

#endif /* TALLYMALLOC_H */
