"""What is in the tracing directory and in ``/proc`` (3.6, spec §3.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel_daemon.ftrace.listing import Listing
from kernel_daemon.tracefs.files import (CurrentTracerFile, FtraceListingFile, GeneratedFile,
                                         RegexFile)
from kernel_daemon.tracefs.vfs import Directory, Vfs, build_tree

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel


def dyn_ftrace_total_info(kernel: Kernel) -> str:
    """``"%ld "`` of ``ftrace_update_tot_cnt``, then the (empty on x86) arch info."""
    return f"{kernel.ftrace.ftrace_update_tot_cnt} \n"


def tracing_directory(kernel: Kernel) -> Directory:
    tracing = Directory()
    tracing["available_filter_functions"] = FtraceListingFile(Listing.AVAILABLE)
    tracing["enabled_functions"] = FtraceListingFile(Listing.ENABLED)
    tracing["set_ftrace_filter"] = RegexFile(Listing.FILTER)
    tracing["set_ftrace_notrace"] = RegexFile(Listing.NOTRACE)
    tracing["current_tracer"] = CurrentTracerFile()
    tracing["available_tracers"] = GeneratedFile(lambda k: k.tracing.available_tracers())
    tracing["dyn_ftrace_total_info"] = GeneratedFile(dyn_ftrace_total_info)
    return tracing


def proc_directory(kernel: Kernel) -> Directory:
    proc = Directory()
    proc["modules"] = GeneratedFile(lambda k: k.modules.proc_modules())
    proc["kallsyms"] = GeneratedFile(lambda k: k.kallsyms.proc_kallsyms())
    return proc


def mount(kernel: Kernel) -> Vfs:
    return Vfs(kernel, build_tree(tracing_directory(kernel), proc_directory(kernel)))
