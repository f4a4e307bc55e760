"""The module layer: vmlinux's symbols, kallsyms, the module address space and loader.

Model of ``kernel/module.c``, ``kernel/kallsyms.c`` and the x86_64 ``module_alloc()``
of Linux 3.6, with a catalog of modules to load.
"""
