"""What is in the tracing directory and in ``/proc`` (3.6, spec §3.1)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from kernel_daemon.ftrace.sysctl import ftrace_enable_sysctl, ftrace_enable_sysctl_read
from kernel_daemon.ftrace.listing import Listing
from kernel_daemon.sysctl import proc_taint, proc_taint_read
from kernel_daemon.tracefs.buffer_files import TracingBuffersFile
from kernel_daemon.tracefs.event_files import SetEventFile, available_events, events_directory
from kernel_daemon.tracefs.files import (FtraceListingFile, FtracePidFile, GeneratedFile,
                                         ProcSeqOperationsFile, ProcSysFile, RegexFile, SimpleFile,
                                         SimpleReadFile, ppos_add_count, ppos_increment)
from kernel_daemon.tracefs.llseek import default_llseek, generic_file_llseek
from kernel_daemon.tracefs.option_files import (README_MSG, FreeBufferFile, OptionsDirectory,
                                                trace_options_file, tracing_max_lat_file)
from kernel_daemon.tracefs.stat_files import TracingStatFile
from kernel_daemon.tracefs.trace_files import (SingleFile, TraceFile, TraceMarkerFile,
                                               TracePipeFile, TracingCpumaskFile,
                                               buffer_size_show, buffer_size_store,
                                               buffer_total_show, cpu_buffer_size_file,
                                               trace_clock_show,
                                               trace_clock_store, tracing_on_show,
                                               tracing_on_store, tracing_stats_read)
from kernel_daemon.tracefs.vfs import Directory, ReadOnlyDirectory, Vfs, build_tree

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
    tracing["set_ftrace_pid"] = FtracePidFile()
    tracing["function_profile_enabled"] = SimpleFile(
        lambda k: k.function_profiler.ftrace_profile_read(),
        lambda k, data: k.function_profiler.ftrace_profile_write(data),
        ppos_update=ppos_add_count, llseek=default_llseek)
    # trace_stat/: a file per registered stat tracer, the profiler's function<cpu>.
    tracing["trace_stat"] = Directory((session.ts.name, TracingStatFile(session))
                                      for session in kernel.all_stat_sessions)
    tracing["tracing_enabled"] = SimpleFile(lambda k: k.tracing.tracing_ctrl_read(),
                                            lambda k, data: k.tracing.tracing_ctrl_write(data),
                                            ppos_update=ppos_add_count,
                                            llseek=generic_file_llseek)
    # set_tracer_fops: tracing_set_trace_read(), tracing_set_trace_write().
    tracing["current_tracer"] = SimpleFile(
        lambda k: k.tracing.current_trace.name + "\n",
        lambda k, data: k.tracing.tracing_set_trace_write(data),
        ppos_update=ppos_add_count, llseek=generic_file_llseek)
    tracing["available_tracers"] = GeneratedFile(lambda k: k.tracing.available_tracers())
    tracing["dyn_ftrace_total_info"] = SimpleReadFile(dyn_ftrace_total_info,
                                                      llseek=generic_file_llseek)
    tracing["trace"] = TraceFile()
    tracing["trace_pipe"] = TracePipeFile()
    tracing["tracing_on"] = SimpleFile(tracing_on_show, tracing_on_store,
                                       ppos_update=ppos_increment, llseek=default_llseek)
    tracing["buffer_size_kb"] = SimpleFile(buffer_size_show, buffer_size_store,
                                           ppos_update=ppos_add_count, llseek=generic_file_llseek)
    tracing["buffer_total_size_kb"] = SimpleReadFile(buffer_total_show,
                                                     llseek=generic_file_llseek)
    tracing["trace_marker"] = TraceMarkerFile()
    tracing["trace_clock"] = SingleFile(trace_clock_show, trace_clock_store,
                                        ppos_update=ppos_add_count)
    tracing["tracing_cpumask"] = TracingCpumaskFile()
    tracing["trace_options"] = trace_options_file()
    tracing["options"] = OptionsDirectory(kernel)
    # tracing_max_latency is CONFIG_TRACER_MAX_TRACE's: a kernel with a latency tracer.
    tracing["tracing_max_latency"] = tracing_max_lat_file("tracing_max_latency")
    tracing["tracing_thresh"] = tracing_max_lat_file("tracing_thresh")
    # trace_printk.c's init_trace_printk_function_export(): the address and text of each
    # trace_printk() format, the core kernel's __trace_printk_fmt section then the
    # modules' copies; the model's kernel and modules have none, so t_start() finds none.
    tracing["printk_formats"] = GeneratedFile(lambda k: "")
    tracing["README"] = SimpleReadFile(lambda k: README_MSG, llseek=generic_file_llseek)
    tracing["saved_cmdlines"] = SimpleReadFile(
        lambda k: k.saved_cmdlines.tracing_saved_cmdlines_read(), llseek=generic_file_llseek)
    tracing["free_buffer"] = FreeBufferFile()
    per_cpu = tracing["per_cpu"] = Directory()
    for cpu in range(kernel.options.cpus):
        # tracing_init_debugfs_percpu().
        cpu_dir = per_cpu[f"cpu{cpu}"] = Directory()
        cpu_dir["trace_pipe"] = TracePipeFile(cpu)
        cpu_dir["trace"] = TraceFile(cpu)
        cpu_dir["trace_pipe_raw"] = TracingBuffersFile(cpu)
        cpu_dir["stats"] = SimpleReadFile(partial(tracing_stats_read, cpu=cpu),
                                          llseek=generic_file_llseek)
        cpu_dir["buffer_size_kb"] = cpu_buffer_size_file(cpu)
    # event_trace_init().
    tracing["available_events"] = GeneratedFile(available_events)
    tracing["set_event"] = SetEventFile()
    tracing["events"] = events_directory()
    return tracing


def sysctl_read(kernel: Kernel, size: int, pos: int) -> bytes:
    return ftrace_enable_sysctl_read(kernel.ftrace, size, pos)


def sysctl_write(kernel: Kernel, data: bytes) -> int:
    """``kern_table``'s ``ftrace_enabled``: ``.proc_handler = ftrace_enable_sysctl``.
    ``proc_sys_write()`` (fs/proc/proc_sysctl.c) returns the handler's ``*lenp``: the
    bytes it consumed, a short write when a number was followed by more than spaces."""
    return ftrace_enable_sysctl(kernel.ftrace, data)


def proc_directory(kernel: Kernel) -> Directory:
    proc = ReadOnlyDirectory()
    sysctl_kernel = (proc.setdefault("sys", ReadOnlyDirectory())
                     .setdefault("kernel", ReadOnlyDirectory()))
    sysctl_kernel["ftrace_enabled"] = ProcSysFile(sysctl_read, sysctl_write)
    sysctl_kernel["tainted"] = ProcSysFile(proc_taint_read, proc_taint)
    proc["modules"] = ProcSeqOperationsFile(lambda k: k.modules.modules_op())
    proc["kallsyms"] = ProcSeqOperationsFile(lambda k: k.kallsyms.kallsyms_op())
    return proc


def mount(kernel: Kernel) -> Vfs:
    return Vfs(kernel, build_tree(tracing_directory(kernel), proc_directory(kernel)))
