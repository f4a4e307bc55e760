"""Module parameters: kmod's modprobe/insmod words, init_module's uargs, 3.6's parse_args().

Kernel side first (next_arg(), the setters, load_module()'s unlink when a parameter
fails), then the tools against a real ftraced: the shell's modprobe and insmod,
Client.load(), ftrace-modload.
"""

from __future__ import annotations

import errno
import re

import pytest

from clients.errors import FtraceError
from clients.kmod import options_from_array
from kernel_daemon.errno import KernelError
from kernel_daemon.failpoints import Failpoints
from kernel_daemon.module.address_space import ModuleAddressSpace
from kernel_daemon.module.catalog import load_catalog
from kernel_daemon.module.kallsyms import Kallsyms
from kernel_daemon.module.loader import ModuleLoader
from kernel_daemon.module.params import (KernelParam, ddebug_dyndbg_module_param_cb, next_arg,
                                         parse_args)
from kernel_daemon.module.vmlinux import build_vmlinux
from kernel_daemon.printk import KERN_ERR
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_shell_integration import run_shell
from tests.test_tracer_client import SMALL, run

PARAMS = (KernelParam("max_loop", "int"), KernelParam("delay_use", "uint"),
          KernelParam("quirks", "string", 8))


def words(args: bytes) -> list[tuple[bytes, bytes | None]]:
    """Every (param, val) next_arg() cuts from ``args``, as parse_args() walks it."""
    found = []
    pos = len(args) - len(args.lstrip(b" "))
    while pos < len(args):
        param, val, pos = next_arg(args, pos)
        found.append((param, val))
    return found


@pytest.mark.parametrize("args, expected", [
    (b"max_loop=8  flag", [(b"max_loop", b"8"), (b"flag", None)]),
    (b'quirks="a b" x=1', [(b"quirks", b"a b"), (b"x", b"1")]),
    # A quote opening the word quotes it whole; it comes off the value, not the name.
    (b'"quirks=a b" x', [(b"quirks", b"a b"), (b"x", None)]),
    (b'"flag"', [(b'flag"', None)]),
    # An '=' in first place is part of the name: next_arg() takes the first one after.
    (b"=a=b", [(b"=a", b"b")]),
    (b"a=\tb\xa0c", [(b"a", b""), (b"b", None), (b"c", None)]),  # isspace(): \xa0 too
])
def test_next_arg_cuts_words_as_3_6_does(args, expected):
    assert words(args) == expected


@pytest.mark.parametrize("args, error, line", [
    (b"max_loop=8 max-loop=0x10 max_loop=010 max_loop=-2147483648 delay_use=4294967295"
     b" quirks=1234567 quirks= dyndbg dyndbg=+pf loop.dyndbg", None, None),
    (b"max_loop=8 nosuch=1", errno.ENOENT, "loop: Unknown parameter `nosuch'"),
    (b"dyndbgx", errno.ENOENT, "loop: Unknown parameter `dyndbgx'"),
    (b"max_loop", errno.EINVAL, "loop: `' invalid for parameter `max_loop'"),
    (b"max_loop=8k", errno.EINVAL, "loop: `8k' invalid for parameter `max_loop'"),
    (b"max_loop=2147483648", errno.EINVAL, "loop: `2147483648' invalid for parameter `max_loop'"),
    (b"max_loop=0x", errno.EINVAL, "loop: `0x' invalid for parameter `max_loop'"),
    # kstrtol()'s ERANGE: beyond a long, and 3.6's "-0".
    (b"max_loop=9223372036854775808", errno.ERANGE,
     "loop: `9223372036854775808' invalid for parameter `max_loop'"),
    (b"max_loop=-0", errno.ERANGE, "loop: `-0' invalid for parameter `max_loop'"),
    (b"delay_use=-1", errno.EINVAL, "loop: `-1' invalid for parameter `delay_use'"),
    (b"delay_use=4294967296", errno.EINVAL,
     "loop: `4294967296' invalid for parameter `delay_use'"),
    (b"quirks=12345678", errno.ENOSPC, "loop: `12345678' too large for parameter `quirks'"),
])
def test_parse_args_checks_each_value_as_the_3_6_setters_do(args, error, line):
    logged: list[tuple[str, int]] = []
    log = lambda text, level: logged.append((text, level))  # noqa: E731
    if error is None:
        parse_args("loop", args, PARAMS, ddebug_dyndbg_module_param_cb, log)
        assert logged == []
        return
    with pytest.raises(KernelError) as raised:
        parse_args("loop", args, PARAMS, ddebug_dyndbg_module_param_cb, log)
    assert raised.value.errno == error
    assert logged[-1] == (line, KERN_ERR)
    if error == errno.ENOSPC:  # param_set_copystring()'s own line comes first
        assert logged[0] == ("quirks: string doesn't fit in 7 chars.", KERN_ERR)


def test_a_failed_parameter_unlinks_the_module_before_any_notifier_runs():
    """load_module()'s unlink path: off the list and out of kallsyms, its references on
    the modules it uses dropped, its memory free for the next load; no notifier (ftrace's
    among them) ever saw it."""
    kallsyms = Kallsyms(build_vmlinux(4096))
    logged: list[str] = []
    loader = ModuleLoader(kallsyms, ModuleAddressSpace(), lambda flag: None,
                          lambda text, level: logged.append(text), Failpoints())
    notified: list[tuple[int, str]] = []
    loader.register_module_notifier(lambda state, mod: notified.append((state, mod.name)))
    catalog = load_catalog()
    fat = loader.load_module(catalog["fat"])
    notified.clear()
    with pytest.raises(KernelError) as raised:
        loader.load_module(catalog["vfat"], args=b"utf8=1")
    assert raised.value.errno == errno.ENOENT
    assert logged == ["vfat: Unknown parameter `utf8'"]
    assert notified == []
    assert loader.modules() == [fat] and kallsyms.lookup_name("vfat_lookup") == []
    assert (fat.refcnt, fat.source_list) == (0, ())
    vfat = loader.load_module(catalog["vfat"], args=b"dyndbg")
    assert fat.refcnt == 1 and loader.modules() == [vfat, fat]
    # Where it goes when no load failed before it: the failed one's memory was freed.
    never_failed = ModuleLoader(Kallsyms(build_vmlinux(4096)), ModuleAddressSpace(),
                                lambda flag: None, lambda text, level: None, Failpoints())
    never_failed.load_module(catalog["fat"])
    assert never_failed.load_module(catalog["vfat"]).module_core == vfat.module_core


# --- the tools, against a real ftraced ----------------------------------------------------


def kernel_log(client) -> list[str]:
    """dmesg's lines without their timestamps."""
    return [re.sub(r"^\[ *\d+\.\d{6}\] ", "", line) for line in client.dmesg().splitlines()]


def test_options_from_array_quotes_a_value_with_a_space():
    assert options_from_array(["a=1", "b=x y", 'c="x y"', "d='x y'", "flag"]) == (
        'a=1 b="x y" c="x y" d=\'x y\' flag')


def test_modprobe_takes_the_words_after_the_module_as_its_parameters(daemon, tmp_path):
    """Without -a, modprobe's first word is the module, the others its parameters;
    -a takes them all as modules; a module already loaded is left as it is, its
    parameters unused; insmod passes the words after the file."""
    script = """\
modprobe loop max_loop=8 max-part=0x0f; echo $?
modprobe dummy dyndbg numdummies=2; echo $?
modprobe usb_storage 'quirks=0951:1666:n,abcd:1234:u' 'delay_use=3'; echo $?
modprobe loop no_such_parameter=1; echo $?
modprobe -a uinput tun; echo $?
modprobe -a nosuchmod isofs; echo $?
insmod nbd.ko nbds_max=4 max_part=1; echo $?
grep -c Live /proc/modules
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    with daemon.connect() as client:
        release = client.config().release
        assert kernel_log(client)[2:] == []  # nothing refused, no line in dmesg
        assert client.check_consistency().ok
    assert (shell.returncode, shell.out) == (0, "0\n0\n0\n0\n0\n1\n0\n7\n")
    assert shell.err == (f"modprobe: WARNING: Module nosuchmod not found in directory "
                         f"/lib/modules/{release}\n")


def test_a_parameter_the_module_does_not_take_leaves_no_module_and_no_records(
        daemon, tmp_path):
    """init_module's ENOENT after parse_args() logged the parameter: modprobe's own
    words for it; the module went off the list before ftrace's COMING notifier, so no
    record of it was ever made.  `modprobe loop dummy` no longer loads a module dummy."""
    script = """\
modprobe nbd nbds_max=2 debug=1; echo $?
modprobe loop dummy; echo $?
insmod nbd debug=1; echo $?
grep -c nbd /proc/modules
grep -c '\\[nbd\\]' /sys/kernel/debug/tracing/available_filter_functions
grep -c '\\[loop\\]' /sys/kernel/debug/tracing/available_filter_functions
lsmod
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert shell.out == "1\n1\n1\n0\n0\n0\nModule                  Size  Used by\n"
    assert shell.err == (
        "modprobe: ERROR: could not insert 'nbd': Unknown symbol in module, or unknown "
        "parameter (see dmesg)\n"
        "modprobe: ERROR: could not insert 'loop': Unknown symbol in module, or unknown "
        "parameter (see dmesg)\n"
        "insmod: ERROR: could not insert module nbd.ko: Unknown symbol in module\n")
    with daemon.connect() as client:
        assert kernel_log(client)[2:] == ["nbd: Unknown parameter `debug'",
                                          "loop: Unknown parameter `dummy'",
                                          "nbd: Unknown parameter `debug'"]
        assert client.list_modules() == [] and client.check_consistency().ok


def test_a_value_its_type_does_not_take_fails_the_load_with_the_setters_errno(
        daemon, tmp_path):
    """param_set_int()'s EINVAL and ERANGE, param_set_copystring()'s ENOSPC: modprobe
    prints strerror(), insmod its own words for EINVAL."""
    quirks = "0951:1666:n," * 11  # 132 bytes, for a 128-byte buffer
    script = f"""\
modprobe nbd nbds_max=x; echo $?
insmod nbd nbds_max=x; echo $?
modprobe loop max_loop=9223372036854775808; echo $?
modprobe usb_storage quirks={quirks}; echo $?
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert shell.out == "1\n1\n1\n1\n"
    assert shell.err == (
        "modprobe: ERROR: could not insert 'nbd': Invalid argument\n"
        "insmod: ERROR: could not insert module nbd.ko: Invalid parameters\n"
        "modprobe: ERROR: could not insert 'loop': Numerical result out of range\n"
        "modprobe: ERROR: could not insert 'usb_storage': No space left on device\n")
    with daemon.connect() as client:
        assert kernel_log(client)[2:] == [
            "nbd: `x' invalid for parameter `nbds_max'",
            "nbd: `x' invalid for parameter `nbds_max'",
            "loop: `9223372036854775808' invalid for parameter `max_loop'",
            "quirks: string doesn't fit in 127 chars.",
            f"usb_storage: `{quirks}' too large for parameter `quirks'"]
        assert client.list_modules() == []


def test_client_load_passes_args_as_init_module_takes_them(daemon):
    with daemon.connect() as client:
        with pytest.raises(FtraceError) as raised:
            client.load("loop", args="max_loop=8 max_part")
        assert (raised.value.errno, raised.value.from_kernel) == (errno.EINVAL, True)
        assert client.load("loop", args=b"max_loop=8\0max_part").name == "loop"  # up to NUL
        # Present already: modprobe's load changes nothing, whatever the parameters.
        assert client.load("loop", if_loaded_ok=True, args="nosuch").already_loaded


def test_modload_takes_a_modules_parameters_after_it(spawn):
    daemon = spawn(SMALL)
    done = run("clients.modload", "--address", daemon.address,
               "-m", "loop", "max_loop=8", "max_part=15", "--count", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "modprobe loop at 0xffffffffa0000000\nrmmod loop\n"
    bad = run("clients.modload", "--address", daemon.address,
              "-m", "loop", "max_loop=x", "--count", "1")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == ("ftrace-modload: modprobe loop: Invalid argument "
                          "(loop: `x' invalid for parameter `max_loop')\n")
