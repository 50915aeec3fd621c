# cython: language_level=3
# Cython's "Memory Allocation" SomeMemory class, on tallymalloc's C API: memory acquired in
# __cinit__, resized with realloc's semantics, released in __dealloc__, in a domain of its own.
cimport tallymalloc

tallymalloc.import_api()


cdef class SomeMemory:
    cdef double *data
    cdef size_t count
    cdef int domain

    def __cinit__(self, size_t number, str domain="somememory"):
        self.domain = tallymalloc.domain_register(domain.encode())
        if self.domain < 0:
            raise ValueError(f"bad domain name {domain!r}")
        self.data = <double *> tallymalloc.malloc(self.domain, number * sizeof(double))
        if self.data == NULL:
            raise MemoryError()
        self.count = number

    def resize(self, size_t new_number):
        # Only overwrite the pointer if the resize succeeded: the old block is intact otherwise.
        cdef double *moved = <double *> tallymalloc.realloc(
            self.domain, self.data, new_number * sizeof(double))
        if moved == NULL:
            raise MemoryError()
        self.data = moved
        self.count = new_number

    def fill(self, double start):
        cdef size_t index
        for index in range(self.count):
            self.data[index] = start + index

    def total(self):
        cdef double sum = 0
        cdef size_t index
        for index in range(self.count):
            sum += self.data[index]
        return sum

    def __len__(self):
        return self.count

    def __dealloc__(self):
        tallymalloc.free(self.domain, self.data)


def domain_figures(str domain):
    """(live_blocks, live_bytes, allocations, frees) of a domain, read through the C API."""
    cdef tallymalloc.domain_stats figures
    cdef int id = tallymalloc.domain_register(domain.encode())
    if tallymalloc.get_domain_stats(id, &figures) != 0:
        raise ValueError(domain)
    return figures.live_blocks, figures.live_bytes, figures.allocations, figures.frees
