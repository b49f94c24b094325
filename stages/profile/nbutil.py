"""The numba intrinsics and word masks the profiler's kernels share (jsonscan.py, textscan.py).

numba increments and decrements an array's reference count (atomic operations) around every call
that takes it, inlined helpers included; in a loop over short lines or records those cost more
than the work. ``borrowed`` gives a view without a reference count, valid while the caller keeps
the array alive (the kernels borrow their own arguments). ``load8`` reads 8 unaligned bytes at once;
``ctz``, ``popcount`` and ``bswap`` are the CPU's bit instructions.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

HIGH = np.uint64(0x8080808080808080)  # the high bit of each byte of a word (SWAR masks)


@intrinsic
def borrowed(typingctx, arr):
    """arr without its reference count (a NULL meminfo). Every njit call that takes an array increfs
    and decrefs it (atomic operations), which cost more than the parse of a short record; views made
    here skip that. Only valid while the caller keeps arr alive."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(arr)(context, builder, value=args[0])
        out = context.make_array(arr)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(out, name, getattr(ary, name))
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()

    return arr(arr), codegen


@intrinsic
def load8(typingctx, arr, i):
    """The 8 bytes arr[i:i + 8] as a little-endian uint64 (one unaligned load, no bounds check)."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return types.uint64(arr, types.intp), codegen


@intrinsic
def ctz(typingctx, w):
    """Trailing zero bits of a nonzero uint64."""

    def codegen(context, builder, signature, args):
        return builder.zext(builder.cttz(args[0], ir.IntType(1)(1)), ir.IntType(64))

    return types.int64(types.uint64), codegen


@intrinsic
def bswap(typingctx, w):
    """The bytes of a uint64 reversed (a load8 word compared as big-endian: in byte order)."""

    def codegen(context, builder, signature, args):
        return builder.bswap(args[0])

    return types.uint64(types.uint64), codegen


@intrinsic
def popcount(typingctx, w):
    """Set bits of a uint64."""

    def codegen(context, builder, signature, args):
        return builder.zext(builder.ctpop(args[0]), ir.IntType(64))

    return types.int64(types.uint64), codegen
