# cython: language_level=3
# Cython's "Memory Allocation" SomeMemory class as its guide writes it, on the Python heap
# (PyMem_Malloc, PyMem_Realloc, PyMem_Free), and two deliberate mistakes for the pytest
# plugin's test to catch: a class that never frees, and one that frees with C's free().
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdlib cimport free


cdef class SomeMemory:
    cdef double *data

    def __cinit__(self, size_t number):
        self.data = <double *> PyMem_Malloc(number * sizeof(double))
        if not self.data:
            raise MemoryError()

    def resize(self, size_t new_number):
        mem = <double *> PyMem_Realloc(self.data, new_number * sizeof(double))
        if not mem:
            raise MemoryError()
        self.data = mem

    def __dealloc__(self):
        PyMem_Free(self.data)


cdef class LeakyMemory:
    """Forgets its __dealloc__: the block outlives the object."""
    cdef double *data

    def __cinit__(self, size_t number):
        self.data = <double *> PyMem_Malloc(number * sizeof(double))
        if not self.data:
            raise MemoryError()


cdef class WrongFreeMemory:
    """Frees a PyMem_Malloc block with C's free()."""
    cdef double *data

    def __cinit__(self, size_t number):
        self.data = <double *> PyMem_Malloc(number * sizeof(double))
        if not self.data:
            raise MemoryError()

    def __dealloc__(self):
        free(self.data)
