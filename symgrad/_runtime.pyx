# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Load compiled kernels and call them on NumPy arrays (the runtime of mode "c").

A kernel is a shared library exporting ``sg_main`` and ``sg_abi_version``
(``symgrad/include/sg_abi.h``). :class:`Kernel` loads one, and each call
describes the input arrays to it, releases the GIL while it runs and turns the
outputs it allocated into NumPy arrays that own that memory. The plain-C half
(library loading, the workspace pool) lives in ``csrc/sg_runtime.c``.
"""

from cpython.pycapsule cimport PyCapsule_CheckExact, PyCapsule_GetDestructor, PyCapsule_New
from cpython.ref cimport PyObject, PyTypeObject, Py_INCREF
from libc.stdint cimport int64_t, uint8_t, uintptr_t
from libc.stdlib cimport free, malloc

cimport numpy as cnp

import os
import signal as _signal
import threading as _threading

import numpy as np

cnp.import_array()

__all__ = ["Kernel", "BoundCall", "KernelLoadError", "ABI_VERSION", "MAXDIM",
           "cached_output_bytes", "trim_output_cache"]


cdef extern from "sg_runtime.h" nogil:
    enum:
        SG_ABI_VERSION
        SG_MAXDIM
        SG_OK
        SG_ESHAPE
        SG_EINDEX
        SG_EVALUE
        SG_ENOMEM
        SG_EINTR

    ctypedef struct sg_arr:
        void *data
        int64_t shape[SG_MAXDIM]
        int64_t strides[SG_MAXDIM]

    ctypedef struct sg_ws:
        size_t cap

    ctypedef struct sg_err:
        int code
        char msg[1024]

    ctypedef int (*sg_main_fn)(const sg_arr *, sg_arr *, sg_ws *, sg_err *)

    ctypedef struct sg_slot:
        sg_ws ws
        sg_err err
        sg_arr *in_ "in"
        sg_arr *out
        uint8_t *donate

    ctypedef struct sg_pool:
        size_t n_slots

    int sg_pool_init(sg_pool *p, size_t n_in, size_t n_out)
    sg_slot *sg_pool_take(sg_pool *p)
    void sg_pool_give(sg_pool *p, sg_slot *s)
    void sg_pool_destroy(sg_pool *p)
    size_t sg_pool_arenas(sg_pool *p, size_t *caps, size_t max)
    void *sg_lib_open(const char *path, sg_main_fn *fn, char *msg, size_t msg_len)
    void sg_lib_close(void *h)
    int sg_lib_set_threads(void *h, int loops, int blas)
    int sg_lib_interruptible(void *h)
    int sg_interrupt_arm()
    int sg_interrupt_armed()
    void sg_interrupt_clear()
    double *sg_lib_profile(void *h, int *n)
    void sg_out_free(void *p)
    void sg_out_place(void *p, size_t n)
    size_t sg_out_cached()
    void sg_out_trim()


# Declared here with raw pointers because NumPy steals references in both, and
# Cython's own declarations (or their absence) would hide that.
# The structs are named as NumPy names them, so the C compiler checks the
# pointer types (GCC 14 rejects a PyObject * passed for a PyArray_Descr *).
cdef extern from "numpy/arrayobject.h":
    ctypedef struct DescrStruct "PyArray_Descr"
    ctypedef struct ArrayStruct "PyArrayObject"
    PyTypeObject PyArray_Type
    object PyArray_NewFromDescr(PyTypeObject *subtype, DescrStruct *descr, int nd,
                                cnp.npy_intp *dims, cnp.npy_intp *strides, void *data,
                                int flags, PyObject *obj)
    int PyArray_SetBaseObject(ArrayStruct *arr, PyObject *base) except -1


cdef extern from "Python.h":
    void *PyCapsule_GetPointer(object capsule, const char *name) noexcept
    Py_ssize_t Py_REFCNT(object o)

cdef extern from *:
    """
    /* Giving an array away rests on the GIL: its reference count and the
     * variables' _busy flags are read and set with no other thread running.
     * A free-threaded build has no such guarantee: no array is given away. */
    #ifdef Py_GIL_DISABLED
    #define SG_CAN_DONATE 0
    #else
    #define SG_CAN_DONATE 1
    #endif
    """
    int SG_CAN_DONATE

# An array a call may write an update over (sg_abi.h, donate): C-contiguous,
# aligned and writeable, over memory that it alone holds (see _sole_owner).
cdef int _DONATABLE = (cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED |
                       cnp.NPY_ARRAY_WRITEABLE)


def cached_output_bytes():
    """Bytes of released output blocks the runtime keeps for reuse (at most 256 MiB)."""
    return sg_out_cached()


def trim_output_cache():
    """Return every cached output block to the system."""
    sg_out_trim()


def place_output(size_t address, size_t nbytes):
    """Have the next output of exactly ``nbytes`` that a kernel called on this thread
    allocates written at ``address`` instead: memory the caller owns and keeps alive
    while any array over it lives, 64-byte aligned, with 64 writable bytes before it
    (the runtime's header: releasing the array then leaves the memory alone). One
    output at most takes it; ``address`` 0 cancels what is still placed. The caller
    checks where the output landed (it lands elsewhere when no output has that size)."""
    if address % 64:
        raise ValueError(f"place_output: address {address:#x} is not 64-byte aligned")
    sg_out_place(<void *>address, nbytes)


ABI_VERSION = SG_ABI_VERSION
MAXDIM = SG_MAXDIM


class KernelLoadError(ImportError, RuntimeError):
    """A kernel library that cannot be used: missing, not a kernel, or another ABI version.

    Both an ``ImportError`` (like a failed extension import) and a
    ``RuntimeError``; the cache catches it to rebuild the library.
    ``path`` is the library's path.
    """


cdef void _free_capsule(object capsule) noexcept:
    # Cannot fail: the capsule is unnamed and its pointer non-NULL.
    sg_out_free(PyCapsule_GetPointer(capsule, NULL))


cdef object _owned_array(sg_arr *a, PyObject *descr, int nd, Py_ssize_t itemsize):
    """An ndarray over ``a.data``, which it frees; ``a.data`` is freed on every error too.

    ``a.data`` must be a block of its own from ``ws->out_alloc``, distinct
    from every other output's; only an empty output may be NULL.
    """
    cdef cnp.npy_intp dims[SG_MAXDIM]
    cdef cnp.npy_intp strides[SG_MAXDIM]
    cdef bint empty = False
    cdef int k
    for k in range(nd):
        if a.shape[k] < 0:
            sg_out_free(a.data)
            raise RuntimeError(f"the kernel returned a negative shape {a.shape[k]} on axis {k}")
        dims[k] = <cnp.npy_intp>a.shape[k]
        strides[k] = <cnp.npy_intp>(a.strides[k] * itemsize)
        empty = empty or a.shape[k] == 0
    if empty:
        # The kernel may hand back NULL or a token block: NumPy allocates its own.
        sg_out_free(a.data)
        Py_INCREF(<object>descr)
        return PyArray_NewFromDescr(&PyArray_Type, <DescrStruct *>descr, nd, dims, NULL,
                                    NULL, 0, NULL)
    if a.data == NULL:
        raise RuntimeError("the kernel returned a non-empty output without data")
    try:
        owner = PyCapsule_New(a.data, NULL, _free_capsule)
    except BaseException:
        sg_out_free(a.data)
        raise
    Py_INCREF(<object>descr)
    arr = PyArray_NewFromDescr(&PyArray_Type, <DescrStruct *>descr, nd, dims, strides, a.data,
                               cnp.NPY_ARRAY_WRITEABLE, NULL)
    Py_INCREF(owner)  # PyArray_SetBaseObject steals it
    PyArray_SetBaseObject(<ArrayStruct *>arr, <PyObject *>owner)
    return arr


cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1


cdef inline int _arm_interrupt(bint interruptible) except -1:
    """Before a call of a kernel with loops: Ctrl-C stops them while Python's default SIGINT
    handler is in place (sg_runtime.c); a handler of the user's own is left to itself.

    The flag is lowered first, then any signal Python has noted but not yet handled is
    handled (a Ctrl-C just before the call raises its KeyboardInterrupt here, before
    anything runs), so that none falls between the two: one that comes later raises the
    flag the loop reads.

    Once armed, a call costs a sigaction query (0.2 us): Python's handlers are only looked
    at (signal.getsignal, 2 us) when the runtime's is not in place -- the first call, or
    after signal.signal() put CPython's own back for a handler of the user's."""
    if not interruptible:
        return 0
    sg_interrupt_clear()
    PyErr_CheckSignals()
    if (not sg_interrupt_armed()
            and _threading.current_thread() is _threading.main_thread()
            and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler):
        sg_interrupt_arm()
    return 0


cdef object _interrupted(sg_err *err, object locations):
    """The KeyboardInterrupt of a call its loop stopped at Ctrl-C: Python's own, raised by
    its handler (which the runtime's passed the signal on to), else one naming the loop."""
    sg_interrupt_clear()
    PyErr_CheckSignals()  # raises the KeyboardInterrupt Python noted, as after any call
    return KeyboardInterrupt(_kernel_error(SG_EINTR, err, locations).args[0])


cdef object _kernel_error(int code, sg_err *err, object locations):
    err.msg[sizeof(err.msg) - 1] = 0
    msg = (<bytes>err.msg).decode("utf-8", "replace")
    # Imported here, not at module import: symgrad's __init__ may import this
    # module (through the code generator) before it has finished.
    from symgrad import errors
    from symgrad.codegen.kernel import locate
    # The kernel names its failure site by number (ABI 5): the text is ours.
    msg = locate(msg, locations)
    if code == SG_ESHAPE:
        return errors.ShapeError(msg)
    if code == SG_EINDEX:
        return errors.IndexError(msg)
    if code == SG_EVALUE:
        return ValueError(msg)
    if code == SG_ENOMEM:
        return MemoryError(msg or "the kernel ran out of memory")
    if code == SG_EINTR:
        return RuntimeError(msg)  # (_interrupted makes it a KeyboardInterrupt)
    return RuntimeError(f"the kernel failed with unknown code {code}: {msg}")


cdef int _describe(cnp.ndarray a, sg_arr *d) except -2:
    """Fill ``d`` from ``a``; -1 when ``a`` needs a contiguous copy first.

    Kernels index with element strides and load whole elements, so a stride
    that is not a multiple of the item size or a misaligned pointer (both
    possible in views of raw buffers) cannot be described.
    """
    cdef int nd = cnp.PyArray_NDIM(a), k
    cdef cnp.npy_intp itemsize = cnp.PyArray_ITEMSIZE(a)
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(a)
    cdef char *data = cnp.PyArray_BYTES(a)
    if nd > SG_MAXDIM:
        raise ValueError(f"arrays of more than {SG_MAXDIM} dimensions are not supported")
    if itemsize <= 0:
        raise TypeError(f"cannot pass an array of dtype {a.dtype} to a kernel")
    if cnp.PyArray_ISBYTESWAPPED(a):
        # A copy would keep the byte order: the caller converts (symgrad.function does).
        raise TypeError(f"cannot pass a byte-swapped array (dtype {a.dtype.str}) to a kernel; "
                        f"convert it to native byte order first")
    if <uintptr_t>data % <uintptr_t>itemsize:
        return -1
    d.data = data
    for k in range(nd):
        # A stride of an axis of length 0 or 1 is never used; NumPy leaves it arbitrary.
        if strides[k] % itemsize and shape[k] > 1:
            return -1
        d.shape[k] = shape[k]
        d.strides[k] = strides[k] // itemsize
    return 0


cdef bint _sole_owner(object a):
    """Whether the ndarray ``a`` is the one object through which its memory is reached.

    Either it owns its memory, or it is a kernel's output: its base is the
    capsule ``_owned_array`` made for its block, starting at its data, and
    nothing else holds that capsule. (A view of either kind holds the array
    itself as its base, which the caller's reference count catches.)
    """
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_CHKFLAGS(arr, cnp.NPY_ARRAY_OWNDATA):
        return True
    base = <object>cnp.PyArray_BASE(arr) if cnp.PyArray_BASE(arr) != NULL else None
    return (base is not None and PyCapsule_CheckExact(base)
            and PyCapsule_GetDestructor(base) == <void *>_free_capsule
            and Py_REFCNT(base) == 2  # the array's, and `base` here
            and PyCapsule_GetPointer(base, NULL) == cnp.PyArray_DATA(arr))


cdef list _describe_all(sg_slot *slot, tuple seq, Py_ssize_t n):
    """Describe ``seq[0:n]`` into ``slot.in_``; returns the contiguous copies made of arrays
    the kernel cannot take as they are (None if none), which must outlive the call."""
    cdef Py_ssize_t i
    cdef list copies = None
    for i in range(n):
        a = seq[i]
        if not cnp.PyArray_Check(a):
            raise TypeError(f"kernel input {i} is a {type(a).__name__}, not an ndarray")
        if _describe(<cnp.ndarray>a, &slot.in_[i]) == -1:
            a = cnp.PyArray_NewCopy(<cnp.ndarray>a, cnp.NPY_CORDER)
            if copies is None:
                copies = []
            copies.append(a)
            _describe(<cnp.ndarray>a, &slot.in_[i])
    return copies


cdef inline bint _is_donated(sg_slot *slot, const Py_ssize_t *src, Py_ssize_t i) noexcept:
    return src[i] >= 0 and slot.donate[src[i]] and slot.out[i].data == slot.in_[src[i]].data


cdef class Kernel:
    """A compiled kernel library, callable on NumPy arrays.

    Parameters
    ----------
    path : str or os.PathLike
        The shared library. It must export ``sg_main`` and ``sg_abi_version``
        returning ``SG_ABI_VERSION`` (``symgrad/include/sg_abi.h``).
    n_in : int
        How many arrays every call passes.
    out_dtypes : sequence of dtype-like
        The dtype of each output (native byte order, numeric or bool).
    out_ndims : sequence of int
        The number of dimensions of each output.

    Raises
    ------
    KernelLoadError
        The library cannot be loaded, lacks a symbol, or was built for another
        ABI version. The message names the path.

    Notes
    -----
    A call takes a scratch slot (workspace arena, argument descriptors, error
    record) from a mutex-protected pool, so any number of threads may call one
    kernel at once; the pool grows to the peak number of concurrent calls and
    is freed with the kernel. An arena that was too small for a call is grown
    to what the call needed, for the next one.

    The library is closed when the last kernel object loaded from it is
    deallocated (the loader counts the loads of one path), so that thousands
    of short-lived functions do not pile up memory mappings. Nothing can be
    running in it then: a call holds a reference to its kernel, and so does
    every ``BoundCall``. Arrays it returned are the runtime's memory and
    outlive it; the libraries it brought in (BLAS, libm) are never unloaded,
    so OpenBLAS's threads keep their code.

    Examples
    --------
    >>> k = Kernel("/path/to/kernel.so", 1, ["float64"], [1])   # doctest: +SKIP
    >>> (y,) = k([np.arange(3.0)])                               # doctest: +SKIP
    """

    cdef sg_main_fn main
    cdef void *handle
    cdef sg_pool pool
    cdef bint pool_ready
    cdef Py_ssize_t n_in_, n_out_
    cdef int *ndims
    cdef Py_ssize_t *itemsizes
    cdef tuple descrs
    cdef readonly str path
    # "<op> at <file>:<line>: " of each failure site, by the number the
    # kernel's messages start with (codegen.kernel.location); set by CKernel.
    cdef public object locations
    # Whether the kernel's loops stop at Ctrl-C (its sg_interruptible export).
    cdef readonly bint interruptible

    def __cinit__(self, path, Py_ssize_t n_in, out_dtypes, out_ndims):
        cdef char msg[1024]
        cdef bytes raw = os.fsencode(path)
        cdef const char *c_path = raw
        dtypes = tuple(np.dtype(d) for d in out_dtypes)
        nds = tuple(int(n) for n in out_ndims)
        if n_in < 0:
            raise ValueError(f"n_in must be >= 0, got {n_in}")
        if len(dtypes) != len(nds):
            raise ValueError(f"{len(dtypes)} output dtypes but {len(nds)} output ndims")
        for d, nd in zip(dtypes, nds):
            if d.kind not in "biufc" or not d.isnative:
                raise TypeError(f"a kernel output cannot have dtype {d}")
            if not 0 <= nd <= SG_MAXDIM:
                raise ValueError(f"an output ndim must be in [0, {SG_MAXDIM}], got {nd}")
        self.path = os.fsdecode(raw)
        with nogil:  # dlopen runs the library's constructors and can take a while
            self.handle = sg_lib_open(c_path, &self.main, msg, sizeof(msg))
        if self.handle == NULL:
            err = KernelLoadError(msg.decode("utf-8", "replace"), path=self.path)
            raise err
        self.n_in_, self.n_out_ = n_in, len(dtypes)
        self.interruptible = sg_lib_interruptible(self.handle) != 0
        self.descrs = dtypes
        self.ndims = <int *>malloc(max(len(nds), 1) * sizeof(int))
        self.itemsizes = <Py_ssize_t *>malloc(max(len(nds), 1) * sizeof(Py_ssize_t))
        if self.ndims == NULL or self.itemsizes == NULL:
            raise MemoryError()
        for i in range(self.n_out_):
            self.ndims[i] = nds[i]
            self.itemsizes[i] = dtypes[i].itemsize
        if sg_pool_init(&self.pool, n_in, self.n_out_) != 0:
            raise MemoryError("cannot create the workspace pool's lock")
        self.pool_ready = True

    def __dealloc__(self):
        if self.pool_ready:
            sg_pool_destroy(&self.pool)
        free(self.ndims)
        free(self.itemsizes)
        sg_lib_close(self.handle)  # last: the pool's slots hold no pointer into it
        self.handle = NULL

    @property
    def n_in(self):
        """Number of input arrays a call takes."""
        return self.n_in_

    @property
    def out_dtypes(self):
        """Tuple of the outputs' dtypes."""
        return self.descrs

    @property
    def out_ndims(self):
        """Tuple of the outputs' numbers of dimensions."""
        return tuple(self.ndims[i] for i in range(self.n_out_))

    def __repr__(self):
        return f"<symgrad kernel {self.path!r}: {self.n_in_} in, {self.n_out_} out>"

    def __call__(self, arrays):
        """Run the kernel.

        Parameters
        ----------
        arrays : list or tuple of numpy.ndarray
            Exactly ``n_in`` arrays of the dtypes and ndims the kernel was
            generated for (the caller checks those). Any strides work:
            non-contiguous, negative, zero; a misaligned array or one whose
            strides are not whole elements is copied first.

        Returns
        -------
        list of numpy.ndarray
            New writeable arrays, one per output, owned by the caller.

        Raises
        ------
        symgrad.ShapeError, symgrad.IndexError, ValueError, MemoryError
            The kernel reported a shape mismatch, an index out of range, a bad
            value or an allocation failure; the message is the kernel's.
        """
        cdef Py_ssize_t i
        cdef int rc
        cdef sg_slot *slot
        cdef sg_main_fn entry = self.main
        cdef list copies = None
        cdef tuple seq
        # A tuple, not the caller's list: the kernel reads the arrays without
        # the GIL, and another thread emptying that list must not free them.
        if isinstance(arrays, tuple):
            seq = <tuple>arrays
        elif isinstance(arrays, list):
            seq = tuple(<list>arrays)
        else:
            raise TypeError(f"a kernel takes a list or tuple of arrays, not {type(arrays).__name__}")
        if len(seq) != self.n_in_:
            raise TypeError(f"the kernel takes {self.n_in_} arrays, got {len(seq)}")
        slot = sg_pool_take(&self.pool)
        if slot == NULL:
            raise MemoryError("cannot allocate a kernel workspace")
        try:
            copies = _describe_all(slot, seq, self.n_in_)  # alive until the kernel has returned
            _arm_interrupt(self.interruptible)
            with nogil:
                rc = entry(slot.in_, slot.out, &slot.ws, &slot.err)
            if rc == SG_EINTR:
                raise _interrupted(&slot.err, self.locations)
            if rc != SG_OK:
                raise _kernel_error(rc, &slot.err, self.locations)
            return self._outputs(slot)
        finally:
            sg_pool_give(&self.pool, slot)

    cdef list _outputs(self, sg_slot *slot, const Py_ssize_t *src=NULL, tuple inputs=None):
        """The outputs as arrays. With ``src``: output i whose data is that of donated
        kernel input ``src[i]`` (>= 0) is that input's array, ``inputs[src[i]]``."""
        cdef Py_ssize_t i = 0, j
        outs = []
        try:
            while i < self.n_out_:
                if src != NULL and _is_donated(slot, src, i):
                    outs.append(inputs[src[i]])
                else:
                    outs.append(_owned_array(&slot.out[i], <PyObject *>self.descrs[i],
                                             self.ndims[i], self.itemsizes[i]))
                i += 1
        except BaseException:
            for j in range(i + 1, self.n_out_):  # output i was freed by _owned_array
                if src == NULL or not _is_donated(slot, src, j):
                    sg_out_free(slot.out[j].data)
            raise
        return outs

    def set_num_threads(self, int loops, int blas=0):
        """Use ``loops`` threads in this kernel's large loops, and ``blas`` threads
        (``loops`` when 0) in matrix products.

        The loop setting belongs to the library (every kernel object loaded
        from the same path shares it); the products' setting is process-wide.
        OpenBLAS itself runs on one thread: a large product is cut into blocks
        by its shape alone and the blocks shared among the threads
        (sg_blas_gemm in sg_ops.c), so results do not depend on either count.
        Returns False when the library has no ``sg_set_num_threads`` export.
        """
        cdef int rc
        if loops < 1 or blas < 0:
            raise ValueError(f"thread counts must be >= 1 (loops) and >= 0 (blas), "
                             f"got {loops} and {blas}")
        with nogil:
            rc = sg_lib_set_threads(self.handle, loops, blas)
        return rc == 0

    def profile_times(self):
        """Seconds spent in each timed node over all calls (a kernel built with profiling).

        An empty list for a kernel built without. Calls running at the same
        time add into the same counters, so their sum can exceed wall time.
        """
        cdef int n = 0
        cdef double *t = sg_lib_profile(self.handle, &n)
        return [t[i] for i in range(n)] if t != NULL else []

    def arena_sizes(self):
        """Sizes in bytes of the arenas of the workspaces not in use by a call.

        One per workspace the kernel has made (one per concurrent call); each
        has grown to the most any call on it wanted. ``sg.explain`` reports the
        largest as the workspace a call takes.
        """
        cdef size_t caps[256]
        cdef size_t n = sg_pool_arenas(&self.pool, caps, 256)
        return [caps[i] for i in range(n)]


cdef class BoundCall:
    """A compiled function's whole call path: check the arguments, run, store updates.

    Built once per compiled function; each call checks every positional
    argument against its input (an ndarray of exactly the dtype and ndim,
    within the static shape, passes as is; anything else goes through
    ``convert(i, value)``, which converts without loss or raises), appends the
    current values of the shared variables and the constants, runs the kernel
    with the GIL released, stores the trailing results into the updated
    shared variables' ``_value`` and returns the leading ``n_out`` results.

    Updates in place: for each ``(output, input)`` pair of ``donations`` (an
    update of the shared variable that is kernel input ``input``, which the
    kernel can write over the variable's memory), the call gives that memory
    away when nothing but the variable references its array (a reference
    count of exactly the variable's and this call's own, checked right
    before the kernel runs) and the array alone holds aligned, C-contiguous,
    writeable memory. While the kernel runs, the variable's ``_busy`` is set:
    other calls, and ``get_value``, wait for it instead of reading a
    half-written value.

    Parameters
    ----------
    kernel : Kernel
    dtypes : sequence of numpy.dtype
        The inputs' dtypes.
    ndims : sequence of int
    statics : sequence of (tuple or None)
        Each input's static shape (ints or None per axis), or None when no
        axis is fixed.
    convert : callable
        ``convert(i, value) -> ndarray`` for arguments that need a check or a
        conversion beyond the fast test (raises ``symgrad.InputError``).
    shared : sequence
        Objects whose ``_value`` arrays follow the inputs (shared variables).
    consts : sequence of numpy.ndarray
        Arrays that follow the shared values.
    updated : sequence
        Objects whose ``_value`` receives the results after the first ``n_out``.
    n_out : int
    donations : sequence of (int, int), optional
        ``(kernel output, kernel input)``: an update the kernel may write
        over the memory of that input, which must be the updated object's.
    update_checks : sequence of (int, tuple of (int, int)), optional
        ``(j, ((axis, length), ...))``: lengths the result of update ``j``
        must have (its variable's static shape). Every update is checked
        before any is stored; ``update_error(j, shape)`` makes the exception
        raised then. (The kernel writes nothing in place when one of these
        is wrong: see ``codegen.kernel._emit_in_place``.)
    update_error : callable, optional
    """

    cdef Kernel kernel
    cdef tuple dtypes, statics, shared, consts, updated
    cdef object convert
    cdef int *ndims_in
    cdef Py_ssize_t n_args, n_out_
    cdef Py_ssize_t *out_src     # per kernel output: the input it may be written over, or -1
    cdef tuple donors            # (kernel input index, shared position) of each donation
    cdef tuple upd_checks        # (update, ((axis, length), ...)) to check before storing any
    cdef object upd_error

    def __cinit__(self, Kernel kernel, dtypes, ndims, statics, convert, shared, consts, updated,
                  Py_ssize_t n_out, donations=(), update_checks=(), update_error=None):
        self.kernel = kernel
        self.dtypes = tuple(np.dtype(d) for d in dtypes)
        self.statics = tuple(None if s is None else tuple(s) for s in statics)
        self.convert = convert
        self.shared = tuple(shared)
        self.consts = tuple(np.asarray(c) for c in consts)
        self.updated = tuple(updated)
        self.n_args = len(self.dtypes)
        self.n_out_ = n_out
        nds = [int(n) for n in ndims]
        if len(nds) != self.n_args or len(self.statics) != self.n_args:
            raise ValueError("dtypes, ndims and statics must have one entry per input")
        if self.n_args + len(self.shared) + len(self.consts) != kernel.n_in_:
            raise ValueError(f"the kernel takes {kernel.n_in_} arrays, but {self.n_args} inputs, "
                             f"{len(self.shared)} shared values and {len(self.consts)} constants "
                             f"were given")
        if not 0 <= n_out <= kernel.n_out_ or kernel.n_out_ - n_out != len(self.updated):
            raise ValueError("n_out plus the updated variables must equal the kernel's outputs")
        self.ndims_in = <int *>malloc(max(self.n_args, 1) * sizeof(int))
        self.out_src = <Py_ssize_t *>malloc(max(kernel.n_out_, 1) * sizeof(Py_ssize_t))
        if self.ndims_in == NULL or self.out_src == NULL:
            raise MemoryError()
        for i in range(self.n_args):
            self.ndims_in[i] = nds[i]
        for i in range(kernel.n_out_):
            self.out_src[i] = -1
        donors = []
        for o, k in donations:
            o, k = int(o), int(k)
            j = k - self.n_args
            if not (n_out <= o < kernel.n_out_ and 0 <= j < len(self.shared)
                    and self.updated[o - n_out] is self.shared[j]) or self.out_src[o] != -1:
                raise ValueError(f"donation ({o}, {k}) is not an update of that shared input")
            self.out_src[o] = k
            donors.append((k, j))
        self.donors = tuple(donors)
        self.upd_checks = tuple((int(j), tuple((int(a), int(n)) for a, n in axes))
                                for j, axes in update_checks)
        for j, axes in self.upd_checks:
            if not 0 <= j < len(self.updated) or any(not 0 <= a < kernel.ndims[n_out + j]
                                                     for a, _ in axes):
                raise ValueError(f"update check ({j}, {axes}) names no axis of an update")
        if self.upd_checks and not callable(update_error):
            raise TypeError("update_checks need a callable update_error")
        self.upd_error = update_error

    def __dealloc__(self):
        free(self.ndims_in)
        free(self.out_src)

    cdef bint _fits(self, object a, Py_ssize_t i):
        cdef cnp.ndarray arr
        cdef cnp.npy_intp *dims
        cdef int k
        if type(a) is not np.ndarray:
            return False
        arr = <cnp.ndarray>a
        if cnp.PyArray_NDIM(arr) != self.ndims_in[i]:
            return False
        want = self.dtypes[i]
        descr = <object><PyObject *>cnp.PyArray_DESCR(arr)
        if descr is not want and not (descr == want and descr.isnative):
            return False
        static = self.statics[i]
        if static is not None:
            dims = cnp.PyArray_DIMS(arr)
            for k in range(self.ndims_in[i]):
                s = (<tuple>static)[k]
                if s is not None and <cnp.npy_intp>(<long long>s) != dims[k]:
                    return False
        return True

    cdef object _scalar(self, object a, Py_ssize_t i):
        """A Python float for a 0-d float input, as a 0-d array; None for anything else."""
        cdef cnp.ndarray arr
        cdef int num
        if self.ndims_in[i] != 0:
            return None
        num = (<cnp.dtype>self.dtypes[i]).type_num
        if num == cnp.NPY_FLOAT64:
            arr = cnp.PyArray_SimpleNew(0, NULL, num)
            (<double *>cnp.PyArray_DATA(arr))[0] = <double>a
            return arr
        if num == cnp.NPY_FLOAT32:
            arr = cnp.PyArray_SimpleNew(0, NULL, num)
            (<float *>cnp.PyArray_DATA(arr))[0] = <float><double>a
            return arr
        return None

    cdef list _shared_values(self):
        """The shared variables' current arrays, none of them being written by another call."""
        cdef object s
        while True:
            for s in self.shared:
                if s._busy:
                    s._wait_idle()  # releases the GIL until that call is done
                    break
            else:
                # No GIL release from the last check to here: no call can start
                # writing over one of these arrays before this one holds it.
                return [s._value for s in self.shared]

    cdef bint _give(self, sg_slot *slot, list shared_vals):
        """Mark in ``slot`` the shared arrays this call may write over (see the class doc).

        Runs right before the kernel, allocating no Python object: a garbage
        collection here could run a finalizer that takes a reference to an
        array already judged unreferenced, or that waits on ``_busy``.
        Returns whether any array was given away.
        """
        cdef Py_ssize_t k, j
        cdef bint any_given = False
        for k, j in self.donors:
            a = shared_vals[j]
            # the variable, the list, the inputs tuple and `a`: nobody else can see it
            if (type(a) is not np.ndarray or Py_REFCNT(a) != 4
                    or cnp.PyArray_SIZE(<cnp.ndarray>a) == 0
                    or (cnp.PyArray_FLAGS(<cnp.ndarray>a) & _DONATABLE) != _DONATABLE
                    or cnp.PyArray_ISBYTESWAPPED(<cnp.ndarray>a)
                    or slot.in_[k].data != cnp.PyArray_DATA(<cnp.ndarray>a)  # not a copy
                    or not _sole_owner(a)):
                continue
            slot.donate[k] = 1
            (<object>self.shared[j])._busy = 1
            any_given = True
        return any_given

    cdef void _release(self, sg_slot *slot):
        """Clear ``_busy`` of the variables ``_give`` marked (their writes are done)."""
        cdef Py_ssize_t k, j
        for k, j in self.donors:
            if slot.donate[k]:
                (<object>self.shared[j])._busy = 0

    cdef int _check_updates(self, list outs) except -1:
        """Raise ``update_error`` for the first update whose result breaks a checked length."""
        cdef Py_ssize_t j, a
        cdef cnp.npy_intp *dims
        for j, axes in self.upd_checks:
            r = outs[self.n_out_ + j]
            dims = cnp.PyArray_DIMS(<cnp.ndarray>r)
            for a, n in axes:
                if dims[a] != <cnp.npy_intp>n:
                    raise self.upd_error(j, r.shape)
        return 0

    def __call__(self, *args):
        cdef Kernel k = self.kernel
        cdef Py_ssize_t i, j, n = self.n_args
        cdef int rc
        cdef sg_slot *slot
        cdef sg_main_fn entry = k.main
        cdef list keep = None
        cdef list outs
        cdef bint given = False
        if len(args) != n:
            raise TypeError(f"expected {n} arguments, got {len(args)}")
        # Conversions first (they may raise), holding the GIL and no slot.
        for i in range(n):
            a = args[i]
            if not self._fits(a, i):
                if keep is None:
                    keep = list(args)
                keep[i] = self._scalar(a, i) if type(a) is float else None
                if keep[i] is None:
                    keep[i] = self.convert(i, a)
        cdef tuple vals = args if keep is None else tuple(keep)
        cdef list shared_vals = self._shared_values()
        a = None
        cdef tuple inputs = vals + tuple(shared_vals) + self.consts
        slot = sg_pool_take(&k.pool)
        if slot == NULL:
            raise MemoryError("cannot allocate a kernel workspace")
        try:
            copies = _describe_all(slot, inputs, k.n_in_)  # alive until the kernel has returned
            if SG_CAN_DONATE and self.donors:
                given = self._give(slot, shared_vals)
            _arm_interrupt(k.interruptible)
            with nogil:
                rc = entry(slot.in_, slot.out, &slot.ws, &slot.err)
            if given:  # written: readers may go on (before anything can run a finalizer)
                self._release(slot)
                given = False
            if rc == SG_EINTR:
                raise _interrupted(&slot.err, k.locations)
            if rc != SG_OK:
                raise _kernel_error(rc, &slot.err, k.locations)
            outs = k._outputs(slot, self.out_src, inputs)
            if self.upd_checks:  # every update before any is stored
                self._check_updates(outs)
            for j in range(len(self.updated)):
                (<object>self.updated[j])._value = outs[self.n_out_ + j]
        finally:
            if given:
                self._release(slot)
            sg_pool_give(&k.pool, slot)
        if len(self.updated):
            del outs[self.n_out_:]
        return outs
