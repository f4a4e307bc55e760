"""The tracing side of the kernel: tracers, the function tracer, ring buffers (kernel/trace/trace*.c)."""
