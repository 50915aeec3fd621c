# cython: language_level=3
# tallymalloc's C API for Cython: `cimport tallymalloc`, then allocate, resize and free in any
# domain, and read a domain's figures. Build with include_dirs=[tallymalloc.get_include()] and
# call tallymalloc.import_api() once (it raises ImportError if the package cannot be loaded).
#
#     cimport tallymalloc
#     tallymalloc.import_api()
#     cdef double *data = <double *>tallymalloc.malloc(tallymalloc.DOMAIN_MEM, 8 * n)
#     if data is NULL:
#         raise MemoryError()
#     ...
#     tallymalloc.free(tallymalloc.DOMAIN_MEM, data)

from libc.stdint cimport uint64_t

cdef extern from "tallymalloc_api.h":
    enum:
        DOMAIN_RAW "TALLYMALLOC_DOMAIN_RAW"
        DOMAIN_MEM "TALLYMALLOC_DOMAIN_MEM"
        DOMAIN_OBJ "TALLYMALLOC_DOMAIN_OBJ"
        API_VERSION "TALLYMALLOC_API_VERSION"

    ctypedef struct domain_stats "tallymalloc_domain_stats":
        uint64_t live_bytes
        uint64_t peak_bytes
        uint64_t live_blocks
        uint64_t allocations
        uint64_t frees
        uint64_t allocated_bytes
        uint64_t mismatches

    int import_api "tallymalloc_import"() except -1
    void *malloc "tallymalloc_malloc"(int domain, size_t size) nogil
    void *calloc "tallymalloc_calloc"(int domain, size_t count, size_t size) nogil
    void *realloc "tallymalloc_realloc"(int domain, void *block, size_t size) nogil
    void free "tallymalloc_free"(int domain, void *block) nogil
    size_t usable_size "tallymalloc_usable_size"(const void *block) nogil
    int domain_register "tallymalloc_domain_register"(const char *name) nogil
    int get_domain_stats "tallymalloc_get_domain_stats"(int domain, domain_stats *out) nogil
