"""``bench.perf_profile``: each ``perf script`` sample goes to its row, and where perf may
sample the kernel, a short ``bench.profile`` run splits the servers' CPU with it.

The canned samples below are cut from a real ``perf script -F tid,ip,sym,dso`` of
ftraced (fewer frames, made-up addresses). No figure is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from bench import perf_profile as perf
from bench.profile import Profile
from tests.children import REPO, child_env

PY = "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
K = "[kernel.kallsyms]"
SITE = "/repo/.venv/lib/python3.11/site-packages"
NUMPY = f"{SITE}/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so"
CYGRPC = f"{SITE}/grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so"
UPB = f"{SITE}/google/_upb/_message.abi3.so"
EVAL = [("_PyEval_EvalFrameDefault", PY), ("_PyEval_Vector", PY)]
SYSCALL = [("do_syscall_64", K), ("entry_SYSCALL_64_after_hwframe", K)]
FUTEX_WAIT = [("schedule", K), ("futex_wait", K), ("__x64_sys_futex", K), *SYSCALL,
              ("__futex_abstimed_wait_common", LIBC)]

# (row, call chain leaf first), a few of each kind.
SAMPLES: list[tuple[str, list[tuple[str, str]]]] = [
    (perf.INTERPRETER, EVAL),
    (perf.INTERPRETER, [("_PyObject_Malloc", PY), *EVAL]),
    (perf.NUMPY, [("string_add_loop<(ENCODING)1>", NUMPY), ("ufunc_generic_fastcall", NUMPY),
                  *EVAL]),
    (perf.CYGRPC, [("[unknown]", CYGRPC), ("start_thread", LIBC)]),
    (perf.UPB, [("PyUpb_Message_New", UPB), *EVAL]),
    (perf.LIBC, [("__memmove_avx512_unaligned_erms", LIBC), ("PyBytes_FromStringAndSize", PY)]),
    (perf.OTHER_USER, [("_dl_update_slotinfo", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                       ("__tls_get_addr", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")]),
    (perf.OTHER_USER, [("[unknown]", "[unknown]")]),
    # A futex is a GIL hand-off or a lock wait by its caller beyond libc's wrappers.
    (perf.GIL, [*FUTEX_WAIT, ("pthread_cond_timedwait@@GLIBC_2.3.2", LIBC), ("take_gil", PY),
                *EVAL]),
    (perf.GIL, [("wake_up_q", K), ("futex_wake", K), ("__x64_sys_futex", K), *SYSCALL,
                ("pthread_cond_signal@@GLIBC_2.3.2", LIBC), ("drop_gil", PY), *EVAL]),
    (perf.GIL, [("syscall_exit_to_user_mode", K), *SYSCALL, ("__GI___lll_lock_wake", LIBC),
                ("PyEval_SaveThread", PY)]),
    (perf.LOCKS, [*FUTEX_WAIT, ("__new_sem_wait_slow64.constprop.0", LIBC),
                  ("PyThread_acquire_lock_timed", PY), ("acquire_timed", PY), *EVAL]),
    (perf.LOCKS, [("futex_wake", K), ("__x64_sys_futex", K), *SYSCALL, ("sem_post", LIBC),
                  ("PyThread_release_lock", PY), *EVAL]),
    (perf.OTHER_KERNEL, [*FUTEX_WAIT[:-1], ("syscall", LIBC), ("[unknown]", CYGRPC)]),
    # Sockets and epoll by the system call, in the kernel's frames or, on the way back
    # to user space, libc's wrapper.
    (perf.SOCKETS, [("unix_stream_sendmsg", K), ("____sys_sendmsg", K),
                    ("__x64_sys_sendmsg", K), *SYSCALL, ("sendmsg", LIBC),
                    ("[unknown]", CYGRPC)]),
    (perf.SOCKETS, [("syscall_exit_to_user_mode", K), *SYSCALL, ("__libc_recvmsg", LIBC),
                    ("[unknown]", CYGRPC)]),
    (perf.EPOLL, [("ep_poll", K), ("do_epoll_wait", K), ("__x64_sys_epoll_wait", K),
                  *SYSCALL, ("epoll_wait", LIBC), ("[unknown]", CYGRPC)]),
    (perf.MEMORY, [("clear_page_erms", K), ("handle_mm_fault", K), ("exc_page_fault", K),
                   ("asm_exc_page_fault", K), ("__memmove_avx512_unaligned_erms", LIBC),
                   ("string_add_loop<(ENCODING)1>", NUMPY)]),
    (perf.MEMORY, [("shmem_setattr", K), ("do_sys_ftruncate", K), ("__x64_sys_ftruncate", K),
                   *SYSCALL, ("ftruncate64", LIBC), ("mmap_resize", PY)]),
    (perf.MEMORY, [("unmap_region", K), ("__x64_sys_munmap", K), *SYSCALL, ("munmap", LIBC),
                   ("mmap_object_dealloc", PY)]),
    # Preempted in user space: the kernel's part, which no row explains better.
    (perf.OTHER_KERNEL, [("irqentry_exit_to_user_mode", K), ("asm_sysvec_reschedule_ipi", K),
                         ("PyObject_GC_UnTrack", PY), *EVAL]),
    (perf.OTHER_KERNEL, [("__x64_sys_clone3", K), *SYSCALL, ("clone3", LIBC)]),
]


def script(samples: list[list[tuple[str, str]]]) -> str:
    """The samples as ``perf script -F tid,ip,sym,dso`` prints them."""
    blocks = [f"{10300 + n} \n" + "".join(f"\t{0xffffffff81000130 + i:16x} {symbol} ({dso})\n"
                                          for i, (symbol, dso) in enumerate(frames))
              for n, frames in enumerate(samples)]
    return "\n".join(blocks) + "\n"


def test_each_sample_goes_to_its_row():
    for row, frames in SAMPLES:
        assert perf.row_of(frames) == row, frames
    text = script([frames for _, frames in SAMPLES])
    assert list(perf.samples(text)) == [frames for _, frames in SAMPLES]
    assert perf.attribute(text) == Counter(row for row, _ in SAMPLES)
    assert set(perf.attribute(text)) == set(perf.ROWS)


def test_perf_rows_share_the_cpu_from_proc():
    # 3 samples of 4 in the interpreter, of 2 s of CPU over 1,000 operations.
    native = Counter({perf.INTERPRETER: 3, perf.GIL: 1})
    per_op = Profile(cpu=2.0, window=3.0, operations=1000, native=native).native_per_operation()
    assert per_op == pytest.approx({perf.INTERPRETER: 0.0015, perf.GIL: 0.0005,
                                    "total (from /proc)": 0.002})
    # A stress run's go-to-stop span keeps the window's split.
    narrowed = Profile(2.0, 3.0, 1000, Counter(), native).narrowed(1.0, 250)
    assert narrowed.native_per_operation() == pytest.approx(
        {perf.INTERPRETER: 0.003, perf.GIL: 0.001, "total (from /proc)": 0.004})


def test_without_perf_on_the_path_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "perf is not installed" in perf.unavailable(str(tmp_path))


def test_a_perf_without_control_is_said_unavailable(tmp_path, monkeypatch):
    """The recording switches its events over --control: a perf older than 5.9 would start
    and then fail the whole run; it is found out first, and py-spy profiles alone."""
    old_perf = tmp_path / "perf"
    old_perf.write_text("#!/bin/sh\necho ' usage: perf record [<options>] [<command>]'\n"
                        "exit 129\n")
    old_perf.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "no --control" in perf.unavailable(str(tmp_path))


def test_a_short_profile_with_perf(tmp_path):
    why_not = perf.unavailable(str(tmp_path))
    if why_not:
        pytest.skip(why_not)
    done = subprocess.run([sys.executable, "-m", "bench.profile", "--seconds", "1",
                           "--only", "read", "--out", str(tmp_path)],
                          cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=240)
    if done.returncode and "can it ptrace" in done.stderr:
        pytest.skip("py-spy may not ptrace the servers here")
    assert done.returncode == 0, done.stderr[-4000:]
    profile = json.loads((tmp_path / "profile.json").read_text())["read"]
    for server in ("ftraced", "echo"):
        native = profile[server]["perf"]
        assert native["samples"] > 0, native
        assert perf.INTERPRETER in native["per_operation_us"], native
        assert native["per_operation_us"]["total (from /proc)"] == \
            profile[server]["per_operation_us"]["total (from /proc)"]
    assert "the same CPU by perf" in (tmp_path / "profile.md").read_text()
