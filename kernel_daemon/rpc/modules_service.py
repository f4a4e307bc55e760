"""``ftrace.v1.Modules``: ``init_module`` / ``delete_module`` with the user tools' manners.

The kernel answers EEXIST for a module already loaded and ENOENT for one that is
not; ``modprobe`` turns the first into silent success, its parameters unused, and
``modprobe -r`` the second (``if_loaded_ok`` / ``if_absent_ok``), ``insmod`` and
``rmmod`` report both.

An error of the kernel's path names its system call in ErrnoDetail.syscall
(``failing_as``): which, and which errors name none, common.proto's ErrnoDetail.syscall
says.
"""

from __future__ import annotations

import errno

import grpc

from ftrace.v1 import modules_pb2 as pb
from ftrace.v1 import modules_pb2_grpc
from kernel_daemon.errno import KernelError, quoted
from kernel_daemon.module.catalog import ModuleSpec, load_catalog, module_from_function_list
from kernel_daemon.module.loader import Module
from kernel_daemon.rpc.state import DaemonState
from kernel_daemon.rpc.status import failing_as, translate_kernel_errors
from kernel_daemon.signal import current_sigpending

STATES = {0: pb.MODULE_STATE_LIVE, 1: pb.MODULE_STATE_COMING, 2: pb.MODULE_STATE_GOING}
# LoadModuleRequest.placement -> the address space's policy; None: the boot option.
PLACEMENTS = {pb.MODULE_PLACEMENT_UNSPECIFIED: None,
              pb.MODULE_PLACEMENT_FIRST_FIT: "first-fit",
              pb.MODULE_PLACEMENT_RANDOM: "random"}


def module_info(mod: Module, already_loaded: bool = False) -> pb.ModuleInfo:
    return pb.ModuleInfo(name=mod.name, base=mod.module_core, size=mod.core_size,
                         functions=len(mod.symbols), state=STATES.get(mod.state, 0),
                         taints=mod.taints, refcount=mod.refcnt, load_seq=mod.load_seq,
                         already_loaded=already_loaded,
                         used_by=[user.name for user in mod.source_list])


def requested_spec(request: pb.LoadModuleRequest) -> ModuleSpec:
    source = request.WhichOneof("source")
    if source == "catalog_name":
        spec = load_catalog().get(request.catalog_name)
        # No such .ko anywhere: modprobe finds no file and makes no system call (ENOENT,
        # no ErrnoDetail.syscall).
        if spec is None:
            raise KernelError(errno.ENOENT, f"module {quoted(request.catalog_name)} not found")
        return spec
    if source == "explicit":
        with failing_as("init_module"):
            try:
                return module_from_function_list(request.explicit.name,
                                                 list(request.explicit.functions))
            except ValueError as exc:
                # The image init_module would be given is malformed.
                raise KernelError(errno.EINVAL, str(exc)) from None
    raise KernelError(errno.EINVAL, "neither a catalog name nor a function list")


class ModulesService(modules_pb2_grpc.ModulesServicer):
    def __init__(self, state: DaemonState) -> None:
        self.state = state

    @translate_kernel_errors
    def Load(self, request: pb.LoadModuleRequest, context: grpc.ServicerContext) -> pb.ModuleInfo:
        spec = requested_spec(request)
        if request.placement not in PLACEMENTS:
            raise KernelError(errno.EINVAL, f"unknown placement {request.placement}")
        with self.state.syscall(context, report_locking=True) as boot, \
                failing_as("init_module"):
            loaded = boot.kernel.modules.find_module(spec.name)
            if loaded is not None and request.if_loaded_ok:
                return module_info(loaded, already_loaded=True)
            # A signal (Kernel.Kill; a caller that went away, a killed modprobe) ends
            # resolve_symbol_wait().
            pending = current_sigpending()
            pending.wake_on_signal(boot.kernel.modules.signal_wake_up)
            try:
                return module_info(boot.kernel.modules.load_module(
                    spec, PLACEMENTS[request.placement],
                    signal_pending=pending.signal_pending, args=request.args))
            except OSError as exc:  # already loaded (EEXIST), or a symbol it imports did
                # not resolve (ENOENT or EBUSY)
                if isinstance(exc, FileExistsError) and request.if_loaded_ok:
                    # Loaded since the look above; kmod's modprobe takes the EEXIST for
                    # success. Unloaded again since, it has no ModuleInfo to give: the
                    # EEXIST init_module() answered (the kernel as modprobe leaves it).
                    present = boot.kernel.modules.find_module(spec.name)
                    if present is not None:
                        return module_info(present, already_loaded=True)
                raise KernelError(exc.errno, exc.strerror) from None
            except MemoryError:
                raise KernelError(errno.ENOMEM, "module area full") from None
            except RuntimeError as exc:  # still coming or going
                raise KernelError(errno.EBUSY, str(exc)) from None

    @translate_kernel_errors
    def Unload(self, request: pb.UnloadModuleRequest, context: grpc.ServicerContext) -> pb.ModuleInfo:
        with self.state.syscall(context, report_locking=True) as boot, \
                failing_as("delete_module"):
            try:
                return module_info(boot.kernel.modules.delete_module(request.name))
            except BlockingIOError as exc:  # in use: EWOULDBLOCK, which is EAGAIN
                raise KernelError(exc.errno, exc.strerror) from None
            except RuntimeError as exc:
                raise KernelError(errno.EBUSY, str(exc)) from None
            except LookupError as exc:  # it names the module as looked up (up to a NUL)
                if request.if_absent_ok:
                    return pb.ModuleInfo()  # nothing was unloaded
                raise KernelError(errno.ENOENT, str(exc)) from None

    @translate_kernel_errors
    def List(self, request: pb.ListModulesRequest, context: grpc.ServicerContext) -> pb.ListModulesResponse:
        with self.state.syscall(context) as boot:
            return pb.ListModulesResponse(modules=[module_info(m) for m in boot.kernel.modules.modules()])

    @translate_kernel_errors
    def Catalog(self, request: pb.CatalogRequest, context: grpc.ServicerContext) -> pb.CatalogResponse:
        # Not a kernel call (modprobe reads /lib/modules), but a call like any other: the
        # caller's identity is checked (malformed: EINVAL).
        with self.state.syscall(context):
            return pb.CatalogResponse(modules=[
                pb.CatalogModule(name=spec.name, description=spec.description,
                                 functions=[name for name, _ in spec.functions],
                                 size=sum(size for _, size in spec.functions),
                                 depends=spec.depends)
                for spec in load_catalog().values()])
