"""ftrace-shell as a user runs it: a subprocess with a script, against a real ftraced.

The report's reproducer runs as written in both variants; diagnostics and exit statuses
are bash's. A few tests at the end cover the client library calls the shell relies on.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from clients.demo import REPRODUCER
from clients.errors import FtraceError
from kernel_daemon.trace.reader import RingBufferReader
from tests.children import child_env
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

TRACING = "/sys/kernel/debug/tracing"

#: Lines in REPRODUCER: what follows it in a script starts at this line + 1.
REPRODUCER_LINES = REPRODUCER.count("\n")


def start_shell(
    tmp_path, args: list[str], script: str | bytes | None = None, *, name: str = "repro.sh",
    environ: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start ``python -m clients.shell ARGS [SCRIPT]`` in tmp_path, the script written to
    ``name`` there; ``environ``: variables added to its environment."""
    argv = [sys.executable, "-m", "clients.shell", *args]
    if script is not None:
        (tmp_path / name).write_bytes(script.encode() if isinstance(script, str) else script)
        argv.append(name)
    return subprocess.Popen(argv, cwd=tmp_path, env=child_env(**(environ or {})),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen, stdin: str | bytes = b"") -> subprocess.Popen:
    """Feed ``stdin``, wait; the process gets ``.out`` and ``.err`` (text)."""
    out, err = process.communicate(stdin.encode() if isinstance(stdin, str) else stdin, timeout=120)
    process.out, process.err = out.decode(), err.decode()  # type: ignore[attr-defined]
    return process


def run_shell(
    tmp_path, args: list[str], script: str | bytes | None = None, *, stdin: str | bytes = b""
) -> subprocess.Popen:
    """Run the shell to the end: ``.returncode``, ``.out``, ``.err``, ``.pid``."""
    return finish(start_shell(tmp_path, args, script), stdin)


# --- the report's reproducer ------------------------------------------------------------


def test_reproducer_buggy_warns_as_bash_with_its_pid_and_kills_ftrace(spawn, tmp_path):
    buggy = spawn(["--variant", "buggy"])
    after = "dmesg\necho x > set_ftrace_filter\n"
    shell = run_shell(tmp_path, ["--address", buggy.address], stdin=REPRODUCER + after)
    assert shell.returncode == 1  # the last command's status
    assert "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update" in shell.out
    assert f"Pid: {shell.pid}, comm: bash " in shell.out
    assert re.search(r"---\[ end trace [0-9a-f]{16} \]---", shell.out)
    # Every reproducer line ran silently; after ftrace_kill() the filter file cannot open.
    line = REPRODUCER_LINES + 2
    assert shell.err == f"bash: line {line}: set_ftrace_filter: No such device\n"
    with buggy.connect() as client:
        assert client.stats().ftrace_disabled


def test_reproducer_buggy_from_a_script_file_names_the_script_and_line(spawn, tmp_path):
    buggy = spawn({"variant": "buggy"})
    script = REPRODUCER + "echo x > set_ftrace_filter\ncat enabled_functions\n"
    shell = run_shell(tmp_path, ["--address", buggy.address], script)
    line = REPRODUCER_LINES + 1
    assert shell.err == (f"repro.sh: line {line}: set_ftrace_filter: No such device\n"
                         "cat: enabled_functions: No such device\n")
    assert shell.returncode == 1
    with buggy.connect() as client:
        assert f"Pid: {shell.pid}, comm: bash " in client.dmesg()


def test_reproducer_fixed_traces_the_reloaded_function_and_never_warns(spawn, tmp_path):
    fixed = spawn(["--variant", "fixed"])
    script = REPRODUCER.replace(
        "echo nop > current_tracer\n",
        "cat enabled_functions\necho ---\necho nop > current_tracer\ncat enabled_functions\n",
    ) + "dmesg | grep -c WARNING\n"
    shell = run_shell(tmp_path, ["--address", fixed.address], script)
    assert (shell.out, shell.err) == ("uinput_release [uinput] (1)\n---\n0\n", "")
    assert shell.returncode == 1  # grep -c found nothing
    with fixed.connect() as client:
        assert client.check_consistency().ok
        assert not client.stats().ftrace_disabled


#: The reproducer's "check /proc/modules to see if loaded in same addr, otherwise try
#: again" as a bash user writes it. The model's loader takes the lowest hole that fits
#: (first-fit, module_alloc()'s alloc_vmap_area()), so a reload comes back to its old
#: address unless something took the hole: on the first round dummy takes it, and uinput
#: moves; the second round frees it, and uinput comes back.
RETRY_LOOP = """\
cd /sys/kernel/debug/tracing
modprobe uinput
before=$(grep '^uinput ' /proc/modules)
echo uinput_release > set_ftrace_filter
echo function > current_tracer
for i in 1 2 3 4 5; do
    rmmod uinput
    if [ $i -eq 1 ]; then
        modprobe dummy
    fi
    modprobe uinput
    if [ "$(grep '^uinput ' /proc/modules)" = "$before" ]; then
        echo "same address on round $i"
        break
    fi
    echo "moved, trying again"
    rmmod dummy
done
echo nop > current_tracer
dmesg | grep -c 'WARNING: at kernel/trace/ftrace.c:1529'
"""


@pytest.mark.parametrize("variant, warnings", [("buggy", "1"), ("fixed", "0")])
def test_the_reproducers_retry_loop_as_bash_runs_it(spawn, tmp_path, variant, warnings):
    """The reload that moved left the filter's stale entry harmless; the one at the same
    address makes the buggy variant's WARN (and the fixed one's not)."""
    spawned = spawn(["--variant", variant])
    shell = run_shell(tmp_path, ["--address", spawned.address], RETRY_LOOP)
    assert (shell.out, shell.err) == (
        f"moved, trying again\nsame address on round 2\n{warnings}\n", "")
    assert shell.returncode == (0 if variant == "buggy" else 1)


def test_the_retry_loop_ends_as_the_loaders_placement_decides(spawn, tmp_path):
    """The loop as the report's reader writes it, without help: first-fit brings uinput
    back at once and the buggy variant WARNs; random placement never does in five
    rounds, and nothing WARNs."""
    script = RETRY_LOOP.replace("    if [ $i -eq 1 ]; then\n        modprobe dummy\n    fi\n", "")
    script = script.replace("    rmmod dummy\n", "")
    first_fit = spawn(["--variant", "buggy"])
    shell = run_shell(tmp_path, ["--address", first_fit.address], script)
    assert (shell.out, shell.err, shell.returncode) == ("same address on round 1\n1\n", "", 0)
    scattered = spawn(["--variant", "buggy", "--module-placement", "random", "--seed", "3"])
    shell = run_shell(tmp_path, ["--address", scattered.address], script)
    assert (shell.out, shell.err, shell.returncode) == (
        "moved, trying again\n" * 5 + "0\n", "", 1)


def test_spawn_runs_a_private_daemon_for_the_run_and_stops_it(tmp_path):
    shell = run_shell(tmp_path, ["--spawn", "--verbose", "--variant", "buggy"],
                      REPRODUCER + "dmesg | grep -c 'WARNING: at kernel/trace/ftrace.c:1529'\n")
    assert (shell.returncode, shell.out) == (0, "1\n")
    # --verbose passes the daemon's log through: it names its pid.
    pids = set(re.findall(r"ftraced\[(\d+)\]", shell.err))
    assert len(pids) == 1
    pid = int(pids.pop())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not [name for name in os.listdir("/dev/shm") if name.startswith(f"ftsim.{pid}.")]


def test_spawn_with_more_daemon_options_and_comm(tmp_path):
    shell = run_shell(
        tmp_path,
        ["--spawn", "--variant", "buggy", "--core-functions", "512", "--cpus", "2",
         "--module-placement", "first-fit", "--seed", "7", "--comm", "mysh"],
        REPRODUCER + "dmesg | grep 'comm: '\n",
    )
    assert shell.returncode == 0, shell.err
    assert f"Pid: {shell.pid}, comm: mysh " in shell.out


def test_daemon_options_need_spawn(tmp_path):
    shell = run_shell(tmp_path, ["--variant", "buggy", "-c", "true"])
    assert shell.returncode == 2
    assert "daemon options need --spawn" in shell.err


# --- diagnostics as bash and the tools print them -------------------------------------------


def test_errno_diagnostics(daemon, tmp_path):
    script = """\
cd /sys/kernel/debug/tracing
echo nosuchfn > set_ftrace_filter
cat set_ftrace_filter
echo bogus > current_tracer
echo x > available_filter_functions
rmmod uinput
modprobe uinput
insmod uinput
insmod uinput.ko
modprobe uinput
modprobe nosuchmod
modprobe -r nosuchmod
cat nosuchfile /proc/nope
echo x > /nope
echo x >> nosuchdir/file
cd /nope
cd set_ftrace_filter
ls /nope
frobnicate
invoke nosuchfn
true
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert shell.returncode == 0
    assert shell.out == "#### all functions enabled ####\n"
    assert shell.err.splitlines() == [
        "repro.sh: line 2: echo: write error: Invalid argument",
        "repro.sh: line 4: echo: write error: Invalid argument",
        "repro.sh: line 5: echo: write error: Invalid argument",
        "rmmod: ERROR: Module uinput is not currently loaded",
        "insmod: ERROR: could not insert module uinput.ko: File exists",
        "insmod: ERROR: could not insert module uinput.ko: File exists",
        "modprobe: FATAL: Module nosuchmod not found in directory /lib/modules/3.6.11+",
        "modprobe: FATAL: Module nosuchmod not found.",
        "cat: nosuchfile: No such file or directory",
        "cat: /proc/nope: No such file or directory",
        "repro.sh: line 14: /nope: No such file or directory",
        "repro.sh: line 15: nosuchdir/file: No such file or directory",
        "repro.sh: line 16: cd: /nope: No such file or directory",
        "repro.sh: line 17: cd: set_ftrace_filter: Not a directory",
        "ls: cannot access '/nope': No such file or directory",
        "repro.sh: line 19: frobnicate: command not found",
        "invoke: nosuchfn: No such file or directory",
    ]


def test_names_that_are_not_utf8_and_overlong_numbers_read_as_bash(daemon, tmp_path):
    """No traceback: a name that is not UTF-8 names no file and no module; ``²>`` and a
    number past INT_MAX before ``>`` are words; ``>&`` and ``exit`` of a 30-digit number
    are bash's errors."""
    big = "9" * 30
    script = (b"cat /sys/kernel/\xff\xfe\nmodprobe \xff\xfe\necho x \xc2\xb2>/dev/null\n"
              + f"echo x 99999999999>/dev/null\necho x >&{big}\nexit {big}\n".encode())
    shell = start_shell(tmp_path, ["--address", daemon.address], script)
    out, err = shell.communicate(timeout=120)
    assert (shell.returncode, out) == (2, b"")
    assert err.splitlines() == [
        b"cat: /sys/kernel/\xff\xfe: No such file or directory",
        b"modprobe: FATAL: Module \xff\xfe not found in directory /lib/modules/3.6.11+",
        f"repro.sh: line 5: {big}: Bad file descriptor".encode(),
        f"repro.sh: line 6: exit: {big}: numeric argument required".encode(),
    ]


def test_standard_input_and_dash_c_diagnostics_name_the_line(daemon, tmp_path):
    """As bash's: standard input (no script, or "-"), or a -c command."""
    script = "cd /sys/kernel/tracing\necho nosuchfn > set_ftrace_filter\n"
    cases = [([], script), (["-"], script), (["-c", script], "")]
    shells = [(start_shell(tmp_path, ["--address", daemon.address, *args]), stdin)
              for args, stdin in cases]
    for shell, stdin in shells:
        finish(shell, stdin)
        assert (shell.returncode, shell.err) == (
            1, "bash: line 2: echo: write error: Invalid argument\n")


def test_a_command_substitutions_exec_closes_its_own_descriptor_not_the_shells_file(
        daemon, tmp_path):
    """$(exec 3>&-) closes the substitution's fd 3; the shell's exec'd file stays open (it
    closed the shell's file session: "write error: Bad file descriptor")."""
    shell = run_shell(tmp_path, ["--address", daemon.address, "-c",
                                 "t=/sys/kernel/debug/tracing; exec 3>>$t/set_ftrace_filter; "
                                 "x=$(exec 3>&-); echo schedule >&3; echo rc=$?; exec 3>&-; "
                                 "cat $t/set_ftrace_filter"])
    assert (shell.returncode, shell.out, shell.err) == (0, "rc=0\nschedule\n", "")


def test_exit_statuses(daemon, tmp_path):
    address = ["--address", daemon.address]
    # Each case is its own shell process, all at once (none changes what another sees).
    cases = [
        (["-c", "exit 3"], 3),
        (["-c", "rmmod nosuchmod"], 1),
        (["-c", "frobnicate"], 127),
        (["-c", "echo a ;;"], 2),
        (["-c", "cat /proc/modules | grep nosuchmod"], 1),
        (["-c", "rmmod nosuchmod || exit 9"], 9),
        (["-c", "cat /nope 2>/dev/null || echo ok > /dev/null"], 0),
        (["-c", "modprobe -q nosuchmod; true"], 0),
        (["-c", "cd /sys && cat ../dev/null /dev/null"], 0),  # empty, as the host's
    ]
    shells = [start_shell(tmp_path, address + args) for args, _ in cases]
    shells += [start_shell(tmp_path, address, "", name="empty.sh"),
               start_shell(tmp_path, address, "rmmod x\n# a comment\n", name="last.sh")]
    statuses = [status for _, status in cases] + [0, 1]
    assert [finish(shell).returncode for shell in shells] == statuses


def test_rmmod_of_a_loading_and_of_an_unloading_module(daemon, tmp_path):
    """kmod's rmmod reads the module's references before it calls delete_module
    (check_module_inuse()): a loading module holds its init's, "in use" without the call;
    an unloading one holds none, and the kernel's EBUSY is reported as a failed removal."""
    load_site, unload_site = "ftrace_update_code:before_count", "ftrace_release_mod:before_free"
    with daemon.connect() as client, daemon.connect() as other:
        for site, call, arg in ((load_site, other.load, "vboxdrv"),
                                (unload_site, other.unload, "vboxdrv")):
            client.set_failpoint(site, "1*pause")
            paused = threading.Thread(target=call, args=(arg,))
            paused.start()
            client.wait_failpoint(site)
            shell = run_shell(tmp_path, ["--address", daemon.address, "-c",
                                         "rmmod vboxdrv; cat /proc/modules"])
            client.release_failpoint(site)
            paused.join()
            if site == load_site:
                assert shell.err == "rmmod: ERROR: Module vboxdrv is in use\n"
                assert re.fullmatch(r"vboxdrv \d+ 1 - Loading 0x[0-9a-f]{16} \(O\+\)\n", shell.out)
            else:
                assert shell.err == ("rmmod: ERROR: could not remove module vboxdrv: "
                                     "Device or resource busy\n")
                assert re.fullmatch(r"vboxdrv \d+ 0 - Unloading 0x[0-9a-f]{16} \(O-\)\n",
                                    shell.out)
            assert shell.returncode == 0
        assert client.list_modules() == []


def test_a_module_that_uses_another_through_insmod_modprobe_lsmod_and_rmmod(daemon, tmp_path):
    """vfat uses fat's exports. insmod does not load fat for it (init_module's ENOENT, as
    kmod's insmod words it, and an Unknown symbol line per import in dmesg); modprobe
    loads fat first; lsmod and /proc/modules show fat used by vfat; rmmod and modprobe -r
    refuse fat (kmod's check_module_inuse() and rmmod_do_module(), no call made), and
    modprobe -r vfat removes fat too, now unused."""
    script = """\
insmod vfat
dmesg | grep -c 'vfat: Unknown symbol'
modprobe vfat
lsmod
cat /proc/modules
rmmod fat
modprobe -r fat
modprobe -qr fat || echo refused quietly
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    with daemon.connect() as client:
        vfat, fat = client.list_modules()
    assert shell.returncode == 0
    assert shell.err == (
        "insmod: ERROR: could not insert module vfat.ko: Unknown symbol in module\n"
        "rmmod: ERROR: Module fat is in use by: vfat\n"
        "modprobe: FATAL: Module fat is in use.\n")
    assert shell.out.splitlines() == [
        "17",
        "Module                  Size  Used by",
        f"{'vfat':<19} {vfat.size:>8}  0",
        f"{'fat':<19} {fat.size:>8}  1 vfat",
        f"vfat {vfat.size} 0 - Live 0x{vfat.base:016x}",
        f"fat {fat.size} 1 vfat, Live 0x{fat.base:016x}",
        "refused quietly",
    ]
    shell = run_shell(tmp_path, ["--address", daemon.address, "-c",
                                 "modprobe -r vfat; lsmod; modprobe -r vfat"])
    assert (shell.returncode, shell.err) == (0, "")
    assert shell.out == "Module                  Size  Used by\n"
    with daemon.connect() as client:
        assert client.list_modules() == [] and client.check_consistency().ok


def test_bad_arguments_are_one_line_diagnostics_as_bash_and_the_tools_give(daemon, tmp_path):
    """(a -c command, its status, stdout, stderr) as bash 5.2 and coreutils/grep 3.8 give
    them; numbers beyond what the request can carry, options taken for operands."""
    cases = [
        ("invoke schedule -c -5", 2, "", "invoke: invalid count: '-5'\n"),
        ("invoke schedule -c 0", 2, "", "invoke: invalid count: '0'\n"),
        ("invoke schedule -c 99999999999999999999", 2, "",
         "invoke: invalid count: '99999999999999999999'\n"),
        ("invoke schedule -C -1", 2, "", "invoke: invalid CPU: '-1'\n"),
        ("invoke schedule -C 4294967296", 2, "", "invoke: invalid CPU: '4294967296'\n"),
        ("invoke schedule -C 0 -c 18446744073709551615", 1, "",
         "invoke: schedule: Invalid argument\n"),  # the daemon's limit, not the field's
        ("invoke schedule -C 0 -c 2", 0, "", ""),
        ("exit 99999999999999999999999", 2, "",
         "bash: line 1: exit: 99999999999999999999999: numeric argument required\n"),
        ("modprobe uinput; rmmod -f uinput; lsmod | grep -c uinput", 0, "1\n",
         "rmmod: invalid option -- 'f'\nUsage: rmmod MODULE...\n"),
        # kmod's insmod_all()/rmmod_all() under -a: a failing name, a WARNING, does not
        # stop the next one; -r without -a takes every name too, but a FATAL ends it.
        # (A module each: these shells run at once, on one daemon.)
        ("modprobe -a nosuchmod dummy; echo $?; lsmod | grep -c dummy", 0, "1\n1\n",
         "modprobe: WARNING: Module nosuchmod not found in directory /lib/modules/3.6.11+\n"),
        ("modprobe loop; modprobe -r nosuchmod loop; echo $?; lsmod | grep -c loop",
         0, "1\n1\n", "modprobe: FATAL: Module nosuchmod not found.\n"),
        ("modprobe isofs; modprobe -ar nosuchmod isofs; echo $?; lsmod | grep -c isofs",
         1, "1\n0\n", "modprobe: WARNING: Module nosuchmod not found.\n"),
        ("cd /sys; cd ''; pwd; cd -", 0, "/sys\n/sys\n", ""),
        ("echo x | grep '['", 2, "", "grep: Invalid regular expression\n"),
        ("echo x | grep -E 'a[b'", 2, "", "grep: Unmatched [, [^, [:, [., or [=\n"),
        ("echo a\\", 0, "a\\\n", ""),
        # A reserved word starting a command: refused as a syntax error, or bash's own.
        ("echo a; function f (echo)", 2, "",
         "bash: -c: line 1: a subshell (`(') is not supported by "
         "ftrace-shell\nbash: -c: line 1: `echo a; function f (echo)'\n"),
        ("echo if; fi", 2, "", "bash: -c: line 1: syntax error near unexpected token `fi'\n"
         "bash: -c: line 1: `echo if; fi'\n"),
    ]
    shells = [start_shell(tmp_path, ["--address", daemon.address, "-c", command])
              for command, *_ in cases]
    got = [(finish(shell).returncode, shell.out, shell.err) for shell in shells]
    assert got == [tuple(case[1:]) for case in cases]


def test_variables_name_tracefs_files_as_pasted_scripts_use_them(daemon, tmp_path):
    """t=/sys/kernel/debug/tracing; echo function > $t/current_tracer... (-c, with its
    $0), and a redirection whose target expands to no word or to several."""
    script = ('t=${ftrace_sim_tracing:-/sys/kernel/debug/tracing}; '
              'echo function > $t/current_tracer; '
              'cat $t/current_tracer; files="current_tracer tracing_on"; cd $t; cat $files; '
              'echo nop > "$t/current_tracer"; cat ${t}/current_tracer; echo x > $none; '
              'echo x > $files; echo x > "$none"; export T=$t; cd /; cd $T && pwd; echo $0; '
              'echo $OLDPWD $PWD; cd - >/dev/null; echo $OLDPWD $PWD')
    shell = run_shell(tmp_path, ["--address", daemon.address, "-c", script, "repro"])
    assert (shell.returncode, shell.out, shell.err) == (
        0, f"function\nfunction\n1\nnop\n{TRACING}\nrepro\n/ {TRACING}\n{TRACING} /\n",
        "repro: line 1: $none: ambiguous redirect\nrepro: line 1: $files: ambiguous redirect\n"
        "repro: line 1: : No such file or directory\n")


def test_oldpwd_and_cd_as_bash_sets_them(daemon, tmp_path):
    """(environment, -c command, status, stdout, stderr) as bash 5.2 gives them: the
    environment's OLDPWD kept when it names a directory (of the daemon's tree), else
    exported without a value and not listed until assigned; ``cd -`` prints $OLDPWD as
    written; a cd with PWD unset leaves OLDPWD exported without a value; a cd in a
    pipeline stays in its subshell."""
    cases = [
        ({"OLDPWD": "sys/kernel"}, 'echo "[$OLDPWD]"; export -p | grep OLDPWD; cd -; pwd',
         0, '[sys/kernel]\ndeclare -x OLDPWD="sys/kernel"\nsys/kernel\n/sys/kernel\n', ""),
        ({"OLDPWD": "/proc/modules"},
         'echo "[${OLDPWD-unset}]"; export -p | grep -c OLDPWD; cd /sys; export -p | grep OLDPWD',
         0, '[unset]\n0\ndeclare -x OLDPWD="/"\n', ""),
        ({}, "unset PWD; cd /sys; export -p | grep OLDPWD; cd -", 1, "declare -x OLDPWD\n",
         "bash: line 1: cd: OLDPWD not set\n"),
        ({}, 'OLDPWD=; cd -; pwd; echo "[$OLDPWD]"', 0, "\n/\n[/]\n", ""),
        ({}, "cd /sys/kernel; OLDPWD=debug/../debug; cd -; pwd", 0,
         "debug/../debug\n/sys/kernel/debug\n", ""),
        ({}, "cd /sys | grep x; pwd; echo $PWD", 0, "/\n/\n", ""),
    ]
    shells = [start_shell(tmp_path, ["--address", daemon.address, "-c", command],
                          environ=environ) for environ, command, *_ in cases]
    got = [(finish(shell).returncode, shell.out, shell.err) for shell in shells]
    assert got == [tuple(case[2:]) for case in cases]


def test_a_sleep_too_long_to_hold_sleeps_until_ended(daemon, tmp_path):
    """coreutils' sleep cuts what its timespec cannot hold, and sleeps: no OverflowError.
    The shell is ended once the kernel shows it asleep after the echo before the sleep:
    its wchan a futex wait (the sleep waits on an Event, so that a signal to a pipeline
    ends it; the wait's name in the kernel differs by version), not before."""
    shell = start_shell(tmp_path, ["--address", daemon.address, "-c",
                                   "echo sleeping; sleep 99999999999999999999"])
    try:
        assert shell.stdout.readline() == b"sleeping\n"  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        with open(f"/proc/{shell.pid}/wchan") as wchan:
            while not wchan.read().startswith("futex_"):
                assert shell.poll() is None, "the shell ended instead of sleeping"
                assert time.monotonic() < deadline, "the shell never went to sleep"
                time.sleep(0.02)
                wchan.seek(0)
        shell.terminate()
        assert (finish(shell).returncode, shell.err) == (-signal.SIGTERM, "")
    finally:
        shell.kill()


def test_a_directory_or_a_missing_file_as_the_script(daemon, tmp_path):
    address = ["--address", daemon.address]
    directory = run_shell(tmp_path, [*address, str(tmp_path)])
    assert (directory.returncode, directory.err) == (
        126, f"{tmp_path}: {tmp_path}: Is a directory\n")
    missing = run_shell(tmp_path, [*address, "nosuch.sh"])
    assert (missing.returncode, missing.err) == (
        127, "bash: nosuch.sh: No such file or directory\n")


def _as_bash_with_stdin(argv: list[str], bash_args: list[str], stdin: str, tmp_path,
                        flags: int = os.O_RDONLY) -> None:
    """``argv`` (ftrace-shell) and ``bash BASH_ARGS``, each with the file ``stdin`` (in
    tmp_path, or absolute) opened afresh with ``flags`` as its standard input: status,
    stdout and stderr byte for byte."""
    runs = []
    for command, executable in [(argv, None), (["bash", *bash_args], "/bin/bash")]:
        fd = os.open(tmp_path / stdin, flags, 0o644)
        try:
            runs.append(subprocess.run(command, executable=executable, stdin=fd,
                                       capture_output=True, timeout=120, cwd=tmp_path,
                                       env=child_env()))
        finally:
            os.close(fd)
    shell, bash = ((done.returncode, done.stdout, done.stderr) for done in runs)
    assert shell == bash


def test_a_failed_read_of_the_shells_input_ends_it_as_bash(daemon, tmp_path):
    """bash's read error on the input it reads its commands from ends it: "bash: error
    reading input file: ...", status 2 (here descriptor 0 is open for writing only)."""
    _as_bash_with_stdin([sys.executable, "-m", "clients.shell", "--address", daemon.address],
                        [], "written", tmp_path, os.O_WRONLY | os.O_CREAT)


def test_a_binary_file_as_the_script_is_refused_as_bash_refuses_it(daemon, tmp_path):
    binary = tmp_path / "binary.sh"
    binary.write_bytes(b"ec\0ho hi\n")  # a NUL in the first line (run, it would say hi)
    shell = run_shell(tmp_path, ["--address", daemon.address, str(binary)])
    assert (shell.returncode, shell.out, shell.err) == (
        126, "", f"{binary}: {binary}: cannot execute binary file\n")
    binary.write_bytes(b"a" * 80 + b"\0\n")  # bash looks at 80 bytes only
    shell = run_shell(tmp_path, ["--address", daemon.address, str(binary)])
    assert (shell.returncode, shell.err) == (
        127, f"{binary}: line 1: {'a' * 80}: command not found\n")


def test_a_script_from_a_fifo_runs_each_line_as_it_comes(daemon, tmp_path):
    """bash reads a script as it reads standard input, a line at a time: from a fifo (or
    ``<(generator)``) each command runs before the writer is done, so a script can be fed
    step by step. Read whole first, nothing ran until the writer closed."""
    fifo = tmp_path / "steps"
    os.mkfifo(fifo)
    shell = start_shell(tmp_path, ["--address", daemon.address, str(fifo)])
    try:
        with open(fifo, "wb", buffering=0) as steps:
            steps.write(b"echo one\n")
            ready, _, _ = select.select([shell.stdout], [], [], 60)
            assert ready, "the first line did not run while the fifo stayed open"
            assert os.read(shell.stdout.fileno(), 100) == b"one\n"
            steps.write(b"echo two\n")
        finish(shell)
    finally:
        if shell.poll() is None:
            shell.kill()
    assert (shell.returncode, shell.out, shell.err) == (0, "two\n", "")


# --- what the commands print -------------------------------------------------------------------


def test_navigation_listing_and_grep(daemon, tmp_path):
    script = """\
pwd
ls
cd /sys/kernel/debug/tracing
ls | grep -c '^set_ftrace_'
ls -l | grep ' set_ftrace_filter$'
ls -l | grep ' available_filter_functions$'
cd ../..
pwd
cd -
cd ..; cd tracing; pwd
modprobe uinput
cat available_filter_functions | grep uinput_re
grep -c '\\[uinput\\]' available_filter_functions
lsmod
cd /; cat /sys/kernel/debug/tracing/../tracing/current_tracer
echo -n no newline; echo
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert (shell.returncode, shell.err) == (0, "")
    with daemon.connect() as client:
        (uinput,) = client.list_modules()
        functions = next(m for m in client.catalog() if m.name == "uinput").functions
    expected = [
        "/",
        "proc",
        "sys",
        "3",  # set_ftrace_filter, set_ftrace_notrace, set_ftrace_pid
        "-rw-r--r-- 1 root root 0 set_ftrace_filter",
        "-r--r--r-- 1 root root 0 available_filter_functions",
        "/sys/kernel",
        TRACING,
        TRACING,
        *[f"{name} [uinput]" for name in functions if name.startswith("uinput_re")],
        str(len(functions)),
        "Module                  Size  Used by",
        f"{'uinput':<19} {uinput.size:>8}  0",  # kmod's "%-19s %8lu  %d"
        "nop",
        "no newline",
    ]
    assert shell.out.splitlines() == expected


def test_test_stats_the_daemons_files_and_substitutions_read_them(daemon, tmp_path):
    """``test``'s file operators see the daemon's tree as root sees tracefs: a file that
    exists is readable and writable, executable only with an x bit (a directory is), of
    size 0, and as old as any other; ``$(...)`` runs its commands against the daemon too, and cd stays in it."""
    script = """\
cd /sys/kernel/debug/tracing
for f in . set_ftrace_filter available_filter_functions nosuch; do
    for op in -e -f -d -r -w -x -s -L; do
        if test $op $f; then echo -n " $op"; else echo -n " !$op"; fi
    done
    echo " $f"
done
[ -d /proc ] && [ ! -f /proc ] && echo proc
[ . -ef ../tracing/ ] && [ ! . -ef /proc ] && [ ! nosuch -ef nosuch ] && echo same
[ trace -nt nosuch ] && [ nosuch -ot trace ] && [ ! trace -nt trace_pipe ] && echo times
tracer=$(cat current_tracer)
echo "[$tracer] $(cd /; pwd) $PWD"
if [ "$(cat tracing_on)" -eq 1 ]; then echo on; fi
echo function > current_tracer
while [ "$(cat current_tracer)" != nop ]; do echo nop > current_tracer; echo reset; done
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert (shell.returncode, shell.err) == (0, "")
    assert shell.out == (
        " -e !-f -d -r -w -x !-s !-L .\n"
        " -e -f !-d -r -w !-x !-s !-L set_ftrace_filter\n"
        " -e -f !-d -r -w !-x !-s !-L available_filter_functions\n"
        " !-e !-f !-d !-r !-w !-x !-s !-L nosuch\n"
        "proc\nsame\ntimes\n"
        f"[nop] / {TRACING}\n"
        "on\n"
        "reset\n")


def test_redirections_append_and_tokens(daemon, tmp_path):
    script = """\
cd /sys/kernel/debug/tracing
modprobe uinput
echo uinput_open uinput_release > set_ftrace_filter
echo 'uinput_read' >> set_ftrace_filter
cat set_ftrace_filter
echo -n > set_ftrace_filter
cat set_ftrace_filter
echo 'uinput_write' >set_ftrace_filter 2>/dev/null; cat set_ftrace_filter
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert (shell.returncode, shell.err) == (0, "")
    assert sorted(shell.out.splitlines()[:3]) == [
        "uinput_open [uinput]", "uinput_read [uinput]", "uinput_release [uinput]"]
    assert shell.out.splitlines()[3:] == ["#### all functions enabled ####", "uinput_write [uinput]"]


def test_a_redirection_to_a_new_name_fails_as_on_3_6(daemon, tmp_path):
    """bash's O_CREAT open of a name not there: debugfs cannot create it (vfs_create()'s
    EACCES: "Permission denied"); /proc's lookup refuses the name first (ENOENT), as a
    missing directory on the way does; an existing directory is EISDIR."""
    script = ("cd /sys/kernel/debug/tracing; echo foo > newfile; echo $?; "
              "echo foo >> options/newfile; echo x > /proc/newfile; echo x > nodir/file; "
              "echo x > options; cat newfile")
    shell = run_shell(tmp_path, ["--address", daemon.address, "-c", script])
    assert (shell.returncode, shell.out) == (1, "1\n")
    assert shell.err.splitlines() == [
        "bash: line 1: newfile: Permission denied",
        "bash: line 1: options/newfile: Permission denied",
        "bash: line 1: /proc/newfile: No such file or directory",
        "bash: line 1: nodir/file: No such file or directory",
        "bash: line 1: options: Is a directory",
        "cat: newfile: No such file or directory",
    ]


def test_cat_takes_options_as_gnu_cat_does(daemon, tmp_path):
    """(a -c command, its status, stdout, stderr): ``--`` ends the options, -n numbers the
    lines across the files (GNU's ``%6d\t``), -u is ignored, an option anywhere before
    ``--`` is one; what GNU cat has and ftrace-shell's not is refused, not read as a file
    name, then what the shell's cat takes (GNU's hint named --help, refused too); glibc's
    words for the rest, then GNU's hint; status 1, no file read."""
    try_help = "Try 'cat --help' for more information.\n"
    usage = "Usage: cat [-nu] [FILE...] (--number: -n)\n"
    cases = [
        ("cat -- current_tracer", 0, "nop\n", ""),
        ("cat -n current_tracer tracing_on", 0, "     1\tnop\n     2\t1\n", ""),
        ("cat --number -u current_tracer", 0, "     1\tnop\n", ""),
        ("cat current_tracer -n", 0, "     1\tnop\n", ""),
        ("cat -- -n current_tracer", 1, "nop\n", "cat: -n: No such file or directory\n"),
        ("cat -A current_tracer", 1, "",
         "cat: option '-A' is not supported by ftrace-shell\n" + usage),
        ("cat current_tracer --show-ends", 1, "",
         "cat: option '--show-ends' is not supported by ftrace-shell\n" + usage),
        ("cat --help", 1, "", "cat: option '--help' is not supported by ftrace-shell\n"
         + usage),
        ("cat -P current_tracer", 1, "", "cat: invalid option -- 'P'\n" + try_help),
        ("cat --num current_tracer", 1, "", "cat: option '--num' is ambiguous; "
         "possibilities: '--number-nonblank' '--number'\n" + try_help),
    ]
    shells = [start_shell(tmp_path, ["--address", daemon.address, "-c",
                                     f"cd {TRACING}; {command}"])
              for command, *_ in cases]
    got = [(command, finish(shell).returncode, shell.out, shell.err)
           for (command, *_), shell in zip(cases, shells)]
    assert got == cases


def test_sleep_says_what_coreutils_sleep_says_of_a_bad_operand(daemon, tmp_path):
    """Its diagnostic, then coreutils' hint (in the C locale's quotes), status 1."""
    try_help = "Try 'sleep --help' for more information.\n"
    shell = run_shell(tmp_path, ["--address", daemon.address, "-c",
                                 "sleep; echo $?; sleep 0 abc; echo $?"])
    assert (shell.out, shell.err) == ("1\n1\n", "sleep: missing operand\n" + try_help
                                      + "sleep: invalid time interval 'abc'\n" + try_help)


def test_non_utf8_bytes_reach_the_daemon_and_fail_as_a_write(daemon, tmp_path):
    script = b"echo \xff\xfe > /sys/kernel/debug/tracing/set_ftrace_filter\n"
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert (shell.returncode, shell.err) == (
        1, "repro.sh: line 1: echo: write error: Invalid argument\n")


def test_bin_trace_reaches_the_shell_and_the_client_byte_for_byte(daemon, tmp_path):
    """With the ``bin`` option, ``trace`` and ``trace_pipe`` carry the entries' native
    fields (print_bin_fmt): every layer passes the bytes through unchanged."""
    with daemon.connect() as client:
        client.write_file(f"{TRACING}/current_tracer", "function")
        client.invoke("vfs_write", "sys_write", cpu=1, pid=3000, comm="bin-test")
        client.write_file(f"{TRACING}/trace_options", "bin")
        [event] = RingBufferReader(client.stats().shm_namespace).snapshot().events
        kallsyms = {line.split()[2]: int(line.split()[0], 16)
                    for line in client.read_file("/proc/kallsyms").decode().splitlines()}
        # The parent ip is the return address inside sys_write, which ends where the
        # next symbol starts.
        after = min(addr for addr in kallsyms.values() if addr > kallsyms["sys_write"])
        assert kallsyms["sys_write"] < event.parent_ip < after
        entry = (bytes.fromhex("b80b0000 01000000") + event.ts.to_bytes(8, "little")
                 + kallsyms["vfs_write"].to_bytes(8, "little")
                 + event.parent_ip.to_bytes(8, "little"))
        trace = client.read_file(f"{TRACING}/trace")
        assert trace.endswith(b"|\n" + entry)
        shell = start_shell(tmp_path, ["--address", daemon.address, "-c",
                                       f"cat {TRACING}/trace"])
        out, err = shell.communicate(timeout=120)
        assert (shell.returncode, out, err) == (0, trace, b"")
        assert b"".join(client.trace_pipe(nonblock=True)) == entry


def test_invoke_as_the_shells_task(daemon, tmp_path):
    script = """\
cd /sys/kernel/debug/tracing
modprobe uinput
echo uinput_release > set_ftrace_filter
echo function > current_tracer
invoke uinput_release -c 3
invoke uinput_release uinput_open -C 0
invoke uinput_open
cat trace | grep -c "bash-$$ .*: uinput_release$"
cat trace | grep -c "bash-$$ .*\\[000\\].*: uinput_release <-uinput_open$"
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert (shell.returncode, shell.out, shell.err) == (0, "3\n1\n", "")


def test_traceoff_probe_from_the_shell(daemon, tmp_path):
    script = """\
cd /sys/kernel/debug/tracing
modprobe uinput
echo 'uinput_open:traceoff' > set_ftrace_filter
cat set_ftrace_filter
cat tracing_on
invoke uinput_open
cat tracing_on
echo 'uinput_open:traceoff' >> set_ftrace_notrace
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert shell.returncode == 1
    assert shell.out == ("#### all functions enabled ####\n"
                         "uinput_open [uinput]:traceoff:unlimited\n1\n0\n")
    assert shell.err == "repro.sh: line 8: echo: write error: Invalid argument\n"


# --- the client library under the shell ---------------------------------------------------------


def test_file_session_keeps_the_file_open_after_a_failed_write(daemon):
    with daemon.connect() as client:
        client.load("uinput")
        with client.open(f"{TRACING}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC) as session:
            with pytest.raises(FtraceError) as caught:
                session.write(b"nosuchfn\n")
            assert caught.value.errno == errno.EINVAL
            assert session.write_all(b"uinput_open uinput_release\n") == 27
        # set_ftrace_filter lists as available_filter_functions does: "name [module]".
        assert sorted(client.read_file(f"{TRACING}/set_ftrace_filter").splitlines()) == [
            b"uinput_open [uinput]", b"uinput_release [uinput]"]


def test_open_and_write_failures_carry_their_syscall(daemon):
    with daemon.connect() as client:
        with pytest.raises(FtraceError) as caught:
            client.open(f"{TRACING}/nope", os.O_WRONLY)
        assert (caught.value.errno, caught.value.syscall) == (errno.ENOENT, "open")
        with pytest.raises(FtraceError) as caught:
            client.write_file(f"{TRACING}/set_ftrace_filter", "nosuchfn\n")
        assert (caught.value.errno, caught.value.syscall) == (errno.EINVAL, "write")
        # ...and the release still installed the emptied copy.
        assert client.read_file(f"{TRACING}/set_ftrace_filter") == b"#### all functions enabled ####\n"


def test_modules_and_kernel_calls(daemon):
    with daemon.connect() as client:
        first = client.load("uinput", if_loaded_ok=True)
        again = client.load("uinput", if_loaded_ok=True)
        assert again.already_loaded and again.base == first.base
        with pytest.raises(FtraceError) as caught:
            client.load("uinput")
        assert caught.value.errno == errno.EEXIST
        assert [m.name for m in client.list_modules()] == ["uinput"]
        assert client.unload("uinput").name == "uinput"
        with pytest.raises(FtraceError) as caught:
            client.unload("uinput")
        assert caught.value.errno == errno.ENOENT
        assert "uinput" in {m.name for m in client.catalog()}
        assert client.config().release == "3.6.11+"
        assert client.check_consistency().ok
        assert "Linux version" in client.dmesg()
