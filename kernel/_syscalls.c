/* kernel._syscalls: the namespace syscalls Python 3.11 lacks, without ctypes.
 *
 * kernel/ns.py calls these when this module is built (scripts/setup.sh runs
 * `python -m kernel.build_syscalls`) and libc through ctypes when it is not. The reason is
 * time on every `rkt run`: importing ctypes and loading libc costs 1.4 ms (Debian's Python)
 * to 2.2 ms (a --enable-shared build), loading this module about 0.1 ms.
 *
 * Each function takes what the syscall takes (str paths; None for a NULL pointer) and
 * raises OSError with errno, with no text of its own: kernel/ns.py words the errors, the
 * same way on either path.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static PyObject *fail(void) { return PyErr_SetFromErrno(PyExc_OSError); }

static PyObject *py_unshare(PyObject *self, PyObject *args) {
    int flags;
    if (!PyArg_ParseTuple(args, "i:unshare", &flags)) return NULL;
    if (unshare(flags) != 0) return fail();
    Py_RETURN_NONE;
}

static PyObject *py_setns(PyObject *self, PyObject *args) {
    int fd, nstype;
    if (!PyArg_ParseTuple(args, "ii:setns", &fd, &nstype)) return NULL;
    if (setns(fd, nstype) != 0) return fail();
    Py_RETURN_NONE;
}

static PyObject *py_mount(PyObject *self, PyObject *args) {
    const char *source, *target, *fstype, *data;
    unsigned long flags;
    if (!PyArg_ParseTuple(args, "zszkz:mount", &source, &target, &fstype, &flags, &data))
        return NULL;
    if (mount(source, target, fstype, flags, data) != 0) return fail();
    Py_RETURN_NONE;
}

static PyObject *py_umount2(PyObject *self, PyObject *args) {
    const char *target;
    int flags;
    if (!PyArg_ParseTuple(args, "si:umount2", &target, &flags)) return NULL;
    if (umount2(target, flags) != 0) return fail();
    Py_RETURN_NONE;
}

static PyObject *py_pivot_root(PyObject *self, PyObject *args) {
    const char *new_root, *put_old;
    if (!PyArg_ParseTuple(args, "ss:pivot_root", &new_root, &put_old)) return NULL;
    if (syscall(SYS_pivot_root, new_root, put_old) != 0) return fail();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"unshare", py_unshare, METH_VARARGS, "unshare(flags)"},
    {"setns", py_setns, METH_VARARGS, "setns(fd, nstype)"},
    {"mount", py_mount, METH_VARARGS, "mount(source, target, fstype, flags, data)"},
    {"umount2", py_umount2, METH_VARARGS, "umount2(target, flags)"},
    {"pivot_root", py_pivot_root, METH_VARARGS, "pivot_root(new_root, put_old)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kernel._syscalls",
    "Namespace syscalls for kernel.ns, without ctypes (see kernel/_syscalls.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__syscalls(void) { return PyModule_Create(&module); }
