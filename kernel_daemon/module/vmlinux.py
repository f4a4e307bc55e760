"""The core kernel's functions: vmlinux's ``.text`` as ``/proc/kallsyms`` shows it.

Model of the symbol table ``scripts/kallsyms.c`` builds into a 3.6 x86_64 vmlinux,
restricted to functions (every one gets an mcount call site, ``__mcount_loc``).

The text follows the 3.6 link order (``vmlinux.lds.S``: ``TEXT_TEXT`` in Makefile
order init/, arch/x86/, kernel/, mm/, fs/, ipc/ security/ crypto/ block/, lib/,
drivers/, net/, then ``SCHED_TEXT``, ``LOCK_TEXT``, ``KPROBES_TEXT``, ``ENTRY_TEXT``,
``IRQENTRY_TEXT``).  Each region lists, in source order, the real functions the model
needs by name; the functions of the upstream report's call trace sit at the very
address and size the report prints (its 3.6.11+ build), so a model WARN reads like the
report.  The rest of each region is filled with names generated from that
subsystem's prefixes.

Where the model differs from a real vmlinux: ``kmalloc`` is an inline in 3.6 and has
no symbol, and asm labels and ``notrace`` code (``int_signal``, ``memcpy``) have no
mcount site; both are listed here because the project wants them as symbols.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from statistics import NormalDist

from kernel_daemon.module.symbols import Symbol
from kernel_daemon.module.vmlinux_table import read_table

VMLINUX_TEXT_START = 0xffffffff81000000
#: The configuration a boot gets by default (``BootOptions``' core functions and seed), the
#: one ``make`` writes the table of.
DEFAULT_FUNCTIONS = 40960
DEFAULT_SEED = 0

# Functions start 16-byte aligned (gcc -falign-functions=16 on x86_64).
_ALIGN = 16
# Generated sizes: log-normal around a median of 0x70 bytes, most in 0x20..0x400,
# a few big ones, capped like the largest real functions.  Drawn from a table of
# quantiles, which is several times faster than random.lognormvariate().
_LOG_SIZE = NormalDist(math.log(0x70), 0.85)
_SIZE_QUANTILES = tuple(min(math.exp(_LOG_SIZE.inv_cdf((i + 0.5) / 4096)), 0x4000)
                        for i in range(4096))
# Below this mean size a region counts as full, and further functions go to the tail.
_MIN_MEAN_SIZE = 0x40


@dataclass(frozen=True)
class _Pin:
    """A function at a fixed address and size: those the upstream report prints."""

    addr: int
    size: int
    type: str
    name: str


@dataclass(frozen=True)
class _Region:
    """A stretch of text from ``start`` to the next region's start.

    ``entries`` are the named functions in address order: ``(type, name)`` pairs placed
    among the generated ones, and ``_Pin``s.  Generated names use ``prefixes``; a region
    without prefixes holds only its named functions.
    """

    start: int
    prefixes: tuple[str, ...]
    entries: tuple[tuple[str, str] | _Pin, ...]


def _named(*parts: str | _Pin) -> tuple[tuple[str, str] | _Pin, ...]:
    """Entries from ``"T name t name ..."`` strings (nm style) and pins, in order."""
    out: list[tuple[str, str] | _Pin] = []
    for part in parts:
        if isinstance(part, _Pin):
            out.append(part)
            continue
        words = part.split()
        out.extend(zip(words[0::2], words[1::2]))
    return tuple(out)


def _pin(addr: int, size: int, symbol: str) -> _Pin:
    type_, name = symbol.split()
    return _Pin(addr, size, type_, name)


_ARCH = tuple("""
    x86_ native_ apic_ lapic_ io_apic_ mce_ mtrr_ e820_ hpet_ tsc_ microcode_ amd_
    intel_ cpu_ x86_pmu_ pcibios_ paravirt_ ptrace_ vsyscall_ vdso_ fpu_ xsave_ kvm_
    machine_ smp_ nmi_ pat_ ioremap_ pgd_ pte_ pmd_ gart_ amd_iommu_ uv_ mmio_
""".split())
_KERNEL = tuple("""
    sched_ task_ sys_ do_ irq_ __irq_ hrtimer_ timer_ tick_ clockevents_ clocksource_
    timekeeping_ rcu_ workqueue_ worker_ kthread_ signal_ posix_cpu_timer_ cgroup_ css_
    cpuset_ audit_ futex_ rt_mutex_ freezer_ pm_ hibernate_ suspend_ cpu_hotplug_
    softirq_ tasklet_ kmod_ module_ kallsyms_ console_ sysctl_ cred_ user_ pid_ resource_
    param_ async_ srcu_ lockdep_ rwsem_ exit_ perf_event_ perf_ uprobe_ kprobe_ watchdog_
    relay_ taskstats_ acct_ profile_ jump_label_ static_key_ cpu_ kernel_ smp_ ns_
""".split())
_TRACE = tuple("""
    trace_ tracing_ ftrace_ __ftrace_ ring_buffer_ rb_ trace_event_ ftrace_event_
    event_ perf_trace_ ftrace_raw_ trace_seq_ trace_array_ tracer_ ftrace_graph_
""".split())
_MM = tuple("""
    page_ __page_ mem_ mm_ vma_ vm_ kmem_ slab_ swap_ shmem_ zone_ pte_ pmd_ filemap_
    writeback_ bdi_ lru_ mlock_ mmap_ mprotect_ mremap_ rmap_ anon_vma_ hugetlb_
    compact_ migrate_ mem_cgroup_ oom_ pcpu_ vmalloc_ vmap_ mempool_ dma_pool_
    readahead_ ksm_ memblock_ numa_ node_
""".split())
_FS = tuple("""
    vfs_ d_ dentry_ inode_ __inode_ file_ generic_file_ generic_ proc_ sysfs_ ext4_
    ext3_ jbd2_ seq_ pipe_ locks_ ep_ inotify_ fsnotify_ block_ bio_ mpage_ buffer_
    __block_ dquot_ configfs_ debugfs_ devpts_ ramfs_ autofs4_ nls_ sb_ super_ mnt_
    path_ simple_ aio_ eventfd_ timerfd_ fs_ posix_acl_ xattr_ exportfs_ nfs_ nfs4_
""".split())
_BLOCK = tuple("""
    ipc_ msg_ sem_ shm_ mq_ security_ selinux_ avc_ cap_ sel_ crypto_ blkcipher_ aead_
    shash_ ahash_ blk_ __blk_ elv_ elevator_ cfq_ deadline_ bsg_ disk_ part_ bdev_
    ioprio_ blkdev_ blkcg_
""".split())
_LIB = tuple("""
    rb_ radix_tree_ idr_ ida_ bitmap_ __bitmap_ kobject_ kset_ kref_ klist_ crc32_ sg_
    cpumask_ percpu_counter_ devres_ devm_ swiotlb_ gen_pool_ zlib_ lzo_ textsearch_
    nla_ dql_ flex_array_ btree_ uuid_ string_ hex_ list_ llist_ prio_tree_
    debug_object_ ratelimit_ plist_ argv_
""".split())
_DRIVERS = tuple("""
    pci_ pcie_ acpi_ acpi_ex_ acpi_ns_ acpi_ut_ acpi_ps_ acpi_ds_ acpi_tb_ acpi_ev_ pnp_
    tty_ n_tty_ serial8250_ uart_ vt_ con_ vcs_ fb_ fbcon_ vga_ drm_ i915_ intel_ agp_
    device_ driver_ bus_ class_ platform_ firmware_ rpm_ cpufreq_ cpuidle_ hid_ usbhid_
    usb_ hcd_ ehci_ uhci_ ohci_ xhci_ ata_ ahci_ scsi_ sd_ sr_ md_ dm_ e1000e_ rtl8169_
    mii_ phy_ mdio_ thermal_ hwmon_ i2c_ spi_ rtc_ watchdog_ edac_ dmi_ efi_ input_
    evdev_ mousedev_ psmouse_ atkbd_ serio_ i8042_ kbd_ dma_ dmaengine_ regmap_ gpio_
    led_ power_supply_ backlight_ iommu_ virtio_ vring_ xen_ hvc_
""".split())
_NET = tuple("""
    sock_ sk_ __sk_ skb_ __skb_ netif_ __netif_ dev_ netdev_ napi_ neigh_ rtnl_
    rtnetlink_ netlink_ genl_ tcp_ __tcp_ tcp_v4_ udp_ __udp_ udp4_ ip_ ipv4_ inet_
    inet_csk_ inet_twsk_ icmp_ igmp_ arp_ fib_ fib_table_ raw_ ping_ unix_ packet_ nf_
    nf_conntrack_ nf_nat_ ipt_ xt_ xfrm_ xfrm4_ eth_ llc_ net_ netpoll_ qdisc_ tc_
    pfifo_ dst_ rt_ inetdev_ devinet_ cipso_ bictcp_ ethtool_ flow_ scm_ datagram_
""".split())
_VERBS = tuple("""
    alloc free init exit get put set clear read write open release start stop enable
    disable add remove del update lookup find create destroy register unregister attach
    detach probe suspend resume reset flush sync show store check handle process submit
    complete queue dequeue map unmap lock unlock copy parse validate setup prepare commit
    wake wait poll ioctl mmap fill dump print scan insert merge split grow shrink charge
    uncharge account restart notify cleanup fixup send recv xmit rcv link unlink rename
    resize evict invalidate mark test save restore build config count drain kick
    refill replay select sample
""".split())
_NOUNS = tuple("""
    inode dentry page pages buffer bio request queue skb sock conn device dev driver bus
    irq vector timer work task thread cpu node zone range region extent block blocks
    cluster entry entries table hash list tree ops state stats config param params info
    data desc ring slot port link path route addr mask map flags cache pool object ref
    count limit event events ctx context handler hook id name attr attrs group file super
    sb mount fs journal transaction handle key keys msg header frame packet chain rule
    policy session window options feature features caps mode level clock freq power
    domain resource mem vma pte pmd mm fault signal sigset creds ns worker pending pid
    bitmap sector segment quota acl xattr tag tags seq index offset size len prio
    weight budget backlog burst credit
""".split())

# The 3.6 text, region by region.  Pinned: the upstream report's call trace, and the
# asm symbol after each of its two thunk/label frames, which bounds that frame's size.
_LAYOUT: tuple[_Region, ...] = (
    # init/main.c
    _Region(VMLINUX_TEXT_START, (), _named("""
        T do_one_initcall  t rest_init  t run_init_process  t init_post
        T name_to_dev_t  t match_dev_by_uuid
    """)),
    # arch/x86/kernel/: process_64.c signal.c dumpstack*.c process.c tsc.c ftrace.c
    _Region(0xffffffff81000800, _ARCH, _named(
        "T __switch_to  T start_thread  T set_personality_64bit  T sys_arch_prctl",
        "T sys_rt_sigreturn",
        _pin(0xffffffff81002880, 0xc0, "T do_notify_resume"),
        """
        T dump_trace  T show_regs  T show_stack  T dump_stack  T printk_address  T die
        T sys_clone  T sys_execve  T native_sched_clock  t read_tsc
        T ftrace_update_ftrace_func  T ftrace_make_nop  T ftrace_make_call
        T ftrace_replace_code  T arch_ftrace_update_code
        """,
    )),
    # kernel/: fork.c panic.c printk.c exit.c softirq.c timer.c workqueue.c task_work.c
    # rcupdate.c kthread.c hrtimer.c notifier.c sched/ time/ module.c kallsyms.c
    # stop_machine.c
    _Region(0xffffffff81038000, _KERNEL, _named(
        "t copy_process  T do_fork  T panic  T add_taint",
        _pin(0xffffffff8103e580, 0xc0, "t warn_slowpath_common"),
        _pin(0xffffffff8103e640, 0x20, "T warn_slowpath_null"),
        """
        T warn_slowpath_fmt  T vprintk  T printk  T do_exit  T do_group_exit
        T sys_exit_group  T __do_softirq  T do_softirq  T irq_exit  T update_process_times
        t run_timer_softirq  t process_one_work  t worker_thread
        """,
        _pin(0xffffffff8105f9b0, 0x90, "T task_work_run"),
        """
        T rcu_read_lock_held  T kthread  T hrtimer_init  t __run_hrtimer
        T hrtimer_interrupt  T hrtimer_start  T sys_nanosleep
        T __blocking_notifier_call_chain  T blocking_notifier_call_chain
        t try_to_wake_up  T wake_up_process  T scheduler_tick  t tick_sched_timer
        t free_module  T print_modules  t load_module  T sys_init_module
        T sys_delete_module  T kallsyms_lookup  T sprint_symbol  T stop_machine
        T rcu_check_callbacks
        """,
    )),
    # kernel/trace/: ftrace.c ring_buffer.c trace.c trace_functions.c
    _Region(0xffffffff810b8000, _TRACE, _named(
        """
        t update_ftrace_function  t __register_ftrace_function
        t __unregister_ftrace_function  t ftrace_profile_write  t ftrace_lookup_ip
        t free_ftrace_hash  t alloc_and_copy_ftrace_hash
        """,
        _pin(0xffffffff810c2d00, 0x230, "t __ftrace_hash_rec_update"),
        "t ftrace_hash_rec_disable  t ftrace_hash_rec_enable",
        _pin(0xffffffff810c4f00, 0x1d0, "t ftrace_hash_move"),
        """
        T ftrace_location  t __ftrace_replace_code  T ftrace_bug  T ftrace_test_record
        t __ftrace_modify_code  T ftrace_modify_all_code  t ftrace_run_update_code
        t ftrace_startup_enable  t ftrace_startup  t ftrace_shutdown
        t ftrace_update_code  t ftrace_regex_open  t ftrace_filter_open
        t ftrace_notrace_open  t ftrace_match  t enter_record  t ftrace_match_record
        t match_records  t ftrace_match_records  t ftrace_match_module_records
        t ftrace_mod_callback  t function_trace_probe_call  t __enable_ftrace_function_probe
        t __disable_ftrace_function_probe  T register_ftrace_function_probe
        t __unregister_ftrace_function_probe  T unregister_ftrace_function_probe_func
        T register_ftrace_command  t ftrace_process_regex  t ftrace_regex_write
        t ftrace_filter_write  t ftrace_notrace_write  t ftrace_set_regex  T ftrace_set_filter
        T ftrace_set_notrace  T ftrace_set_global_filter  T ftrace_set_global_notrace
        """,
        _pin(0xffffffff810c6860, 0x150, "t ftrace_regex_release"),
        """
        t ftrace_process_locs  T ftrace_release_mod  t ftrace_init_module
        t ftrace_module_notify  T ftrace_kill  t ftrace_ops_list_func
        T register_ftrace_function  T unregister_ftrace_function
        T ftrace_enable_sysctl  T ring_buffer_lock_reserve  T ring_buffer_unlock_commit
        T tracing_on  T tracing_off  T tracing_is_on  t tracing_ctrl_read
        t tracing_ctrl_write  T tracer_init  t tracing_set_tracer
        t tracing_set_trace_read  t tracing_set_trace_write  t tracing_mark_write
        T tracing_start  T tracing_stop
        t function_trace_init  t function_trace_reset  t function_trace_start
        t tracing_start_function_trace  t tracing_stop_function_trace  t func_set_flag
        t __set_tracer_option  t set_tracer_option  t tracing_trace_options_write
        t trace_options_write  t nop_set_flag
        t function_trace_call  t function_stack_trace_call  t ftrace_traceon  t ftrace_traceoff
        t ftrace_trace_onoff_print  t ftrace_trace_onoff_unreg  t ftrace_trace_onoff_callback
        """,
    )),
    # kernel/: irq_work.c events/ and the rest after trace/
    _Region(0xffffffff810d4000, _KERNEL, _named(
        "T irq_work_queue  T irq_work_run  T perf_event_task_tick",
    )),
    # mm/: filemap.c page_alloc.c memory.c mmap.c vmalloc.c slub.c
    _Region(0xffffffff810f6000, _MM, _named(
        """
        T find_get_page  T generic_file_aio_read  T __alloc_pages_nodemask
        T free_hot_cold_page  T handle_mm_fault  T do_mmap_pgoff  T do_munmap
        T __vmalloc_node_range  T vmalloc  T vfree  T kmem_cache_alloc
        T kmem_cache_free  T kmalloc  T __kmalloc
        """,
        _pin(0xffffffff811401a0, 0x110, "T kfree"),
    )),
    # fs/: open.c read_write.c file_table.c namei.c ioctl.c seq_file.c libfs.c debugfs/
    _Region(0xffffffff81146000, _FS, _named(
        """
        T do_sys_open  T sys_open  T filp_close  T sys_close  T vfs_read  T vfs_write
        T sys_read  T sys_write
        """,
        _pin(0xffffffff81149e70, 0x220, "t __fput"),
        _pin(0xffffffff8114a090, 0x10, "t ____fput"),
        """
        T fput  T do_filp_open  t path_openat  T do_vfs_ioctl  T sys_ioctl  T seq_read
        T seq_lseek  T seq_printf  T seq_open  T seq_release
        T simple_read_from_buffer  T debugfs_create_file
        """,
    )),
    # ipc/ security/ crypto/ block/
    _Region(0xffffffff811f8000, _BLOCK, _named(
        "T generic_make_request  T submit_bio  T blk_queue_bio  T blk_peek_request",
    )),
    # lib/, then arch/x86/lib/ (thunk_64.S, copy_user_64.S, getuser.S, ...)
    _Region(0xffffffff81222000, _LIB, _named(
        "T vsnprintf  T snprintf  T sprintf  T strlen  T memcmp",
        _pin(0xffffffff81265934, 0x3c, "T trace_hardirqs_on_thunk"),
        _pin(0xffffffff81265970, 0x40, "T trace_hardirqs_off_thunk"),
        """
        T copy_user_generic_unrolled  T copy_user_generic_string  T __get_user_1
        T __put_user_1  T memcpy  T memset  T memmove  T csum_partial
        """,
    )),
    # drivers/: char/random.c char/misc.c input/ tty/
    _Region(0xffffffff8126a000, _DRIVERS, _named(
        """
        T get_random_bytes  T add_input_randomness  T misc_register  T misc_deregister
        T input_event  T input_allocate_device  T input_free_device
        T input_register_device  T input_unregister_device  T input_ff_create
        T input_ff_destroy  t tty_write  t n_tty_write  t n_tty_read
        """,
    )),
    # net/: socket.c core/ ipv4/
    _Region(0xffffffff81488000, _NET, _named(
        """
        T sock_sendmsg  T sys_sendto  T sys_recvfrom  T __alloc_skb  T __kfree_skb
        T kfree_skb  T __netif_receive_skb  T netif_receive_skb  T dev_queue_xmit
        T ip_rcv  T ip_output  T tcp_sendmsg  T tcp_v4_rcv
        """,
    )),
    # .sched.text: __sched functions (sched/core.c, mutex.c, rwsem.c, semaphore.c, ...)
    _Region(0xffffffff815b9000, (), _named("""
        t __schedule  T schedule  T schedule_preempt_disabled  T yield  T yield_to
        T io_schedule  T io_schedule_timeout  T schedule_timeout
        T schedule_timeout_interruptible  T schedule_timeout_killable
        T schedule_timeout_uninterruptible  t do_wait_for_common
        T wait_for_completion  T wait_for_completion_timeout
        T wait_for_completion_interruptible
        T wait_for_completion_interruptible_timeout  T wait_for_completion_killable
        T wait_for_completion_killable_timeout  t sleep_on_common
        T interruptible_sleep_on  T interruptible_sleep_on_timeout  T sleep_on
        T sleep_on_timeout  T _cond_resched  T __cond_resched_lock
        T __cond_resched_softirq  T mutex_lock  t __mutex_lock_slowpath  T mutex_unlock
        T mutex_lock_interruptible  t __mutex_lock_interruptible_slowpath
        T mutex_lock_killable  t __mutex_lock_killable_slowpath  T down_read
        T down_write  t __down  t __down_interruptible  t __down_killable
        t __down_timeout  T rwsem_down_read_failed  T rwsem_down_write_failed
        t rt_mutex_slowlock  T __wait_on_bit  T out_of_line_wait_on_bit
        T __wait_on_bit_lock  T out_of_line_wait_on_bit_lock  T do_nanosleep
        T schedule_hrtimeout_range_clock  T schedule_hrtimeout_range
        T schedule_hrtimeout  T usleep_range  T console_conditional_schedule
    """)),
    # .spinlock.text: __lockfunc (kernel/spinlock.c)
    _Region(0xffffffff815bc000, (), _named("""
        T _raw_spin_trylock  T _raw_spin_trylock_bh  T _raw_spin_lock
        T _raw_spin_lock_irqsave  T _raw_spin_lock_irq  T _raw_spin_lock_bh
        T _raw_spin_unlock  T _raw_spin_unlock_irqrestore  T _raw_spin_unlock_irq
        T _raw_spin_unlock_bh  T _raw_read_trylock  T _raw_read_lock
        T _raw_read_lock_irqsave  T _raw_read_lock_irq  T _raw_read_lock_bh
        T _raw_read_unlock  T _raw_read_unlock_irqrestore  T _raw_read_unlock_irq
        T _raw_read_unlock_bh  T _raw_write_trylock  T _raw_write_lock
        T _raw_write_lock_irqsave  T _raw_write_lock_irq  T _raw_write_lock_bh
        T _raw_write_unlock  T _raw_write_unlock_irqrestore  T _raw_write_unlock_irq
        T _raw_write_unlock_bh
    """)),
    # .kprobes.text: __kprobes (notifier.c, kprobes.c, arch/x86 traps.c fault.c kprobes.c)
    _Region(0xffffffff815bd000, (), _named("""
        t notifier_call_chain  T __atomic_notifier_call_chain
        T atomic_notifier_call_chain  T notify_die  T get_kprobe  t aggr_pre_handler
        t aggr_post_handler  t aggr_fault_handler  t aggr_break_handler
        T kprobes_inc_nmissed_count  T recycle_rp_inst  T kretprobe_hash_lock
        T kretprobe_hash_unlock  t kretprobe_table_lock  t kretprobe_table_unlock
        t pre_handler_kretprobe  T do_divide_error  T do_overflow  T do_bounds
        T do_invalid_op  T do_general_protection  T do_int3  T do_debug
        T do_page_fault  T setjmp_pre_handler  T jprobe_return  T longjmp_break_handler
        T arch_prepare_kretprobe  t can_boost  t setup_singlestep  t reenter_kprobe
        t kprobe_handler  t trampoline_handler  t resume_execution
        t post_kprobe_handler  T kprobe_fault_handler  T kprobe_exceptions_notify
    """)),
    # .entry.text: arch/x86/kernel/entry_64.S
    _Region(0xffffffff815c0000, (), _named(
        """
        T mcount  T ftrace_caller  T ftrace_call  T ftrace_stub  T ftrace_regs_caller
        T ftrace_regs_call  T ftrace_graph_caller  T return_to_handler
        T native_usergs_sysret64  T ret_from_fork  T system_call
        T system_call_after_swapgs  T system_call_fastpath  t ret_from_sys_call
        t sysret_check  t sysret_careful  t sysret_signal  t badsys  t auditsys
        t sysret_audit  t tracesys  T int_ret_from_sys_call  t int_with_check
        t int_careful  t int_very_careful
        """,
        _pin(0xffffffff815c0f76, 0x17, "t int_signal"),
        _pin(0xffffffff815c0f8d, 0x03, "t int_restore_rest"),
        """
        T stub_clone  T stub_fork  T stub_vfork  T stub_sigaltstack  T stub_iopl
        T ptregscall_common  T stub_execve  T stub_rt_sigreturn  T irq_entries_start
        t common_interrupt  t ret_from_intr  t retint_swapgs  t retint_restore_args
        t restore_args  t irq_return  T native_iret  t retint_careful  t retint_signal
        T apic_timer_interrupt  T x86_platform_ipi  T reschedule_interrupt
        T call_function_interrupt  T call_function_single_interrupt
        T irq_work_interrupt  T error_interrupt  T spurious_interrupt  T divide_error
        T overflow  T bounds  T invalid_op  T device_not_available  T double_fault
        T coprocessor_segment_overrun  T invalid_TSS  T segment_not_present
        T spurious_interrupt_bug  T coprocessor_error  T alignment_check
        T simd_coprocessor_error  T native_load_gs_index  T call_softirq  T debug
        T int3  T stack_segment  T general_protection  T page_fault  T machine_check
        t paranoid_exit  T error_entry  T error_exit  T nmi  T ignore_sysret
        """,
    )),
    # .irqentry.text: __irq_entry
    _Region(0xffffffff815c3000, (), _named("""
        T do_IRQ  T smp_x86_platform_ipi  T smp_apic_timer_interrupt
        T smp_spurious_interrupt  T smp_error_interrupt  T smp_irq_work_interrupt
        T smp_thermal_interrupt  T smp_threshold_interrupt  T smp_reschedule_interrupt
        T smp_call_function_interrupt  T smp_call_function_single_interrupt
    """)),
)
# Past the 3.6 layout: functions beyond what it holds at a realistic density, for
# configurations far larger than 3.6's (the model's stand-in for more built-in drivers).
_TAIL_START = 0xffffffff815c3800
_TAIL_PREFIXES = _DRIVERS + _FS + _NET

REQUIRED_FUNCTIONS: tuple[str, ...] = tuple(
    entry.name if isinstance(entry, _Pin) else entry[1]
    for region in _LAYOUT for entry in region.entries
)


@dataclass
class _Gap:
    """Text between two fixed points, holding ``named`` plus ``fill`` generated functions."""

    start: int
    end: int
    prefixes: tuple[str, ...]
    named: list[tuple[str, str]]
    fill: int = 0

    @property
    def capacity(self) -> int:
        """Generated functions that fit at ``_MIN_MEAN_SIZE``; 0 without prefixes."""
        if not self.prefixes:
            return 0
        return max(0, (self.end - self.start) // _MIN_MEAN_SIZE - len(self.named))

    @property
    def needs_fill(self) -> bool:
        """A gap with no named function needs one generated, or its space stays unowned."""
        return not self.named and self.end > self.start


def _gaps_and_pins() -> tuple[list[_Gap], list[_Pin]]:
    """Cut ``_LAYOUT`` at every region start and pin."""
    gaps: list[_Gap] = []
    pins: list[_Pin] = []
    ends = [region.start for region in _LAYOUT[1:]] + [_TAIL_START]
    for region, region_end in zip(_LAYOUT, ends):
        gap = _Gap(region.start, region_end, region.prefixes, [])
        for entry in region.entries:
            if isinstance(entry, _Pin):
                gap.end = entry.addr
                gaps.append(gap)
                pins.append(entry)
                gap = _Gap(entry.addr + entry.size, region_end, region.prefixes, [])
            else:
                gap.named.append(entry)
        gaps.append(gap)
    return gaps, pins


# The smallest build: the named functions, and one generated in each gap without any.
MIN_FUNCTIONS = len(REQUIRED_FUNCTIONS) + sum(gap.needs_fill for gap in _gaps_and_pins()[0])


def _distribute(gaps: list[_Gap], count: int) -> int:
    """Share ``count`` generated functions among ``gaps``; return the overflow.

    Every gap that needs one gets one, the rest go in proportion to capacity
    (largest remainder), and whatever exceeds the total capacity overflows.
    """
    for gap in gaps:
        gap.fill = int(gap.needs_fill)
    count -= sum(gap.fill for gap in gaps)
    total = sum(gap.capacity for gap in gaps)
    placed = min(count, total)
    if placed:
        quotas = [placed * gap.capacity / total for gap in gaps]
        floors = [int(q) for q in quotas]
        by_remainder = sorted(range(len(gaps)), key=lambda i: floors[i] - quotas[i])
        for i in by_remainder[:placed - sum(floors)]:
            floors[i] += 1
        for gap, extra in zip(gaps, floors):
            gap.fill += extra
    return count - placed


class _Namer:
    """Unique function names from subsystem prefixes, verbs and nouns."""

    def __init__(self, rng: random.Random) -> None:
        # Indexing with random() rather than rng.choice(): this runs once per function.
        self._random = rng.random
        self._seen = set(REQUIRED_FUNCTIONS)

    def entry(self, prefixes: tuple[str, ...]) -> tuple[str, str]:
        """A new ``(type, name)``."""
        rand, seen = self._random, self._seen
        verbs, nouns = _VERBS, _NOUNS
        for _ in range(16):
            prefix = prefixes[int(rand() * len(prefixes))]
            verb = verbs[int(rand() * len(verbs))]
            noun = nouns[int(rand() * len(nouns))]
            form = rand()
            if form < 0.45:
                name = f"{prefix}{verb}_{noun}"
            elif form < 0.75:
                name = f"{prefix}{noun}_{verb}"
            elif form < 0.85:
                name = f"{prefix}{verb}"
            elif form < 0.95:
                # A static helper, like __foo_bar next to foo_bar: nearly always local.
                name = f"__{prefix.lstrip('_')}{verb}_{noun}"
                if name not in seen:
                    seen.add(name)
                    return "t", name
                continue
            else:
                name = f"{prefix}{verb}_{noun}_{nouns[int(rand() * len(nouns))]}"
            if name not in seen:
                seen.add(name)
                # About 40% of functions are global.
                return ("T" if rand() < 0.4 else "t"), name
        # Dense configurations exhaust the short forms: fall back to the long one,
        # whose space is large enough for millions of names.
        while True:
            name = (f"{prefixes[int(rand() * len(prefixes))]}{verbs[int(rand() * len(verbs))]}"
                    f"_{nouns[int(rand() * len(nouns))]}_{nouns[int(rand() * len(nouns))]}")
            if name not in seen:
                seen.add(name)
                return "t", name


def _sizes(rng: random.Random, count: int) -> list[float]:
    rand, table = rng.random, _SIZE_QUANTILES
    return [table[int(rand() * len(table))] for _ in range(count)]


def _fill_gap(gap: _Gap, rng: random.Random, namer: _Namer) -> list[Symbol]:
    """The gap's named and generated functions, tiling it exactly.

    Named functions keep their order, at random positions among the generated ones.
    Starts are 16-byte aligned; the last function runs to the gap's end, which may be
    unaligned when an asm symbol follows.
    """
    total = gap.fill + len(gap.named)
    if not total:
        return []
    slots = sorted(rng.sample(range(total), len(gap.named)))
    entries: list[tuple[str, str] | None] = [None] * total
    for slot, named in zip(slots, gap.named):
        entries[slot] = named
    weights = _sizes(rng, total)
    # Each function gets one 16-byte unit, and the spare units go by weight: the
    # boundaries are cumulative, so sizes sum to the gap exactly.
    scale = ((gap.end - gap.start) // _ALIGN - total) / sum(weights)
    symbols: list[Symbol] = []
    generate, prefixes = namer.entry, gap.prefixes
    cumulative = 0.0
    addr = start = gap.start
    for i, (entry, weight) in enumerate(zip(entries, weights), 1):
        cumulative += weight
        end = gap.end if i == total else start + _ALIGN * (i + int(cumulative * scale))
        type_, name = entry or generate(prefixes)
        symbols.append(Symbol(name, addr, end - addr, None, type_))
        addr = end
    return symbols


def _fill_tail(count: int, rng: random.Random, namer: _Namer) -> list[Symbol]:
    symbols: list[Symbol] = []
    addr = _TAIL_START
    for weight in _sizes(rng, count):
        size = -(-int(weight) // _ALIGN) * _ALIGN
        type_, name = namer.entry(_TAIL_PREFIXES)
        symbols.append(Symbol(name, addr, size, None, type_))
        addr += size
    return symbols


def build_vmlinux(nr_functions: int = DEFAULT_FUNCTIONS, seed: int = DEFAULT_SEED) -> list[Symbol]:
    """vmlinux's functions, sorted by address: the same list for the same arguments.

    ``nr_functions`` counts them all, ``REQUIRED_FUNCTIONS`` included; it must be at
    least ``MIN_FUNCTIONS``.  The text starts at ``VMLINUX_TEXT_START`` and has no
    holes: each symbol's size reaches the next symbol.  The default configuration's
    come from the table ``make`` wrote (:mod:`kernel_daemon.module.vmlinux_table`) when
    it is there and current.
    """
    return list(_build(nr_functions, seed))


# Symbols are immutable, so kernels booted with the same options share them.
@functools.lru_cache(maxsize=2)
def _build(nr_functions: int, seed: int) -> tuple[Symbol, ...]:
    if (nr_functions, seed) == (DEFAULT_FUNCTIONS, DEFAULT_SEED):
        table = read_table(nr_functions, seed)
        if table is not None:
            return table
    return generate_vmlinux(nr_functions, seed)


def generate_vmlinux(nr_functions: int, seed: int) -> tuple[Symbol, ...]:
    """:func:`build_vmlinux`'s symbols, generated."""
    if nr_functions < MIN_FUNCTIONS:
        raise ValueError(f"vmlinux needs at least {MIN_FUNCTIONS} functions "
                         f"(the named ones), not {nr_functions}")
    rng = random.Random(seed)
    namer = _Namer(rng)
    gaps, pins = _gaps_and_pins()
    overflow = _distribute(gaps, nr_functions - len(REQUIRED_FUNCTIONS))
    symbols = [Symbol(pin.name, pin.addr, pin.size, None, pin.type) for pin in pins]
    for gap in gaps:
        symbols += _fill_gap(gap, rng, namer)
    symbols.sort(key=lambda sym: sym.addr)
    symbols += _fill_tail(overflow, rng, namer)
    return tuple(symbols)
