# ftrace-sim: every target creates (or refreshes) .venv/ first, so each works on a fresh
# machine that has python3.11 (or a newer python3), make, and access to PyPI.
#
#   make test     the test suite (the README's test command; .ci/run runs it)
#   make demo     the report's reproducer in each variant, on private daemons
#   make bench    benchmarks (QUICK=1 for a short run)
#   make profile  where the servers' CPU goes (py-spy, perf), for the figures below target
#   make stress   the long stress runs (pytest -m stress_long)
#   make gen      regenerate ftrace/v1/*_pb2*.py and the descriptor set from proto/ftrace/v1/*.proto,
#                 and the default boot's vmlinux symbol table
#   make setup    just create/refresh .venv
#   make clean    remove .venv, generated code and caches

VENV        := .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.stamp
PROTO_DIR   := proto
PROTOS      := $(wildcard $(PROTO_DIR)/ftrace/v1/*.proto)
GEN_DIR     := ftrace/v1
# The protos as one FileDescriptorSet that keeps their comments (SourceCodeInfo, which the
# generated modules leave out), for the daemon's server reflection to serve
# (kernel_daemon/rpc/server.py). Written by the same protoc run as the modules, it also
# stands as the record of that run: a checkout generated before it existed regenerates.
GEN_STAMP   := $(GEN_DIR)/descriptor_set.binpb
# vmlinux's symbol table for the default boot, which every daemon's boot reads rather than
# generating it again (kernel_daemon/module/vmlinux_table.py).
VMLINUX_TABLE := kernel_daemon/module/vmlinux.kallsyms
# python3.11 when present, else python3 (checked to be >= 3.11 below).
PYTHON      ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
PYTEST_ARGS ?=

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all setup gen bytecode test demo bench profile stress clean

all: test

setup: $(STAMP)

# The venv is stale when pyproject.toml changes (or when it is missing / broken).
# The generated package's directory must exist before the editable install, which records
# the top-level packages it finds then.
$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "make: no python3.11 or python3 found" >&2; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "make: $(PYTHON) is older than 3.11" >&2; exit 1; }
	@if ! $(BIN)/python -c 'import sys' >/dev/null 2>&1; then \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  rm -rf $(VENV); \
	  $(PYTHON) -m venv $(VENV) || { echo "make: '$(PYTHON) -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }; \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	@mkdir -p $(GEN_DIR) && touch ftrace/__init__.py $(GEN_DIR)/__init__.py
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@

gen: $(GEN_STAMP) $(VMLINUX_TABLE)

# Regenerated when any .proto (or the venv, hence grpcio-tools) is newer than the last run.
# Old outputs are removed first, so a deleted .proto leaves no stale module behind.
$(GEN_STAMP): $(PROTOS) $(STAMP)
	@mkdir -p $(GEN_DIR)
	rm -f $(GEN_DIR)/*_pb2.py $(GEN_DIR)/*_pb2_grpc.py $(GEN_DIR)/*_pb2.pyi
	$(BIN)/python -m grpc_tools.protoc -I$(PROTO_DIR) --python_out=. --pyi_out=. --grpc_python_out=. \
	  --include_source_info --include_imports --descriptor_set_out=$@ $(PROTOS)
	@touch ftrace/__init__.py $(GEN_DIR)/__init__.py

# Where Python may not write its bytecode cache (PYTHONDONTWRITEBYTECODE=1, as on the
# machines this project is developed on), every import compiles the module from source:
# each daemon and client the tests and benchmarks start would spend 0.25 s of CPU
# compiling the project again, a quarter of a daemon's start. compileall writes the cache
# whatever that says, and only for sources newer than theirs (0.1 s when none is).
bytecode: $(STAMP) $(GEN_STAMP) $(VMLINUX_TABLE)
	@$(BIN)/python -m compileall -q kernel_daemon clients bench ftrace tests

# Like kbuild's link of vmlinux, which runs scripts/kallsyms: a boot then reads the table.
$(VMLINUX_TABLE): kernel_daemon/module/vmlinux.py kernel_daemon/module/vmlinux_table.py \
		kernel_daemon/module/symbols.py $(STAMP)
	$(BIN)/python -m kernel_daemon.module.vmlinux_table $@

test: bytecode
	$(BIN)/pytest -n auto -q $(PYTEST_ARGS)

demo: bytecode
	$(BIN)/python -m clients.demo

bench: bytecode
	$(BIN)/python -m bench $(if $(filter 1 yes true,$(QUICK)),--quick,)

profile: bytecode
	$(BIN)/python -m bench.profile

stress: bytecode
	$(BIN)/pytest -n auto -q -m stress_long $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) ftrace build dist *.egg-info .pytest_cache .hypothesis $(VMLINUX_TABLE)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
