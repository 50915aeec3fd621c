/* Python frames for tallymalloc's sampled profiles (tm_profile_set_python_frames).
 *
 * tallymalloc_python_frames runs inside the allocator, on a sampled allocation: it must not
 * allocate, take the GIL or call back into Python. It reports frames only when the calling
 * thread holds the GIL (always so in the mem and obj domains), read straight from the
 * interpreter's frame chain: CPython 3.11 and later keep frames in their own stack
 * (_PyInterpreterFrame, an internal structure, hence Py_BUILD_CORE and this file being compiled
 * against the very interpreter it runs in), and asking for a frame object there could create
 * one, which allocates. 3.9 and 3.10 frames are objects already and are walked through their
 * public fields.
 *
 * Each code object reported is kept alive with one reference of ours (taken under the GIL,
 * the first time it is seen, in a fixed table that never allocates), so that its names can be
 * read later: tallymalloc_python_code_names hands them to the library before the interpreter
 * finalises, and tallymalloc_python_code_is_kept lets profile() read them.
 */
#define PY_SSIZE_T_CLEAN
#include <patchlevel.h>
#if PY_VERSION_HEX >= 0x030B0000
#define Py_BUILD_CORE 1
#endif
#include <Python.h>
#if PY_VERSION_HEX >= 0x030B0000
#include <internal/pycore_frame.h>
#endif
#include <stdint.h>

/* The code objects we hold a reference to: open addressing on their addresses. */
#define KEPT_SLOTS (1 << 16)
static uintptr_t kept[KEPT_SLOTS];
static size_t kept_count;

static size_t first_slot(uintptr_t code) {
  return (size_t)((code >> 4) * 0x9e3779b97f4a7c15ull) & (KEPT_SLOTS - 1);
}

/* Takes a reference to code the first time it is seen; a full table keeps no more, and their
 * frames are reported without names being kept alive (their names are then read only while
 * they live). The GIL orders callers, except on a free-threaded build, where two threads may
 * meet here: slots are claimed with an atomic exchange, so each code object is kept once. */
static int keep(PyCodeObject *code) {
  uintptr_t address = (uintptr_t)code;
  for (size_t slot = first_slot(address);; slot = (slot + 1) & (KEPT_SLOTS - 1)) {
    uintptr_t seen = __atomic_load_n(&kept[slot], __ATOMIC_ACQUIRE);
    if (seen == address) return 1;
    if (seen != 0) continue;
    if (__atomic_fetch_add(&kept_count, 1, __ATOMIC_RELAXED) >= KEPT_SLOTS / 8 * 7) {
      __atomic_fetch_sub(&kept_count, 1, __ATOMIC_RELAXED);
      return 0;
    }
    uintptr_t empty = 0;
    if (__atomic_compare_exchange_n(&kept[slot], &empty, address, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
      Py_INCREF(code);
      return 1;
    }
    __atomic_fetch_sub(&kept_count, 1, __ATOMIC_RELAXED);
    if (empty == address) return 1;
  }
}

int tallymalloc_python_code_is_kept(uintptr_t address) {
  if (address == 0) return 0;
  for (size_t slot = first_slot(address);; slot = (slot + 1) & (KEPT_SLOTS - 1)) {
    uintptr_t seen = __atomic_load_n(&kept[slot], __ATOMIC_ACQUIRE);
    if (seen == address) return 1;
    if (seen == 0) return 0;
  }
}

/* The thread state of the calling thread if it holds the GIL, else NULL. */
static PyThreadState *holder(void) {
  PyThreadState *mine = PyGILState_GetThisThreadState();
  if (mine == NULL) return NULL;
#if PY_VERSION_HEX >= 0x030D0000
  PyThreadState *current = PyThreadState_GetUnchecked();
#else
  PyThreadState *current = _PyThreadState_UncheckedGet();
#endif
  return mine == current ? mine : NULL;
}

#define ENTRY ((uintptr_t)1)

size_t tallymalloc_python_frames(uintptr_t *out, size_t capacity) {
  PyThreadState *state = holder();
  if (state == NULL) return 0;
  size_t count = 0;
#if PY_VERSION_HEX >= 0x030B0000
#if PY_VERSION_HEX >= 0x030D0000
  _PyInterpreterFrame *frame = state->current_frame;
#else
  _PyInterpreterFrame *frame = state->cframe != NULL ? state->cframe->current_frame : NULL;
#endif
  for (; frame != NULL && count < capacity; frame = frame->previous) {
#if PY_VERSION_HEX >= 0x030C0000
    /* An evaluation loop's entry pushes a shim frame below the first frame it runs: the
     * frame above it (the last one reported) is where that loop's C frame came in. */
    if (frame->owner == FRAME_OWNED_BY_CSTACK) {
      if (count > 0) out[2 * (count - 1)] |= ENTRY;
      continue;
    }
#endif
    if (_PyFrame_IsIncomplete(frame)) continue;
#if PY_VERSION_HEX >= 0x030D0000
    if (!PyCode_Check(frame->f_executable)) continue;
    PyCodeObject *code = _PyFrame_GetCode(frame);
#else
    PyCodeObject *code = frame->f_code;
#endif
    int line = PyCode_Addr2Line(code, _PyInterpreterFrame_LASTI(frame) * (int)sizeof(_Py_CODEUNIT));
    keep(code);
    out[2 * count] = (uintptr_t)code;
#if PY_VERSION_HEX < 0x030C0000
    if (frame->is_entry) out[2 * count] |= ENTRY;
#endif
    out[2 * count + 1] = line > 0 ? (uintptr_t)line : 0;
    count++;
  }
#else
  /* 3.9 and 3.10: one evaluation loop call per frame. */
  for (PyFrameObject *frame = state->frame; frame != NULL && count < capacity;
       frame = frame->f_back) {
    keep(frame->f_code);
    out[2 * count] = (uintptr_t)frame->f_code | ENTRY;
    int line = PyFrame_GetLineNumber(frame);
    out[2 * count + 1] = line > 0 ? (uintptr_t)line : 0;
    count++;
  }
#endif
  return count;
}

/* The function name (qualified from 3.11) and file of the kept code object at address, as
 * new references; 0 on success. The GIL is held. */
int tallymalloc_python_code_names(uintptr_t address, PyObject **function, PyObject **file) {
  if (!tallymalloc_python_code_is_kept(address)) return -1;
  PyCodeObject *code = (PyCodeObject *)address;
#if PY_VERSION_HEX >= 0x030B0000
  *function = Py_NewRef(code->co_qualname);
#else
  Py_INCREF(code->co_name);
  *function = code->co_name;
#endif
  Py_INCREF(code->co_filename);
  *file = code->co_filename;
  return 0;
}

/* Calls each(address) for every kept code object. */
void tallymalloc_python_for_each_code(void (*each)(uintptr_t address, void *context),
                                      void *context) {
  for (size_t slot = 0; slot < KEPT_SLOTS; slot++) {
    uintptr_t address = __atomic_load_n(&kept[slot], __ATOMIC_ACQUIRE);
    if (address != 0) each(address, context);
  }
}
